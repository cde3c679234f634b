"""The main job: napari with a sample study loaded and the napari-uamc panel docked.

The study is made of held-out real LA 2018 scans with ``--real SOURCE`` (what ``scripts/demo.sh``
passes when ``../shared/data/la2018`` is beside the clone), else of synthetic phantoms.
``python -m napari_uamc.demo`` opens the window; with ``--screenshot FILE`` (what
``scripts/demo.sh`` uses on a machine without a display, under a virtual X server) it also
runs Segment once, saves a screenshot of the whole window and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from napari_uamc.data.study.layout import DATASET_FILE

#: The demo study: small enough to segment in seconds on a laptop CPU.
DEMO_CASES = 6
DEMO_LABELED = 0
DEMO_SEED = 7
DEMO_SHAPE = (96, 96, 48)
DEMO_DOMAIN = "B"  # a domain the packaged model has not seen: the loop has something to fix


#: Window size of the headless screenshot (pixels).
SCREENSHOT_SIZE = (1600, 1000)


def ensure_demo_study(path: Path) -> Path:
    """Create the demo phantom study at ``path`` unless it is already there."""
    from napari_uamc.data.phantoms import write_phantom_study

    if not (path / DATASET_FILE).is_file():
        print(f"making a phantom study of {DEMO_CASES} cases in {path} …", flush=True)
        write_phantom_study(
            path, cases=DEMO_CASES, seed=DEMO_SEED, shape=DEMO_SHAPE,
            labeled=DEMO_LABELED, domain=DEMO_DOMAIN, overwrite=False,
        )
    return path


#: Cases of a real demo study: the last of the source's train.list, which the packaged model
#: never trained on (it trained on the first 64 of the LA 2018 list; see docs/default-model.md).
DEMO_REAL_CASES = 6


def ensure_real_demo_study(path: Path, source: Path) -> Path:
    """Import the last :data:`DEMO_REAL_CASES` cases of a research-layout folder (LA 2018) as
    the demo study at ``path``, unless it is already there. Their expert labels go to
    ``groundTruth/`` (for scoring), none is accepted."""
    import tempfile

    from napari_uamc.data.research_import import LIST_FILE, find_research_cases, import_study

    if (path / DATASET_FILE).is_file():
        return path
    names = [case.name for case in find_research_cases(source)][-DEMO_REAL_CASES:]
    print(f"importing {len(names)} held-out real scans from {source} into {path} …", flush=True)
    with tempfile.TemporaryDirectory() as temp:
        listing = Path(temp) / LIST_FILE
        listing.write_text("\n".join(names) + "\n")
        import_study(source, path, case_list=listing)
    return path


def open_viewer(study: Path, *, show: bool = True):
    """A napari viewer with the panel docked and ``study`` open; returns (viewer, panel)."""
    import napari
    from napari_uamc._napari.panel import UamcPanel

    viewer = napari.Viewer(title="napari-uamc: UG-MCL segmentation", show=show)
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel, name="UG-MCL segmentation", area="right")
    panel.open_study(study)
    return viewer, panel


def _wait_for(condition, timeout: float) -> bool:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.05)
    return False


def run_screenshot(study: Path, screenshot: Path, *, segment: bool = True) -> Path:
    """Open the demo, optionally run Segment, save a window screenshot, close."""
    viewer, panel = open_viewer(study, show=True)
    viewer.window._qt_window.resize(*SCREENSHOT_SIZE)
    _wait_for(lambda: False, 1.0)
    if segment:
        panel.segment()
        if not _wait_for(lambda: panel._segment_worker is None, 600):
            print("segmentation did not finish in time", file=sys.stderr)
        print(panel.segment_status.text().replace("<b>", "").replace("</b>", ""), flush=True)
    viewer.reset_view()
    _wait_for(lambda: False, 1.0)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False)
    viewer.close()
    return screenshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", type=Path, default=None,
                        help="study folder to open (made if missing; default: ./demo-study, or "
                             "./demo-study-la2018 with --real)")
    parser.add_argument("--real", type=Path, metavar="SOURCE", default=None,
                        help="make the demo study from real scans in a research layout (the LA 2018 "
                             "folder): its last 6 train.list cases, never seen by the packaged model")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save a screenshot of the window to this PNG and exit (headless machines)")
    parser.add_argument("--no-segment", action="store_true",
                        help="with --screenshot: do not run Segment before the screenshot")
    args = parser.parse_args(argv)
    if args.real is not None:
        study = ensure_real_demo_study((args.study or Path("demo-study-la2018")).resolve(), args.real)
    else:
        study = ensure_demo_study((args.study or Path("demo-study")).resolve())
    if args.screenshot is not None:
        path = run_screenshot(study, args.screenshot.resolve(), segment=not args.no_segment)
        print(f"screenshot of the napari window: {path}")
        return 0
    import napari

    open_viewer(study)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
