"""What the Fine-tune section says while a fine-tune runs and when it ends, the offer, and the
replay choice (no Qt)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from _helpers import accept_box  # noqa: E402
from napari_uamc._napari.finetune_progress import RunProgress  # noqa: E402
from napari_uamc._napari.finetuning import Offer  # noqa: E402
from napari_uamc._napari.session import Session  # noqa: E402
from napari_uamc._napari.versions import read_version_info  # noqa: E402
from napari_uamc.data.phantoms import write_phantom_study  # noqa: E402
from napari_uamc.engine.finetune import COMPARE_CASES  # noqa: E402
from napari_uamc.engine.progress_messages import FEW_ITERATIONS  # noqa: E402

HEAD = "fine-tuning v001 on 1 accepted case: 1 minute of training"


@pytest.fixture
def session():
    made = Session(ViewerModel())
    yield made
    made.close()


def _running(session, budget_seconds=60.0):
    """The session's fine-tune section as a run begins, on a fake clock: (tuning, clock, said, bars)."""
    tuning, now = session.finetuning, [100.0]
    tuning.clock = lambda: now[0]
    tuning.budget_seconds = budget_seconds
    said, bars = [], []
    session.status.connect(lambda section, text, level: said.append(text) if section == "finetune" else None)
    tuning.progress.connect(lambda value, maximum: bars.append((value, maximum)))
    tuning.run = RunProgress(tuning, HEAD)
    tuning.run.begin()
    return tuning, now, said, bars


def _step(iteration, last=False, seconds=5.0):
    return SimpleNamespace(iteration=iteration, total=100_000, losses={"total": 0.5}, seconds_per_iteration=seconds,
                           eta_seconds=30.0, last=last)


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


def test_before_training_the_bar_is_busy_and_the_status_names_each_stage_and_its_seconds(session):
    """Clinician try-out: the first ~7 s showed a fixed 0 % (the child process starting, the
    comparison with the accepted labels, reading the cases) until the first step reported."""
    tuning, now, said, bars = _running(session)
    assert bars[-1] == (0, 0) and said[-1] == f"{HEAD}. Now starting the fine-tune process…"
    now[0] += 3.2
    tuning.on_tick()  # the thread relaying the child's reports ticks every second
    assert said[-1] == f"{HEAD}. Now starting the fine-tune process… (3 s so far)"
    stage_line = []
    tuning.stage.connect(stage_line.append)
    for message, stage in (
        ("starting from model v001 (/s/.uamc/models/v001.pt)", "starting the fine-tune process… (3 s so far)"),
        ("comparing the starting model with the accepted labels", "comparing the model with your accepted labels…"),
        ("reading 1 accepted case and 3 other cases", "reading 1 accepted case and 3 other cases…"),
        ("reading the replay cases of /data/la (the replay folder asked for)", "reading the replay cases…"),
        ("training for 1 min", "training: the first step…"),
    ):
        tuning.on_message(message)
        assert said[-1] == f"{HEAD}. Now {stage}" and bars[-1] == (0, 0)
    assert stage_line == ["starting from model v001 (/s/.uamc/models/v001.pt)"]  # the rest the status names
    now[0] += 5.0
    tuning.on_tick()
    assert said[-1] == f"{HEAD}. Now training: the first step… (5 s so far)"
    tuning.on_step(_step(1))  # training started at the engine's "training for": 5 s ago
    assert said[-1].startswith("iteration 1, 5 s of 60 s of training, about 55 s of training left")
    assert bars[-1] == (5, 60)
    now[0] += 2.0
    tuning.on_tick()  # between steps the seconds and the bar move by the clock
    assert said[-1].startswith("iteration 1, 7 s of 60 s of training, about 53 s of training left")
    assert bars[-1] == (7, 60)


def test_after_training_each_stage_says_how_long_it_has_run_and_has_left_and_writing_is_said_once(session):
    """Clinician try-out: recalibration and scoring (14.5 s and 5.5 s) showed no time at all, and
    'Now writing v001…' was said twice (the engine's 'writing' and 'wrote' messages)."""
    tuning, now, said, bars = _running(session)
    tuning.on_message("training for 1 min")
    now[0] += 57.0
    tuning.on_step(_step(9, last=True))  # the engine says it was the last step, 3 s before the budget's end
    assert said[-1] == "training done: 9 iterations in 57 s. Now finishing the new version…" and bars[-1] == (0, 0)
    tuning.on_message("recalibrating BatchNorm statistics on the study's images")
    now[0] += 2.0
    tuning.on_stage_progress(2, 8)  # 2 of 8 patches in 2 s: 6 s to go at that pace
    assert said[-1] == "training done: 9 iterations in 57 s. Now recalibrating BatchNorm… (2 s so far, about 6 s left)"
    assert bars[-1] == (2, 8)
    now[0] += 1.0
    tuning.on_tick()
    assert said[-1].endswith("Now recalibrating BatchNorm… (3 s so far, about 5 s left)")
    tuning.on_message("scoring the accepted cases (training Dice)")
    assert said[-1].endswith("Now scoring the accepted cases…") and bars[-1] == (0, 0)  # busy again
    now[0] += 1.5
    tuning.on_tick()
    assert said[-1].endswith("Now scoring the accepted cases… (2 s so far)")  # no count yet: no estimate
    tuning.on_message("writing model v003")
    tuning.on_tick()  # within its first second a stage shows no time: the same text, not said again
    tuning.on_message("wrote model v003 (/s/.uamc/models/v003.pt); not adopted")
    assert sum(text.endswith("Now writing v003…") for text in said) == 1
    tuning.on_message("comparing the new version v003 with v002 on the other cases")
    assert said[-1].endswith("Now comparing v003 with the model in use…")


def test_a_tick_leaves_stopping_alone(session):
    tuning, now, said, _ = _running(session)
    tuning._job = object()  # a run is going on
    tuning.stop()
    now[0] += 2.0
    tuning.on_tick()
    assert said[-1].startswith("stopping…")
    tuning._job = None


def test_the_panel_knows_the_engines_stage_messages():
    """The panel imports no torch; it names the stages by the engine's own words
    (engine/progress_messages.py), never a copy of them."""
    from napari_uamc._napari import finetune_progress, tasks
    from napari_uamc.engine import finetune

    assert finetune_progress.TRAINING_MESSAGE == finetune.TRAINING_MESSAGE
    assert finetune_progress.READING_REPLAY_MESSAGE == finetune.READING_REPLAY_MESSAGE
    assert tasks.WRITING_MESSAGE == finetune_progress.WRITING_MESSAGE == finetune.WRITING_MESSAGE


def test_a_replay_folder_is_checked_when_chosen_and_a_bad_one_changes_nothing(session, tiny_study, tmp_path):
    session.open_study(tiny_study, open_first_case=False)
    tuning, notices = session.finetuning, []
    session.notice.connect(lambda text, level: notices.append(text))
    assert tuning.replay == "auto" and tuning.replay_label == "automatic"  # the default: as before
    assert not tuning.set_replay(str(tmp_path / "gone"))
    assert session.texts["finetune"] == (f"replay folder {tmp_path / 'gone'} is not a folder; replay stays "
                                         "automatic", "error") and notices
    assert not tuning.set_replay(str(tiny_study))
    assert "is the open study" in session.texts["finetune"][0] and tuning.replay == "auto"
    (tmp_path / "empty").mkdir()
    assert not tuning.set_replay(str(tmp_path / "empty")) and "holds no training images" in session.texts["finetune"][0]
    earlier = write_phantom_study(tmp_path / "earlier", cases=3, seed=5, shape=(32, 32, 16), labeled=2)
    assert tuning.set_replay(str(earlier)) and tuning.replay == str(earlier)
    assert session.texts["finetune"] == (f"replay: the first 2 of its 2 labeled cases in {earlier} will be trained "
                                         "beside your accepted cases against forgetting, in each fine-tune", "ok")
    assert tuning.set_replay(None) and tuning.replay is None and tuning.replay_label == "none"
    assert tuning.set_replay("auto") and tuning.replay == "auto"


def test_a_replay_folder_that_went_starts_nothing(session, tiny_study, tmp_path):
    import shutil

    session.open_study(tiny_study, open_first_case=False)
    accept_box(session.study)
    earlier = write_phantom_study(tmp_path / "earlier", cases=2, seed=5, shape=(32, 32, 16), labeled=2)
    tuning = session.finetuning
    assert tuning.set_replay(str(earlier))
    shutil.rmtree(earlier)
    tuning.budget_unit, tuning.budget = "iterations", 1
    tuning.start()
    assert tuning.job is None and tuning.offer is None and session.study.model_versions() == ["v001"]
    assert session.texts["finetune"] == (f"replay folder {earlier} is not a folder; nothing was started: choose "
                                         "another replay folder, automatic or none", "error")


def test_a_finetune_replays_the_chosen_folder_and_its_offer_says_so(session, tiny_study, tmp_path):
    """The packaged model's record names its data but no folder, so in the app a clinician got no
    replay: the Fine-tune box now takes a folder, as ``uamc finetune --replay DIR`` does."""
    session.open_study(tiny_study, open_first_case=False)
    accept_box(session.study)
    earlier = write_phantom_study(tmp_path / "earlier", cases=3, seed=5, shape=(32, 32, 16), labeled=2)
    tuning = session.finetuning
    assert tuning.set_replay(str(earlier))
    tuning.budget_unit, tuning.budget = "iterations", 1
    tuning.start()
    offer = tuning.offer
    assert offer is not None and offer.replay["cases"] == ["phantom_A_0005_000", "phantom_A_0005_001"]
    line = (f"Replay against forgetting: 2 cases of {earlier} (the replay folder asked for) trained beside your "
            "accepted cases.")
    assert offer.lines()[-1] == line
    record = json.loads(session.study.model_info_path(offer.version).read_text())["replay"]
    assert record == offer.replay  # vNNN.json keeps it; an offer made again from it says the same
    assert Offer.from_record(offer.version, read_version_info(session.study, offer.version)).lines()[-1] == line


def test_an_offer_says_why_there_was_no_replay_without_a_command_line_hint():
    why = ("no replay: the starting model's record names no folder (it says: 'LA 2018'); give a replay folder "
           "(the panel's Replay choice, or uamc finetune --replay DIR) to replay its training data")  # an old record
    lines = _offer(replay={"source": None, "cases": [], "why": why}).lines()
    # the record's own words stay in the record (a try-out found them hard to read in the offer)
    assert lines[-1] == "No replay: the starting model's record names no folder; give a replay folder to replay its " \
                        "training data."
    quoted = why.replace("'LA 2018'", '"LA 2018 (2018 Atrial Segmentation Challenge): first 64"')
    assert _offer(replay={"source": None, "cases": [], "why": quoted}).lines()[-1] == lines[-1]
    assert not any("replay" in line.lower() for line in _offer().lines())  # not recorded: nothing said
    released = why.replace("(the panel's Replay choice, or uamc finetune --replay DIR)", "(uamc finetune --replay DIR)")
    assert _offer(replay={"source": None, "cases": [], "why": released}).lines()[-1] == lines[-1]


def test_an_offer_no_better_on_the_accepted_labels_says_so_with_its_numbers():
    """Try-out: 0.947 -> 0.944 is within WORSE_BY (no amber warning), and Adopt looked as good as Discard."""
    slightly = _offer(before={"a": 0.947}, after={"a": 0.944})
    assert slightly.warning is None and not slightly.agrees_less
    line = next(line for line in slightly.lines() if line.startswith("Accepted case a"))
    assert "v002 0.947, v003 0.944" in line.replace("default model", "v002")
    assert line.endswith("<b>v003 is no better than v002 on your accepted labels</b>, though it trained on them: "
                         "adopting it gains nothing there.")
    same = _offer(before={"a": 0.95, "b": 0.90}, after={"a": 0.94, "b": 0.91})  # equal means
    assert "is no better than v002" in " ".join(same.lines())
    assert _offer().no_better is None and "no better" not in " ".join(_offer().lines())  # 0.80 -> 0.90
    worse = _offer(before={"a": 0.95}, after={"a": 0.90})  # the amber warning says it: not twice
    assert worse.no_better is None and worse.warning is not None


def test_a_short_budget_that_made_few_iterations_is_flagged_like_a_barely_trained_stopped_run():
    """Try-out: a 1-minute budget made 7-11 iterations on real scans, and the offer did not say so."""
    few = _offer(iterations=9)
    assert few.barely_trained and few.warning == (
        "Only 9 iterations in the budget: v003 is barely trained, probably no better than v002, the model in use; "
        "a longer budget is needed to learn much: Discard keeps v002.")
    assert few.lines()[1] == few.warning and sum("9 iterations" in line for line in few.lines()) == 2  # head, warning
    both = _offer(iterations=9, before={"a": 0.95}, after={"a": 0.90})  # the warning is about the labels
    assert "agrees less" in both.warning
    assert "Only 9 iterations in the budget: barely trained; a longer budget is needed to learn much." in both.lines()
    assert _offer(iterations=FEW_ITERATIONS).warning is None


def test_the_versions_line_says_when_the_re_segmentation_after_a_model_change_ended(session, tiny_study):
    """Try-out: Model versions said "re-segmenting the unaccepted cases…" long after Fine-tune said
    "refreshed on 2 cases": the refresh's end was said in the Fine-tune section only."""
    session.open_study(tiny_study, open_first_case=False)
    session.use_version(None)  # the default model: the ranking is re-segmented (synchronously here)
    text, level = session.texts["versions"]
    assert "re-segmenting" not in text and level == "ok"
    assert text.startswith("now using <b>the default model</b>") and "(was v001)" in text
    assert text.endswith(f"re-segmented {len(session.study.unlabeled_cases())} unaccepted cases: Next case follows "
                         f"{session.models.selected.label}")
    assert "uncertainty ranking refreshed on" in session.texts["finetune"][0]


def test_a_stopped_re_segmentation_after_a_model_change_is_said_in_the_versions_line(session, tiny_study):
    session.open_study(tiny_study, open_first_case=False)
    session.finetuning.stop()  # set before the refresh starts: refresh_ranking clears it, so stop in its progress
    session.finetuning.progress.connect(lambda *_: session.finetuning.stop())
    session.use_version(None)
    text = session.texts["versions"][0]
    assert "re-segmenting" not in text and "the re-segmentation did not finish" in text
    assert text.endswith("the case ranking may still be v001's")


def test_automatic_replay_says_before_the_run_what_it_will_do_for_the_model_in_use(
    session, tiny_study, write_unreviewed
):
    """Try-out: for a version fine-tuned in the study, automatic said only after the run, and then
    that the record "names no folder (it says: 'fine-tuned on study ...')"."""
    write_unreviewed(tiny_study, kind="finetune")
    session.open_study(tiny_study, open_first_case=False)
    tuning = session.finetuning
    assert "if its record names one on this computer" in tuning.auto_replay_note  # v001: trained elsewhere
    session.study.current_model = "v002"
    session.refresh_models()
    assert tuning.auto_replay_note == ("none for v002: it was fine-tuned in this study, whose accepted cases are "
                                       "trained on anyway; choose a Folder… to replay other labeled cases")
    session.study.current_model = None
    session.refresh_models()
    assert tuning.auto_replay_note.startswith("none for the packaged model")
    assert tuning.set_replay("auto") and "none for the packaged model" in session.texts["finetune"][0]
    assert "uamc" not in tuning.auto_replay_note and "--replay" not in session.texts["finetune"][0]


def test_fine_tune_during_a_ranking_refresh_says_that_the_ranking_runs(session):
    from napari_uamc._napari.jobs import Job

    notices = []
    session.notice.connect(lambda text, level: notices.append(text))
    tuning = session.finetuning
    tuning._job = Job("ranking", print, {})
    tuning.start()
    tuning._job = Job("finetune", print, {})
    tuning.start()
    tuning._job = None
    assert notices == ["the uncertainty ranking is being refreshed: Fine-tune once it ends (or Stop it)",
                       "a fine-tune is already running"]


def test_an_offer_says_what_taught_the_version_when_the_engine_chose_it():
    said = "the model knows these images: the 4 other cases taught it too (UG-MCL consistency ...)"
    lines = _offer(method=said).lines()
    assert "The model knows these images: the 4 other cases taught it too (UG-MCL consistency ...)." in lines
    assert not any("taught it" in line for line in _offer().lines())  # the person chose: not said
    info = SimpleNamespace(parent="v002", iterations=5, stopped_early=False, starting_agreement={}, training_dice={},
                           cases={"unlabeled": ["b"]}, replay={}, notes=["teacher targets of ...", said])
    assert Offer.from_record("v003", info).method == said  # from the version's record, too
