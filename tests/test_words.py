"""Counts and Dice scores in words (napari_uamc._words)."""

from __future__ import annotations

from napari_uamc._words import counted, dice_text


def test_a_count_takes_the_right_number():
    """Clinician try-out: '1 accepted cases', 'Stopped early after 1 iterations'."""
    assert counted(1, "iteration") == "1 iteration"
    assert counted(3, "iteration") == "3 iterations"
    assert counted(0, "voxel") == "0 voxels"
    assert counted(1, "accepted case") == "1 accepted case"
    assert counted(2, "child", "children") == "2 children"


def test_a_dice_below_one_never_reads_one():
    """A 173-voxel edit of a real scan left Dice 0.99951: Accept said 'Dice 1.000'."""
    assert dice_text(0.99951) == "0.9995"
    assert dice_text(0.987) == "0.987"
    assert dice_text(0.9994) == "0.999"
    assert dice_text(0.999996) == "0.999996"
    assert dice_text(0.9999999) == "0.999999"
    assert dice_text(1.0) == "1.000"
    assert dice_text(0.0) == "0.000"
