"""`uamc segment`: label map, signed distance and MC-dropout uncertainty for each image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_uamc.cli._options import (
    XYZ,
    add_device_option,
    add_int_option,
    add_precision_option,
)
from napari_uamc.engine.windows import DEFAULT_OVERLAP, LAYOUTS
from napari_uamc.errors import InputError

DESCRIPTION = """\
Segment 3D images with a UG-MCL dual-task V-Net. For each IMAGE (NIfTI, NRRD, LA .h5, or a
DICOM file or folder of one series with the dicom extra) it writes into DIR, on the image's own
grid and affine:
  <case>_seg.nii.gz          label map (uint8; argmax of the deterministic pass, dropout off)
  <case>_sdf.nii.gz          the network's signed distance (unitless, negative inside, in [-1, 1])
  <case>_uncertainty.nii.gz  MC-dropout uncertainty: entropy of the mean of T dropout samples,
                             in nats, in [0, ln C] (C classes; ln 2 = 0.693 for one structure)
A model with several foreground classes writes one <case>_sdf_<class>.nii.gz per class.
Images whose spacing differs from the model's training spacing by more than 10 % are resampled
to it and the results brought back to the image's grid."""

DEFAULT_MODEL_NOTICE = (
    "Using the packaged default model (left atrium, trained on 64 real LGE MRI scans of LA 2018): "
    "for other structures or scans, fine-tune it on your data (uamc finetune) or train your own "
    "(uamc train)"
)


def _overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--overlap must be a number, not {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"--overlap is a fraction of the window in [0, 1) (e.g. 0.5), not {value:g}"
        )
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--spacing must be numbers (mm), not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--spacing must be positive (mm), not {value:g}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment images: label map, signed distance and uncertainty maps",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", metavar="IMAGE", nargs="+", type=Path,
                        help="images to segment: NIfTI, NRRD, LA .h5, a DICOM file, or a folder of one DICOM "
                             "series (needs the dicom extra)")
    parser.add_argument("--series", metavar="UID",
                        help="the DICOM series (SeriesInstanceUID) to read from a folder that holds several")
    parser.add_argument(
        "--out", metavar="DIR", type=Path, required=True, help="folder for the outputs (created)"
    )
    parser.add_argument(
        "--model",
        metavar="MODEL.pt",
        type=Path,
        default=None,
        help="napari-uamc model file (default: the packaged left-atrium model, trained on 64 real "
        "LA 2018 LGE MRI scans)",
    )
    add_int_option(
        parser,
        "--mc-samples",
        minimum=0,
        metavar="T",
        default=8,
        help="MC-dropout samples per voxel for the uncertainty (default 8; 0 skips it and "
        "writes zeros)",
    )
    parser.add_argument(
        "--overlap",
        metavar="F",
        type=_overlap,
        default=None,
        help="overlap of neighbouring sliding windows as a fraction of the window, in [0, 1) "
        f"(default {DEFAULT_OVERLAP:g}; more is slower and smoother); implies --windows sliding",
    )
    parser.add_argument(
        "--windows",
        choices=LAYOUTS,
        default=None,
        help="deterministic pass (label, SDF): 'tiles' (default): the volume in a few large "
        "windows (fastest; the network is fully convolutional; agrees with the paper's test at "
        "least as well as sliding windows, docs/benchmarks.md), or 'sliding' windows of the "
        "training patch with --overlap, as in the paper (the default when --overlap is given). "
        "The MC samples always use large tiles.",
    )
    add_int_option(
        parser,
        "--patch",
        minimum=16,
        metavar=XYZ,
        nargs=3,
        default=None,
        help="window size in voxels, multiples of 16 (default: the model's training patch)",
    )
    add_device_option(parser)
    add_precision_option(parser, default="auto")
    parser.add_argument(
        "--largest-component",
        action="store_true",
        help="keep only the largest connected component of each class",
    )
    parser.add_argument(
        "--spacing",
        metavar="MM",
        nargs="+",
        type=_positive_float,
        default=None,
        help="voxel size of .h5 inputs, which store none: one number or three (x y z) "
        "(default: 0.625 mm for the research code's mri_norm2.h5, the LA 2018 scans' voxel size; "
        "1 mm for other .h5 files)",
    )
    add_int_option(
        parser,
        "--threads",
        minimum=1,
        metavar="N",
        default=None,
        help="CPU threads for PyTorch (default: PyTorch's choice, usually all cores)",
    )
    parser.set_defaults(func=run)


def _check_inputs(images: list[Path], spacing: list[float] | None) -> list[tuple[Path, str]]:
    from napari_uamc.data.io import case_name

    missing = [str(path) for path in images if not (path.is_file() or path.is_dir())]
    if missing:
        raise InputError(f"input image(s) not found: {', '.join(missing)}")
    if spacing is not None and len(spacing) not in (1, 3):
        raise InputError(f"--spacing takes one number or three (x y z), not {len(spacing)}")
    cases: dict[str, Path] = {}
    for path in images:
        case = case_name(path)
        if case in cases and cases[case] != path:
            raise InputError(
                f"{cases[case]} and {path} have the same case name {case!r}; their outputs would "
                "overwrite each other (segment them into different --out folders)"
            )
        cases[case] = path
    return [(path, case) for case, path in cases.items()]


def run(args: argparse.Namespace) -> int:
    import torch

    from napari_uamc._words import counted
    from napari_uamc.cli._progress import ProgressBar
    from napari_uamc.data.io import read_volume
    from napari_uamc.engine.checkpoint import default_model_path, load_checkpoint
    from napari_uamc.engine.device import keep_freed_memory, resolve_device
    from napari_uamc.engine.inference import InferenceConfig, segment_volume, write_segmentation

    inputs = _check_inputs(args.images, args.spacing)
    keep_freed_memory()  # big activations: reuse freed memory rather than fault in new pages
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config_fields = dict(
        mc_samples=args.mc_samples,
        device=str(device),
        precision=args.precision,
        largest_component=args.largest_component,
    )
    if args.windows is not None:
        config_fields["windows"] = args.windows
    elif args.overlap is not None:  # an overlap only means something for sliding windows
        config_fields["windows"] = "sliding"
    if args.overlap is not None:
        config_fields["overlap"] = args.overlap
    if args.patch is not None:
        config_fields["patch"] = tuple(args.patch)
    cfg = InferenceConfig(**config_fields)

    model_path = args.model
    if model_path is None:
        model_path = default_model_path()
        print(DEFAULT_MODEL_NOTICE)
    model, meta = load_checkpoint(model_path, device=device)
    spacing_text = " x ".join(f"{s:g}" for s in meta.spacing)
    print(
        f"Model {model_path}: {meta.n_classes} classes ({', '.join(meta.class_names[1:])}), "
        f"width {meta.width}, trained at {spacing_text} mm"
        + (f", on {meta.trained_on}" if meta.trained_on else "")
    )
    args.out.mkdir(parents=True, exist_ok=True)

    for number, (path, case) in enumerate(inputs, start=1):
        volume = read_volume(path, spacing=args.spacing, series=args.series)
        if args.series and path.is_dir():  # one folder, several series: each its own output name
            case = f"{case}_series{args.series.rsplit('.', 1)[-1]}"
        label = f"[{number}/{len(inputs)}] {case}"
        bar: list[ProgressBar] = []

        def progress(done: int, total: int, bar: list[ProgressBar] = bar, label: str = label) -> None:
            if not bar:
                bar.append(ProgressBar(total, label))
            bar[0].update(done)

        result = segment_volume(model, meta, volume, cfg, progress=progress)
        if bar:
            bar[0].close(f"({counted(int(result.info['windows']), 'network window')})")
        paths = write_segmentation(result, volume, args.out, case)
        volumes = ", ".join(
            f"{name} {ml:.2f} mL" for name, ml in result.volume_ml(volume.spacing).items()
        )
        resampled = ""
        if result.info["resampled"]:
            resampled = " (resampled to the model's spacing and back)"
        print(
            f"{case}: {volumes}; mean uncertainty in the segmentation "
            f"{result.mean_uncertainty():.3f} nats; segmented in {result.timings['total']:.1f} s{resampled}"
        )
        print("  wrote " + ", ".join(str(p) for p in paths.values()))
    sys.stdout.flush()
    return 0
