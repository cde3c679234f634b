"""Crash-safe file replacement (``napari_uamc._atomic``): success, failure, names, modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from napari_uamc._atomic import atomic_path, write_json_atomic, write_text_atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_success_replaces_the_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "case.nii.gz"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".nii.gz") as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".case.nii.gz.")
        assert temp.name.endswith(".tmp.nii.gz") and temp.is_file() and temp.stat().st_size == 0
        temp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # untouched until the block succeeds
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as temp:
        temp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_missing_folder_is_an_error_unless_parents(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "out.txt"
    with pytest.raises(FileNotFoundError):
        write_text_atomic(target, "x")
    assert not (tmp_path / "new").exists()
    write_text_atomic(target, "héllo\n", parents=True)
    assert target.read_bytes() == "héllo\n".encode()


def test_json_is_indented_and_refuses_nan(tmp_path: Path) -> None:
    target = tmp_path / "out" / "data.json"
    write_json_atomic(target, {"b": [1, 2], "a": None}, parents=True)
    assert target.read_text(encoding="utf-8") == json.dumps({"b": [1, 2], "a": None}, indent=2) + "\n"
    with pytest.raises(ValueError):
        write_json_atomic(target, {"score": float("nan")})
    assert json.loads(target.read_text())["b"] == [1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "never" / "x.json", float("nan"), parents=True)
    assert not (tmp_path / "never").exists()  # refused before any folder is made


def test_compressed_copy_has_no_file_name_in_its_gzip_header(tmp_path: Path) -> None:
    import gzip

    from napari_uamc.data._study_files import atomic_copy

    source = tmp_path / "image.nii"
    source.write_bytes(b"voxels" * 100)
    first, second = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    atomic_copy(source, first, compress=True)
    atomic_copy(source, second, compress=True)
    gzip_flags, fname_flag = first.read_bytes()[3], 0x08
    assert not gzip_flags & fname_flag
    assert first.read_bytes() == second.read_bytes()  # the temp name leaves no trace
    assert gzip.decompress(first.read_bytes()) == source.read_bytes()
