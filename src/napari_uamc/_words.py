"""How counts, durations and Dice scores are written for a person, in the panel, the command line and the
engine's messages (ground floor: imports nothing).

One home, so "1 iterations" cannot come back in one text while another says "1 iteration", and
so the same Dice reads the same in Accept, the fine-tune's messages and the offer.
"""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` with ``noun`` in the right number: "1 case", "3 cases", "0 voxels".

    ``plural``: the plural when it is not ``noun + "s"``.
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def dice_text(value: float) -> str:
    """A Dice score with 3 decimals, or as many more as it takes (up to 6) for a score below 1
    not to read "1.000": an edit of 173 voxels on a real scan leaves Dice 0.9995, which 3
    decimals showed as 1.000, as if nothing had been corrected."""
    value = float(value)
    for decimals in range(3, 7):
        text = f"{value:.{decimals}f}"
        if value >= 1 or not text.startswith("1"):
            return text
    return f"{0.999999:.6f}"


def duration_text(seconds: float) -> str:
    """Seconds as the panel and the command line say them: "40 s", "3.1 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def format_ml(ml: float) -> str:
    """A volume in mL (1 mL = 1000 mm^3), to the digits that matter: ``55`` -> ``"55 mL"``."""
    if ml >= 10:
        return f"{ml:.0f} mL"
    if ml >= 0.1:
        return f"{ml:.1f} mL"
    return f"{ml:.2f} mL" if ml >= 0.005 else "<0.01 mL"
