"""``uamc import``: a study from the left-atrium research layouts (see
:mod:`napari_uamc.data.research_import`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Make a study (MSD layout) from a folder of left-atrium cases in a research layout, one folder
per case: the UA-MT/DTC/UG-MCL code's <CASE>/mri_norm2.h5 (case order from train.list when
present), or the 2018 Atrial Segmentation Challenge's <CASE>/lgemri.nrrd + laendo.nrrd (255 =
atrium). Case names are the folder names. Images are written as NIfTI (.h5: 0.625 mm unless
--spacing), every label goes to groundTruth/ (a reference, never trained on), and the first N
cases are also accepted into labelsTr/. Nothing is written at --out unless the whole import works."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="make a study from LA research-layout folders (mri_norm2.h5 or lgemri.nrrd)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="folder holding one folder per case")
    parser.add_argument("--out", required=True, metavar="STUDY", help="study folder to create (new or empty)")
    parser.add_argument("--labeled", type=int, default=0, metavar="N",
                        help="accept the labels of the first N cases (list order) into labelsTr/ (default 0)")
    parser.add_argument("--list", metavar="FILE", dest="case_list",
                        help="import only the cases this file names, in its order (default: SOURCE/train.list "
                             "when present, else every case in name order)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                        help="voxel size of .h5 files, one or three numbers (default 0.625, the LA 2018 scans')")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_uamc.cli._progress import ProgressBar
    from napari_uamc.data.research_import import find_research_cases, import_study
    from napari_uamc.errors import InputError

    if args.spacing is not None and len(args.spacing) not in (1, 3):
        raise InputError(f"--spacing takes one number or three (x y z), not {len(args.spacing)}")
    spacing = None if args.spacing is None else (args.spacing[0] if len(args.spacing) == 1 else args.spacing)
    total = len(find_research_cases(args.source, args.case_list))
    bar = ProgressBar(total, "import")
    study = import_study(args.source, args.out, labeled=args.labeled, case_list=args.case_list, spacing=spacing,
                         progress=lambda done, _total, case: bar.update(done, case))
    bar.close(f"{total} cases")
    print(f"wrote study {Path(args.out)}: {len(study.cases())} cases, {len(study.labeled_cases())} accepted "
          f"in labelsTr/, reference labels in groundTruth/")
    return 0
