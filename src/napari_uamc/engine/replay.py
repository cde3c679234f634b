"""Replay against forgetting: a few labeled cases of the data the starting model learned from,
trained on beside a study's accepted cases (METHOD.md section 8; issue 10 part 3).

A fine-tune on a handful of accepted cases pulls the model toward them and away from what it
already segmented well. Training on :data:`REPLAY_CASES` of its own training cases as well holds
it there: measured with ``benchmarks/bench_loop.py`` on real LA scans ("Replay against
forgetting" in docs/benchmarks.md). The cases join the accepted ones in the labeled stream (no
step costs more); reading them costs seconds before the first step.

Where they come from (:func:`replay_folder`): the starting model's training data when its record
(``ModelMeta.trained_on``) names a folder that exists on this machine (``uamc train DATA``
records ``DATA``) and the fine-tune is a warm start (:data:`NO_COLD_REPLAY`), or a folder given
explicitly; never the study itself (its accepted cases are trained on anyway). The packaged
default model names its data but not a folder here, so it fine-tunes without replay unless a
folder is given (``uamc finetune --replay DIR``, or the panel's *Replay* choice, which
:func:`check_replay_folder` checks when it is picked). A version fine-tuned in a study names that
study (:data:`FINETUNED_ON`), whose accepted cases it trains on anyway: no replay either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_uamc._words import counted
from napari_uamc.engine.dataset import TrainingCase, list_training_folder, load_cases_from_folder
from napari_uamc.errors import InputError

#: Replay cases per fine-tune: the first of the source's labeled cases (sorted by name).
REPLAY_CASES = 2
#: ``replay=AUTO``: the starting model's training data if it is here, else none.
AUTO = "auto"
#: A replay case's name in the training stream (a study case may have the same name).
PREFIX = "replay:"
#: Why ``replay=AUTO`` replays nothing in a cold start (a model new to the study's images): on real
#: LA scans from a phantom model, replaying its own domain cost the uncorrected scans up to 0.24
#: Dice in the same budget (docs/benchmarks.md, "Replay against forgetting"). A folder given
#: explicitly is replayed in any start.
NO_COLD_REPLAY = ("no replay: a cold start (the model is new to these images; replaying its old data "
                  "cost the new scans in the benchmarks); choose a replay folder to replay anyway")
#: How to give a replay folder, in words both front doors can show (the CLI adds ``--replay DIR``).
GIVE_A_FOLDER = "choose a replay folder"
#: How a fine-tuned version's record (``ModelMeta.trained_on``) begins; the study's folder follows in
#: parentheses (``fine-tuned on study NAME (ROOT)``).
FINETUNED_ON = "fine-tuned on study "


def finetuned_in(trained_on: str) -> Path | None:
    """The study folder a fine-tuned version's record names (None: not a fine-tuned version)."""
    if not trained_on.startswith(FINETUNED_ON) or not trained_on.endswith(")") or " (" not in trained_on:
        return None
    return Path(trained_on[:-1].rsplit(" (", 1)[1])


def study_made_why(folder: Path, study_root: Path) -> str:
    """Why ``replay=AUTO`` replays nothing for a version fine-tuned in the study at ``folder``."""
    if folder.resolve() == Path(study_root).resolve():
        return ("no replay: the starting model was fine-tuned in this study, whose accepted cases are trained on "
                f"anyway; {GIVE_A_FOLDER} to replay other labeled cases")
    return (f"no replay: the starting model was fine-tuned in another study ({folder}), not trained from a "
            f"folder; {GIVE_A_FOLDER} to replay labeled cases")


@dataclass
class Replay:
    """The replay cases of one fine-tune and where they came from."""

    source: Path | None
    why: str
    cases: list[TrainingCase] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the model version's record keeps (``ModelVersionInfo.replay``)."""
        return {"source": None if self.source is None else str(self.source),
                "cases": [case.name.removeprefix(PREFIX) for case in self.cases], "why": self.why}


def replay_folder(trained_on: str, requested: str | os.PathLike[str] | None,
                  study_root: Path) -> tuple[Path | None, str]:
    """The folder to replay from and why: ``requested`` is :data:`AUTO` (the starting model's
    training data ``trained_on``, if it is a folder here), a folder, or ``None`` (no replay).

    Raises:
        InputError: a requested folder that does not exist.
    """
    if requested is None:
        return None, "replay turned off"
    if requested == AUTO:
        study_made = finetuned_in(trained_on)
        if study_made is not None:
            return None, study_made_why(study_made, study_root)
        named = Path(trained_on).expanduser() if trained_on else None
        if named is None or not named.is_dir():
            # two different reasons: a record that names no folder (the packaged model says what it
            # trained on in words) and a folder that is not here; a try-out read the first as the second
            where = ("names no folder" if named is None or not named.is_absolute()
                     else f"names {named}, which is not on this machine")
            said = f" (it says: {trained_on!r})" if trained_on and where == "names no folder" else ""
            return None, (f"no replay: the starting model's record {where}{said}; {GIVE_A_FOLDER} to replay "
                          "its training data")
        folder, why = named, "the starting model's training data"
    else:
        folder, why = Path(requested).expanduser(), "the replay folder asked for"
        if not folder.is_dir():
            raise InputError(f"replay folder {folder} is not a folder")
    if folder.resolve() == Path(study_root).resolve():
        whose = "the starting model trained on this study" if requested == AUTO else "the replay folder is this study"
        return None, f"no replay: {whose} (its accepted cases are trained on)"
    return folder, why


def check_replay_folder(folder: str | os.PathLike[str], study_root: str | os.PathLike[str] | None = None) -> str:
    """Check that ``folder`` can give replay cases, listing its files without reading an image
    (quick enough for a click); returns what it gives in words ("the first 2 of its 16 labeled
    cases"). What only reading tells (an unreadable file, classes the model does not know) the
    fine-tune says when it reads them, and fine-tunes without replay.

    Raises:
        InputError: not a folder, the open study, no training images in a readable layout, or no
            labeled case; the message names the folder and the problem.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"replay folder {path} is not a folder")
    if study_root is not None and path.resolve() == Path(study_root).resolve():
        raise InputError(f"replay folder {path} is the open study: its accepted cases are trained on anyway; "
                         "choose the data the model was trained on")
    try:
        labeled = list_training_folder(path).labeled
    except InputError as error:
        raise InputError(f"not a replay folder: {error}") from None
    if not labeled:
        raise InputError(f"replay folder {path} holds no labeled case: replay needs labels (labelsTr/ in a "
                         "study, labels/ beside images, or LA .h5 files with a label)")
    return f"the first {min(REPLAY_CASES, len(labeled))} of its {counted(len(labeled), 'labeled case')}"


def read_replay(folder: Path | None, why: str, spacing: tuple[float, float, float], n_classes: int,
                count: int = REPLAY_CASES, say: Callable[[str], None] = lambda text: None) -> Replay:
    """Read the first ``count`` labeled cases of ``folder`` at the working ``spacing`` (mm).

    A folder that cannot be read, or whose labels hold classes the model does not know, gives no
    replay (said through ``say``): replay protects the fine-tune, it never stops it.
    """
    if folder is None or count < 1:
        return Replay(None, why)
    try:
        split = load_cases_from_folder(folder, first_labeled=count, target_spacing=spacing)
    except InputError as error:
        say(f"no replay: {error}")
        return Replay(None, f"no replay: {error}")
    cases = [case for case in split.labeled if case.label is not None and int(case.label.max()) < n_classes]
    if len(cases) < len(split.labeled):
        say(f"replay: {counted(len(split.labeled) - len(cases), 'case')} of {folder} with classes the model "
            "does not know, left out")
    if not cases:
        return Replay(None, f"no replay: no usable labeled case in {folder}")
    named = [TrainingCase(PREFIX + case.name, case.image, case.label, case.spacing) for case in cases]
    say(f"replaying {counted(len(named), 'labeled case')} of {folder} ({why}) against forgetting")
    return Replay(folder, why, named)
