"""The main job: napari with a sample phantom study loaded and the napari-uamc panel docked.

``python -m napari_uamc.demo`` opens the window; with ``--screenshot FILE`` (what
``scripts/demo.sh`` uses on a machine without a display, under a virtual X server) it also
runs Segment once, saves a screenshot of the whole window and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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

    if not (path / "dataset.json").is_file():
        print(f"making a phantom study of {DEMO_CASES} cases in {path} …", flush=True)
        write_phantom_study(
            path, cases=DEMO_CASES, seed=DEMO_SEED, shape=DEMO_SHAPE,
            labeled=DEMO_LABELED, domain=DEMO_DOMAIN, overwrite=False,
        )
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
    parser.add_argument("--study", type=Path, default=Path("demo-study"),
                        help="study folder to open (made from phantoms if missing; default: ./demo-study)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save a screenshot of the window to this PNG and exit (headless machines)")
    parser.add_argument("--no-segment", action="store_true",
                        help="with --screenshot: do not run Segment before the screenshot")
    args = parser.parse_args(argv)
    study = ensure_demo_study(args.study.resolve())
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
