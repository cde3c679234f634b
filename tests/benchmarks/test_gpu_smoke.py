"""The GPU benchmark script runs at tiny sizes on the CPU, with only torch and numpy importable.

The GPU machine has no nibabel and no napari (and maybe no scipy): the script must still run
there. The engine itself (trainer, segment_volume) imports scipy lazily, so its rows run with
only torch and numpy too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_bench.py"
#: Packages the GPU machine lacks (or may lack): importing any of them fails in the child.
BLOCKED = ("scipy", "nibabel", "napari", "nrrd", "h5py", "skimage", "qtpy", "magicgui")
LAUNCHER = """
import runpy, sys
blocked = set(sys.argv[2].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
script = sys.argv[1]
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""

sys.path.insert(0, str(BENCHMARKS))
import gpu_bench  # noqa: E402
from _helpers import requires_la2018  # noqa: E402


@pytest.fixture(scope="module")
def torch_only_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu") / "report.json"
    command = [sys.executable, "-c", LAUNCHER, str(SCRIPT), ",".join(BLOCKED),
               "--device", "cpu", "--smoke", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def _why(row: dict) -> str:
    """What a row without timings says instead (its skip reason or error and traceback)."""
    return str(row.get("skipped") or row.get("error")) + "\n" + str(row.get("traceback", ""))


def test_runs_with_only_torch_and_numpy(torch_only_report):
    training = torch_only_report["training"]
    plain = training["plain bf16 channels-last, teacher stacked"]
    naive = training["plain float32, one teacher pass per forward (naive)"]
    for row in (plain, naive):
        assert "seconds_per_iteration" in row, _why(row)
        assert row["seconds_per_iteration"] > 0
        assert row["iterations_per_second"] == pytest.approx(1 / row["seconds_per_iteration"])
        assert row["projected_6000_minutes"] == pytest.approx(row["seconds_per_iteration"] * 100)
        assert row["teacher_seconds"] > 0 and row["student_seconds"] > 0
    assert training["flops"]["flops_per_iteration"] > 0
    # the engine imports scipy lazily: its trainer runs with only torch and numpy
    engine = training["engine Trainer (uamc train defaults)"]
    assert "iterations_per_second" in engine, _why(engine)
    assert engine["iterations_per_second"] > 0
    inference = torch_only_report["inference"]
    reference = inference["paper stride 12/12/8 float32, plain PyTorch"]
    # 40x36x20 padded to >= 16: starts every 12 (x: 0,12,24; y: 0,12,20; z: 0,4) -> 3*3*2
    assert reference["windows"] == 18 and reference["seconds"] > 0
    segment = inference["uamc segment default (T=2)"]
    assert "seconds" in segment, _why(segment)
    assert segment["seconds"] > 0
    assert torch_only_report["machine"]["card"].startswith("CPU")
    assert torch_only_report["matmul"]["float32"]["tflops"] > 0


def test_engine_rows_run_where_the_engine_imports():
    device = torch.device("cpu")
    trained = gpu_bench.engine_training(gpu_bench.SMOKE, device)
    assert trained["iterations_per_second"] > 0
    assert trained["timed_iterations"] == gpu_bench.SMOKE.blocks * gpu_bench.SMOKE.block_iterations
    assert trained["teacher_seconds"] > 0 and trained["mc_chunk"] == 1  # one pass per forward on a CPU
    image = gpu_bench.synthetic_volume(gpu_bench.SMOKE.volume)
    tiles = gpu_bench.engine_inference(gpu_bench.SMOKE, device, image, "tiles")
    assert tiles["windows"] == 1 and tiles["mc_windows"] == 1
    assert tiles["label"].shape == gpu_bench.SMOKE.volume and tiles["label"].dtype == np.uint8


def test_report_is_written_into_its_section(torch_only_report, tmp_path):
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(torch_only_report))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept text\n")
    assert gpu_bench.main(["--write", str(doc)]) == 0
    assert "Not run yet" in doc.read_text()
    assert gpu_bench.main(["--report", str(report_path), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "kept text" in text and "Not run yet" not in text
    assert text.count("<!-- BEGIN gpu -->") == 1 and text.count("<!-- END gpu -->") == 1
    assert "| plain float32, one teacher pass per forward (naive) |" in text
    assert "| engine Trainer (uamc train defaults) |" in text


def test_refuses_cuda_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@requires_la2018
def test_la_training_script_runs_with_only_torch_numpy_and_h5py(tmp_path):
    """gpu_train_la.py (the paper's LA configuration on a GPU) at smoke size on real scans."""
    blocked = tuple(name for name in BLOCKED if name != "h5py")
    command = [sys.executable, "-c", LAUNCHER, str(BENCHMARKS / "gpu_train_la.py"), ",".join(blocked),
               "--device", "cpu", "--smoke", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for row in ("ugmcl", "upper"):
        result = json.loads((tmp_path / f"{row}.json").read_text())
        assert result["iterations"] == 2 and (tmp_path / f"{row}.pt").is_file()
        dices = [case["dice"] for case in result["validation"]["cases"].values()]
        assert len(dices) == 1 and 0.0 <= dices[0] <= 1.0  # scored without scipy: Dice only
        assert set(result["validation"]["cases"][next(iter(result["validation"]["cases"]))]) == {"dice"}
    ugmcl = json.loads((tmp_path / "ugmcl.json").read_text())
    assert (ugmcl["labeled"], ugmcl["unlabeled"]) == (2, 2)
    assert sorted(ugmcl["config"]["terms"]) == ["ctc", "dis", "itc", "seg"]


def test_gpu_train_la_trains_ugmcl_against_whole_case_targets_when_asked():
    from _helpers import load_benchmark

    script = load_benchmark("gpu_train_la")

    def ugmcl_config(*extra: str):
        return script.row_config("ugmcl", script.build_parser().parse_args(["--consistency", "1.0", *extra]))

    per_patch = ugmcl_config()
    cached = ugmcl_config("--teacher-refresh", "25", "--teacher-start", "300", "--target-gate")
    assert per_patch.teacher_refresh == 0 and not per_patch.target_gate
    assert (cached.teacher_refresh, cached.teacher_start, cached.target_gate) == (25, 300, True)
    assert cached.consistency == 1.0 and (cached.batch_size, cached.labeled_batch_size) == (4, 2)
