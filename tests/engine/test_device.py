"""The CPU precision that ``auto`` picks: measured once per machine, cached, never by a flag alone."""

from __future__ import annotations

import json

import pytest
import torch

from napari_uamc.engine import device


def test_the_faster_precision_is_chosen_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_supports_bfloat16", lambda: True)
    timings = {torch.float32: 1.0, torch.bfloat16: 2.0}  # bfloat16 slower: AVX512-BF16 without AMX
    monkeypatch.setattr(device, "_probe_networks", lambda: {})
    monkeypatch.setattr(device, "_probe_seconds", lambda dtype, networks=None: timings[dtype])
    entry = device.measured_cpu_precision(tmp_path)
    assert entry["choice"] == "float32" and entry["bfloat16_s"] == 2.0
    cached = json.loads((tmp_path / device.PRECISION_CACHE_FILE).read_text())
    assert cached[device.machine_key()]["choice"] == "float32"

    def no_probe(dtype, networks=None):
        raise AssertionError("measured again although the answer is cached")

    monkeypatch.setattr(device, "_probe_seconds", no_probe)
    assert device.measured_cpu_precision(tmp_path)["choice"] == "float32"


def test_bfloat16_is_chosen_where_it_is_faster_and_other_machines_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_probe_networks", lambda: {})
    (tmp_path / device.PRECISION_CACHE_FILE).write_text(json.dumps({"another CPU": {"choice": "float32"}}))
    monkeypatch.setattr(device, "cpu_supports_bfloat16", lambda: True)
    monkeypatch.setattr(device, "_probe_seconds", lambda dtype, networks=None: 0.5 if dtype == torch.bfloat16 else 1.0)
    assert device.measured_cpu_precision(tmp_path)["choice"] == "bfloat16"
    cached = json.loads((tmp_path / device.PRECISION_CACHE_FILE).read_text())
    assert set(cached) == {"another CPU", device.machine_key()}


def test_no_native_bfloat16_means_float32_without_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_supports_bfloat16", lambda: False)
    monkeypatch.setattr(device, "_probe_seconds", lambda dtype, networks=None: pytest.fail("no probe expected"))
    assert device.measured_cpu_precision(tmp_path)["choice"] == "float32"


def test_a_corrupt_or_unwritable_cache_only_means_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_probe_networks", lambda: {})
    monkeypatch.setattr(device, "cpu_supports_bfloat16", lambda: True)
    monkeypatch.setattr(device, "_probe_seconds", lambda dtype, networks=None: 1.0 if dtype == torch.bfloat16 else 2.0)
    (tmp_path / device.PRECISION_CACHE_FILE).write_text("{not json")
    assert device.measured_cpu_precision(tmp_path)["choice"] == "bfloat16"
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    assert device.measured_cpu_precision(blocked)["choice"] == "bfloat16"


def test_the_probe_times_the_fused_network_in_both_precisions():
    networks = device._probe_networks()
    for dtype in (torch.float32, torch.bfloat16):
        assert 0 < device._probe_seconds(dtype, networks) < 120


def test_auto_precision_follows_the_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UAMC_CACHE", str(tmp_path))
    key = device.machine_key()
    for choice, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        (tmp_path / device.PRECISION_CACHE_FILE).write_text(json.dumps({key: {"choice": choice}}))
        assert device.resolve_precision("auto", torch.device("cpu")) == dtype
    assert device.resolve_precision("float32", torch.device("cpu")) == torch.float32
