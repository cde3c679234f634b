"""What the Fine-tune section and the offer say when a fine-tune ends (no Qt)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from _helpers import accept_box  # noqa: E402
from napari_uamc._napari.finetuning import Offer  # noqa: E402
from napari_uamc._napari.session import Session  # noqa: E402
from napari_uamc.engine.finetune import COMPARE_CASES  # noqa: E402


def _offer(**fields):
    values = dict(version="v003", parent="v002", iterations=200, stopped_early=False,
                  before={"a": 0.80}, after={"a": 0.90}, change={"b": 0.97, "c": 0.91, "d": 0.99}, others=5,
                  compare_seconds=21.4, seconds=185.0)
    return Offer(**{**values, **fields})


def test_the_status_says_what_happened_and_leaves_the_numbers_to_the_offer():
    """Issue 12: the status line repeated the offer's comparison ('compared v003 with v002 on 1 of
    5 other cases in 5.0 s') right under the offer box that shows it."""
    offer = _offer()
    assert offer.summary() == "<b>v003</b> trained: 200 iterations in 3.1 min; see the offer above"
    short = _offer(seconds=42.0, stopped_early=True, iterations=12, stop_seconds=1.34).summary()
    assert short == "<b>v003</b> stopped early (ended 1.3 s after Stop): 12 iterations in 42 s; see the offer above"
    for text in (offer.summary(), short):
        assert "Dice" not in text and "compared" not in text and "0.9" not in text


def test_the_offer_says_which_other_cases_it_compared_and_how_long_it_took():
    lines = "\n".join(_offer().lines())
    assert ("Other cases: Dice between v002's and v003's predictions 0.96 on 3 of 5, the first that Next case "
            "would open (compared in 21 s; 1.00 = unchanged); most changed: c 0.91.") in lines
    stopped = "\n".join(_offer(change={"b": 0.97}, compare_stopped=True, compare_seconds=3.0).lines())
    assert "on 1 of 5 (Stop ended the comparison in 3 s; 1.00 = unchanged) (b)." in stopped


def test_a_finished_finetune_says_it_trained_and_the_offer_holds_the_comparison(tiny_study):
    session = Session(ViewerModel())
    try:
        session.open_study(tiny_study)
        accept_box(session.study)
        tuning = session.finetuning
        stages: list[str] = []
        tuning.stage.connect(stages.append)
        tuning.budget_unit, tuning.budget = "iterations", 2
        tuning.start()
        offer = tuning.offer
        assert offer is not None and offer.version == "v002"
        status, level = session.texts["finetune"]
        assert status.startswith("<b>v002</b> trained: 2 iterations in ") and status.endswith("; see the offer above")
        assert level == "ok" and "compared" not in status and "Dice" not in status
        assert stages[-1] == ""  # no "compared v002 with v001 on ..." line under the status either
        assert len(offer.change) == min(COMPARE_CASES, 3) and offer.compare_seconds is not None
        assert "the first that Next case would open (compared in" in " ".join(offer.lines())
    finally:
        session.close()


def test_an_offer_that_agrees_less_with_the_accepted_labels_says_so_in_one_line():
    """Clinician try-out: 'Dice with your label default 0.999 -> v001 0.987' under an Adopt and a
    Discard that looked the same: the new version agrees less with the labels it trained on."""
    worse = _offer(version="v001", parent="default", before={"a": 0.999}, after={"a": 0.987})
    lines = worse.lines()
    assert worse.warning == ("v001 agrees less with your accepted labels than default, the model in use: "
                             "Discard keeps default.")
    assert lines[1] == worse.warning  # right under the first line, once
    assert sum("agrees less" in line for line in lines) == 1
    assert "Accepted case a, agreement with your label (Dice): default model 0.999, v001 0.987" in lines[2]
    assert "->" not in lines[2]
    within = _offer(before={"a": 0.999}, after={"a": 0.995})  # lower by less than WORSE_BY: no warning
    assert within.warning is None and not any("agrees less" in line for line in within.lines())
    means = _offer(before={"a": 0.95, "b": 0.99}, after={"a": 0.93, "b": 0.99})  # mean lower by 0.01
    assert means.warning is not None and "agrees less" in means.warning


def test_an_offer_stopped_very_early_says_discard_keeps_the_model_in_use():
    early = _offer(stopped_early=True, iterations=1, after={})
    assert early.warning == ("Stopped early after 1 iteration: v003 is barely trained, probably no better than "
                             "v002, the model in use: Discard keeps v002.")
    assert sum("Stopped early" in line for line in early.lines()) == 1
    later = _offer(stopped_early=True, iterations=40)  # stopped, but trained: said, no warning
    assert later.warning is None and "<b>Stopped early</b> after 40 iterations." in later.lines()
