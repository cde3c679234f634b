"""`uamc phantoms`: write a study of synthetic left-atrium-like MRI phantoms."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_uamc.cli._options import XYZ, add_int_option, integer
from napari_uamc.data.phantoms import (
    DEFAULT_SHAPE,
    DOMAINS,
    MAX_SIZE,
    MIN_SIZE,
    case_name,
    resolve_domain,
    write_phantom_study,
)
from napari_uamc.data.study.layout import (
    DATASET_FILE,
    NIFTI_SUFFIX,
    STATE_FILE,
    STUDY_PARTS,
    TOOL_DIR,
    StudyLayout,
)
from napari_uamc.errors import InputError

DESCRIPTION = """\
Write a study (Medical Segmentation Decathlon layout) of synthetic left-atrium-like MRI
phantoms: a bright blood-pool chamber with pulmonary-vein tubes in textured tissue, with
unlabeled bright distractors, a bias field, Rician noise, anisotropic spacing and a
non-identity affine. Every case's label goes to groundTruth/, the first K to labelsTr/ (the
accepted labels). The same seed always gives the same study."""


def _size(text: str) -> int:
    value = integer(MIN_SIZE, "each shape size")(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"each shape size must be at most {MAX_SIZE}, not {value}")
    return value


def _domain(text: str) -> str:
    try:
        return resolve_domain(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    domains = "; ".join(f"{name}: {look.description}" for name, look in DOMAINS.items())
    parser = subparsers.add_parser(
        "phantoms",
        help="write a study of synthetic left-atrium-like MRI phantoms",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "out", metavar="OUT", type=Path, help="study folder to write (new or empty)"
    )
    add_int_option(
        parser, "--cases", minimum=1, metavar="N", required=True,
        help="number of cases to make (at least 1)",
    )
    add_int_option(
        parser, "--seed", minimum=0, metavar="S", default=0,
        help="study seed (non-negative); case i uses a seed derived from S and i (default: 0)",
    )
    parser.add_argument(
        "--shape",
        metavar=XYZ,
        nargs=3,
        type=_size,
        default=list(DEFAULT_SHAPE),
        help="grid size in canonical RAS order, each {}-{} voxels (default: {} {} {})".format(
            MIN_SIZE, MAX_SIZE, *DEFAULT_SHAPE
        ),
    )
    add_int_option(
        parser, "--labeled", minimum=0, metavar="K", default=None,
        help="how many of the first cases get their label in labelsTr/, 0 to N (default: all)",
    )
    parser.add_argument(
        "--domain",
        metavar="NAME",
        type=_domain,
        default="A",
        help=f"appearance domain, case-insensitive (default: A). {domains}",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the study parts ("
        + ", ".join(part if part == DATASET_FILE else f"{part}/" for part in STUDY_PARTS)
        + ") of a non-empty OUT; other files there are kept",
    )
    parser.set_defaults(func=run)


def _canonical_spacing(path: Path) -> tuple[float, float, float]:
    """Voxel size of a NIfTI file along canonical x, y, z, read from its header only."""
    import nibabel as nib
    from nibabel.orientations import io_orientation

    image = nib.load(path)
    zooms = image.header.get_zooms()[:3]
    spacing = [0.0, 0.0, 0.0]
    for source_axis, (canonical_axis, _) in enumerate(io_orientation(image.affine)):
        spacing[int(canonical_axis)] = float(zooms[source_axis])
    return spacing[0], spacing[1], spacing[2]


def _summary(out: Path, args: argparse.Namespace, labeled: int) -> str:
    layout = StudyLayout(out)
    images = sorted(layout.images_dir.glob(f"*{NIFTI_SUFFIX}"))
    spacings = [_canonical_spacing(path) for path in images]
    ranges = ", ".join(
        f"{axis} {min(s[i] for s in spacings):.2f}-{max(s[i] for s in spacings):.2f}"
        for i, axis in enumerate("xyz")
    )
    first = case_name(args.domain, args.seed, 0)
    last = case_name(args.domain, args.seed, args.cases - 1)
    x, y, z = args.shape
    counts = {
        folder.name: len(list(folder.glob(f"*{NIFTI_SUFFIX}")))
        for folder in (layout.images_dir, layout.labels_dir, layout.ground_truth_dir)
    }
    lines = [
        f"phantom study written to {out}",
        f"  cases    {args.cases} ({first} .. {last}), {labeled} labeled",
        f"  domain   {args.domain}: {DOMAINS[args.domain].description}",
        f"  shape    {x} x {y} x {z} voxels (x, y, z), seed {args.seed}",
        f"  spacing  {ranges} mm",
        "  files    "
        + ", ".join(f"{folder}/ {count}" for folder, count in counts.items())
        + f", {DATASET_FILE}, {TOOL_DIR}/{STATE_FILE}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from napari_uamc.cli._progress import ProgressBar

    labeled = args.cases if args.labeled is None else args.labeled
    if labeled > args.cases:
        raise InputError(f"--labeled {labeled} is more than --cases {args.cases}")
    bar = ProgressBar(args.cases, "phantoms")
    out = write_phantom_study(
        args.out,
        cases=args.cases,
        seed=args.seed,
        shape=tuple(args.shape),
        labeled=labeled,
        domain=args.domain,
        overwrite=args.force,
        progress=lambda done, total: bar.update(done, case_name(args.domain, args.seed, done - 1)),
    )
    bar.close()
    print(_summary(out, args, labeled))
    return 0
