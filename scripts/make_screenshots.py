"""Regenerate the screenshots in docs/images (run under a display or xvfb-run).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

With the real LA 2018 scans beside the clone (../shared/data/la2018), makes the demo study of
held-out real scans (the packaged model never trained on them), else a small phantom study of
domain B; opens it in napari with the panel, segments the first case with the packaged default
model and saves: the whole window (demo.png), the panel alone (panel.png), a 3D view of the
segmentation surface (3d.png) and one of the SDF head's zero level (3d-sdf.png). The scans
themselves never go into git, only these pictures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
LA2018 = ROOT.parent / "shared" / "data" / "la2018"


def pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def main() -> int:
    from napari_uamc._napari.panel import _camera
    from napari_uamc.data.phantoms import write_phantom_study
    from napari_uamc.demo import SCREENSHOT_SIZE, ensure_real_demo_study, open_viewer

    OUT.mkdir(parents=True, exist_ok=True)
    real = (LA2018 / "train.list").is_file()
    with tempfile.TemporaryDirectory() as tmp:
        if real:
            study = ensure_real_demo_study(Path(tmp) / "study", LA2018)
        else:
            study = write_phantom_study(Path(tmp) / "study", cases=4, seed=7, shape=(96, 96, 48), labeled=0,
                                        domain="B")
        viewer, panel = open_viewer(study)
        viewer.window._qt_window.resize(*SCREENSHOT_SIZE)
        pump(1.0)
        panel.segment()
        while panel._segment_worker is not None:
            pump(0.1)
        case = panel.case
        viewer.reset_view()
        pump(1.0)
        viewer.screenshot(str(OUT / "demo.png"), canvas_only=False)
        panel.grab().save(str(OUT / "panel.png"))

        if not real:  # 3D on a phantom of the model's own domain (A), where its surface should be right
            study_a = write_phantom_study(Path(tmp) / "study_a", cases=1, seed=8, shape=(96, 96, 48), labeled=0)
            panel.open_study(study_a)
            panel.segment()
            while panel._segment_worker is not None:
                pump(0.1)
            case = panel.case

        # 3D: the segmentation surface and the SDF zero level (iso-surface of -SDF at 0)
        viewer.dims.ndisplay = 3
        viewer.layers[f"{case} uncertainty"].visible = False
        viewer.layers[case].visible = False
        sdf = viewer.layers[f"{case} SDF"]
        viewer.add_image(
            -np.asarray(sdf.data), name=f"{case} SDF zero level", scale=sdf.scale,
            rendering="iso", iso_threshold=0.0, colormap="cyan", opacity=0.35, blending="translucent",
        )
        seg = viewer.layers[f"{case} segmentation"]
        seg.opacity = 0.9
        seg.rendering = "iso_categorical"
        _camera(viewer).angles = (15, -35, 80)
        viewer.reset_view()
        pump(1.0)
        zero_level = viewer.layers[f"{case} SDF zero level"]
        zero_level.visible = False
        viewer.screenshot(str(OUT / "3d.png"), canvas_only=True)
        zero_level.visible = True
        zero_level.opacity = 1.0
        seg.visible = False
        pump(0.5)
        viewer.screenshot(str(OUT / "3d-sdf.png"), canvas_only=True)
        viewer.close()
    print(f"wrote {', '.join(p.name for p in sorted(OUT.glob('*.png')))} in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
