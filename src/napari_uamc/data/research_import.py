"""Studies from the left-atrium research layouts: ``uamc import`` and :func:`import_study`.

Two layouts are read, one folder per case, case names from the folder names:

* the UA-MT/DTC/UG-MCL research code's ``<CASE>/mri_norm2.h5`` (datasets ``image`` and
  ``label``; no geometry is stored, so the spacing is ``spacing``, 0.625 mm by default, the
  LA 2018 scans' own), with the case order of a ``train.list`` beside the folders when present;
* the 2018 Atrial Segmentation Challenge's ``<CASE>/lgemri.nrrd`` + ``<CASE>/laendo.nrrd``
  (the label's value 255 means atrium; geometry from the NRRD header).

Every image becomes ``imagesTr/<CASE>.nii.gz`` on its own grid, every label goes to
``groundTruth/`` (a reference, never trained on), and the first ``labeled`` cases in list order
are also accepted into ``labelsTr/``. The study is built in a hidden folder beside ``out`` and
renamed into place at the end, so a failed import leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_uamc.data.case_list import read_case_list
from napari_uamc.data.io import LA_H5_FILE, LA_H5_SPACING_MM, read_h5_case, read_label, read_volume
from napari_uamc.data.study import Study
from napari_uamc.data.volume import Volume
from napari_uamc.errors import InputError, StudyError

__all__ = ["H5_FILE", "NRRD_IMAGE_FILE", "NRRD_LABEL_FILE", "LIST_FILE", "LA_SPACING_MM",
           "ResearchCase", "find_research_cases", "import_study"]

#: The research code's per-case file.
H5_FILE = LA_H5_FILE
#: The challenge's per-case image and atrium label.
NRRD_IMAGE_FILE = "lgemri.nrrd"
NRRD_LABEL_FILE = "laendo.nrrd"
#: The research code's case list (its order decides which cases are labeled).
LIST_FILE = "train.list"
#: Voxel size of the LA 2018 scans (mm), used for ``.h5`` files, which store none.
LA_SPACING_MM = LA_H5_SPACING_MM
#: Value of the atrium in the challenge's ``laendo.nrrd``.
CHALLENGE_ATRIUM_VALUE = 255

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ResearchCase:
    """One case of a research layout: its name and files (``label`` may be None for NRRD)."""

    name: str
    image: Path
    label: Path | None
    layout: str  # "h5" or "nrrd"


def find_research_cases(source: str | os.PathLike[str], case_list: str | os.PathLike[str] | None = None
                        ) -> list[ResearchCase]:
    """The cases of a research-layout folder, in list order (``case_list``, else ``train.list``
    in ``source`` when present, else sorted by name).

    Raises:
        InputError: ``source`` is not a folder, holds neither layout or mixes them, or the case
            list cannot be read, names no case, names one twice or names one with no folder.
    """
    root = Path(source).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder (expected one folder per case)")
    found: dict[str, ResearchCase] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        h5 = folder / H5_FILE
        nrrd = folder / NRRD_IMAGE_FILE
        if h5.is_file():
            found[folder.name] = ResearchCase(folder.name, h5, h5, "h5")
        elif nrrd.is_file():
            label = folder / NRRD_LABEL_FILE
            found[folder.name] = ResearchCase(folder.name, nrrd, label if label.is_file() else None, "nrrd")
    if not found:
        raise InputError(
            f"{root} holds no research-layout case: expected folders <CASE>/{H5_FILE} (UA-MT/DTC/UG-MCL "
            f"code) or <CASE>/{NRRD_IMAGE_FILE} + {NRRD_LABEL_FILE} (LA 2018 challenge)"
        )
    layouts = {case.layout for case in found.values()}
    if len(layouts) > 1:
        raise InputError(f"{root} mixes {H5_FILE} and {NRRD_IMAGE_FILE} case folders; import each kind separately")
    list_path = Path(case_list) if case_list is not None else root / LIST_FILE
    if case_list is None and not list_path.is_file():
        return [found[name] for name in sorted(found)]
    names = read_case_list(list_path, case_folders=True)
    missing = [n for n in names if n not in found]
    if missing:
        raise InputError(
            f"{list_path} names {len(missing)} case(s) with no case folder in {root}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    return [found[name] for name in names]


def _binary_label(label: Volume, case: ResearchCase) -> np.ndarray:
    """The atrium mask (0/1): the challenge's 255 becomes 1; any other value is refused."""
    values = set(np.unique(label.array).tolist())
    atrium = CHALLENGE_ATRIUM_VALUE if case.layout == "nrrd" else 1
    unexpected = sorted(values - {0, atrium})
    if unexpected:
        raise InputError(
            f"{case.label}: label values {unexpected[:5]} are neither background (0) nor atrium ({atrium})"
        )
    return (label.array == atrium).astype(np.uint8)


def _read_case(case: ResearchCase, spacing: tuple[float, float, float]) -> tuple[Volume, np.ndarray | None]:
    if case.layout == "h5":
        image, label = read_h5_case(case.image, spacing=spacing)
    else:
        image = read_volume(case.image)
        label = None if case.label is None else read_label(case.label, image)
    image = image.with_array(image.array, name=case.name)
    return image, None if label is None else _binary_label(label, case)


def import_study(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    labeled: int = 0,
    case_list: str | os.PathLike[str] | None = None,
    spacing: float | Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
) -> Study:
    """Turn a research-layout folder (module docstring) into a study at ``out``.

    ``labeled``: how many of the first cases (list order) are accepted into ``labelsTr/``;
    ``case_list``: a file naming the cases to import, in order; ``spacing`` (mm, one or three
    numbers): the voxel size of ``.h5`` files (default 0.625). ``progress(done, total, case)``
    follows each case. Nothing is written at ``out`` unless the whole import worked.

    Raises:
        InputError: as :func:`find_research_cases`; ``labeled`` is not an integer from 0 to the
            number of cases; ``spacing`` is not one or three positive numbers; a case to accept
            has no label file; an image or label cannot be read (as
            :func:`~napari_uamc.data.io.read_volume`) or holds values other than 0 and the atrium
            (1 in ``.h5``, 255 in ``laendo.nrrd``); or a case name cannot name a file.
        GridMismatchError: a label is not on its image's grid.
        StudyError: ``out`` exists and is not an empty folder, or the study cannot be written.
    """
    cases = find_research_cases(source, case_list)
    if isinstance(labeled, bool) or not isinstance(labeled, int) or not 0 <= labeled <= len(cases):
        raise InputError(f"--labeled must be an integer from 0 to {len(cases)} (the cases found), not {labeled!r}")
    if spacing is None:
        spacing = LA_SPACING_MM
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)  # type: ignore[arg-type]
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"spacing must be one or three positive numbers (mm), not {spacing!r}")
    unlabeled = [case.name for case in cases[:labeled] if case.label is None]
    if unlabeled:
        raise InputError(f"cases to be accepted have no {NRRD_LABEL_FILE}: {', '.join(unlabeled[:5])}")
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StudyError(f"cannot import into {target}: it exists and is not an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.importing-", dir=target.parent))
    try:
        study = Study.create(staging / "study", name=Path(source).name or "imported study",
                             description=f"imported from {Path(source).resolve()}")
        for done, case in enumerate(cases, start=1):
            image, label = _read_case(case, values)  # type: ignore[arg-type]
            study.add_images([image])
            if label is not None:
                study.save_ground_truth(case.name, label)
                if done <= labeled:
                    study.accept(case.name, label, note=f"imported from {case.label}")
            if progress is not None:
                progress(done, len(cases), case.name)
        if target.exists():
            target.rmdir()
        os.replace(staging / "study", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Study.open(target)
