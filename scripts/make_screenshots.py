"""Regenerate the screenshots in docs/images (run under a display or xvfb-run).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py [--phantom]

With the real LA 2018 scans beside the clone (../shared/data/la2018), makes the demo study of
held-out real scans (the packaged model never trained on them), else (or with ``--phantom``) a
small phantom study of domain B, in ``~/studies/la2018-demo`` (``~/studies/phantom-demo``): the
panel shows the study's folder, so it is one with a readable name, as a person's would be (the
script refuses a folder that exists, and removes the one it made at the end). Opens it in napari
with the panel, segments the first case with the packaged default model, goes to region #1 of
*Where to correct* (its slice, the whole scan in view as the panel's jump keeps it) and saves,
with the layers as the panel styles them (nothing restyled here):

- ``demo.png``: the whole window, uncertainty over the MRI and the segmentation;
- ``panel.png``: the panel alone;
- ``2d-uncertainty.png``, ``2d-sdf.png``, ``2d-disagreement.png``: the canvas with one map each;
- ``3d.png``: the 3D view (the panel's 3D look: segmentation surface over a dimmed MRI);
- ``offered-version.png``: the panel after a short fine-tune (the first case accepted, with its
  expert label from ``groundTruth/`` standing in for the corrections; 6 iterations): the
  *Offered version* box pinned at the top, with before -> after and Adopt / Discard, over the
  sections scrolled so that the view starts at a section's top edge and shows the Fine-tune
  section whole (no line or row cut under the offer box), after *Preview on this case*;
- ``2d-preview.png``: the canvas with the offered version's outline (orange) over the segmentation.

``--phantom`` writes the same pictures with a ``phantom-`` prefix. The scans themselves never go
into git, only these pictures.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
LA2018 = ROOT.parent / "shared" / "data" / "la2018"
#: Where the pictures' study is made (its path shows in the panel).
STUDIES = Path("~/studies").expanduser()


def pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9 keeps the camera in the scene
    return scene.camera if scene is not None else viewer.camera


def offer_version(panel, case: str, iterations: int = 6, timeout_s: float = 900.0) -> None:
    """Accept ``case`` (its expert label standing in for the corrections, when the study has one),
    fine-tune ``iterations`` iterations and wait for the offer; the Fine-tune section scrolled into view."""
    from napari_uamc._napari.layers import volume_to_layer_data

    session = panel.session
    expert = session.study.read_ground_truth(case)
    seg = session.layers.segmentation(case)
    if expert is not None and seg is not None:
        seg.data = volume_to_layer_data(expert).astype(seg.data.dtype)
    panel.accept()
    panel.budget_unit.setCurrentText("iterations")
    panel.budget_spin.setValue(iterations)
    panel.finetune()
    end = time.monotonic() + timeout_s
    pump(0.2)
    while session.finetuning.job is not None:
        if time.monotonic() > end:
            raise TimeoutError(f"no offered version after {timeout_s:.0f} s")
        pump(0.2)
    pump(0.5)
    if session.finetuning.offer is None:
        raise RuntimeError(f"the fine-tune offered no version: {panel.finetune_status.text()}")
    pump(1.0)
    scroll_to_section(panel, panel.finetune_box)
    pump(0.5)


def preview_offered_version(panel, timeout_s: float = 300.0) -> None:
    """Click *Preview on this case* and wait for the offered version's outline and its Dice line."""
    preview = panel.session.preview
    panel.offer_box.preview_button.click()
    end = time.monotonic() + timeout_s
    pump(0.2)
    while preview.busy:
        if time.monotonic() > end:
            raise TimeoutError(f"no preview after {timeout_s:.0f} s")
        pump(0.2)
    pump(1.0)


def scroll_to_section(panel, wanted) -> None:
    """Scroll the panel's sections so that the view starts at a section's top edge: ``wanted``'s,
    or, where the scroll range ends before it, the nearest one above (a line or a row cut at the
    top of the view, right under the pinned offer box, reads as a broken panel)."""
    from qtpy.QtWidgets import QScrollArea

    bar = panel.findChild(QScrollArea).verticalScrollBar()
    sections = [panel.study_box, panel.segment_box, panel.regions_box, panel.accept_box, panel.finetune_box]
    spacing = wanted.parentWidget().layout().spacing()
    tops = [max(0, box.y() - spacing) for box in sections[:sections.index(wanted) + 1]]
    bar.setValue(max(top for top in tops if top <= bar.maximum()))


def main() -> int:
    from napari_uamc.data.phantoms import write_phantom_study
    from napari_uamc.demo import SCREENSHOT_SIZE, ensure_real_demo_study, open_viewer

    OUT.mkdir(parents=True, exist_ok=True)
    real = (LA2018 / "train.list").is_file() and "--phantom" not in sys.argv
    prefix = "" if real else "phantom-"
    folder = STUDIES / ("la2018-demo" if real else "phantom-demo")
    if folder.exists():
        raise SystemExit(f"{folder} exists: this script makes that study afresh and removes it; move it away first")
    try:
        if real:
            study = ensure_real_demo_study(folder, LA2018)
        else:
            study = write_phantom_study(folder, cases=4, seed=7, shape=(96, 96, 48), labeled=0, domain="B")
        viewer, panel = open_viewer(study)
        viewer.window._qt_window.resize(*SCREENSHOT_SIZE)
        pump(1.0)
        panel.segment()
        while panel.session.segmenting:
            pump(0.1)
        case, session = panel.case, panel.session
        viewer.reset_view()
        regions = session.outcomes[case].regions
        if regions:
            session.jump_to_region(regions[0])  # its slice, the whole scan in view
        pump(1.0)
        viewer.screenshot(str(OUT / f"{prefix}demo.png"), canvas_only=False)
        panel.grab().save(str(OUT / f"{prefix}panel.png"))
        viewer.screenshot(str(OUT / f"{prefix}2d-uncertainty.png"), canvas_only=True)
        uncertainty, sdf = viewer.layers[f"{case} uncertainty"], viewer.layers[f"{case} SDF"]
        uncertainty.visible, sdf.visible = False, True
        pump(0.5)
        viewer.screenshot(str(OUT / f"{prefix}2d-sdf.png"), canvas_only=True)
        sdf.visible = False
        panel.disagreement_check.setChecked(True)
        pump(0.5)
        viewer.screenshot(str(OUT / f"{prefix}2d-disagreement.png"), canvas_only=True)
        panel.disagreement_check.setChecked(False)
        uncertainty.visible = True

        viewer.dims.ndisplay = 3  # the panel's 3D look: the maps hide, the MRI dims
        _camera(viewer).angles = (15, -35, 80)
        viewer.reset_view()
        for _ in range(100):  # the segmentation's surface is made in a worker (surfaces.py)
            if f"{case} surface" in viewer.layers:
                break
            pump(0.1)
        pump(1.5)
        viewer.screenshot(str(OUT / f"{prefix}3d.png"), canvas_only=True)
        viewer.dims.ndisplay = 2
        offer_version(panel, case)
        preview_offered_version(panel)
        panel.grab().save(str(OUT / f"{prefix}offered-version.png"))
        viewer.screenshot(str(OUT / f"{prefix}2d-preview.png"), canvas_only=True)
        viewer.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if STUDIES.is_dir() and not any(STUDIES.iterdir()):
            STUDIES.rmdir()
    print(f"wrote {', '.join(p.name for p in sorted(OUT.glob(prefix + '*.png')))} in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
