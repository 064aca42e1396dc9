"""Atomic writes: the target appears whole or not at all, and no temporary file is ever left behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from StrokeSegLib.common.atomic import atomic_path, full_suffix, write_json_atomic, write_text_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_temp_path_is_beside_target_and_keeps_compound_suffix(tmp_path: Path) -> None:
    target = tmp_path / "out" / "case_dwi.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.endswith(".nii.gz") and ".tmp-" in tmp.name
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert _leftovers(target.parent) == []


def test_failure_inside_block_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_failure_keeps_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "result.txt"
    write_text_atomic(target, "old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise ValueError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_writer_that_creates_nothing_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "nothing.txt"
    with pytest.raises(FileNotFoundError):
        with atomic_path(target):
            pass
    assert not target.exists()


def test_write_text_and_json_create_parents_and_replace(tmp_path: Path) -> None:
    text_path = write_text_atomic(tmp_path / "a" / "b" / "note.txt", "héllo\n")
    assert text_path.read_text(encoding="utf-8") == "héllo\n"
    json_path = tmp_path / "deep" / "summary.json"
    write_json_atomic(json_path, {"dice": 0.5, "cases": ["x"]})
    write_json_atomic(json_path, {"dice": 0.75})
    assert json.loads(json_path.read_text()) == {"dice": 0.75}
    assert _leftovers(json_path.parent) == []


def test_unserialisable_json_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bad.json"
    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": object()})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"x": float("nan")}, allow_nan=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("a.nii.gz", ".nii.gz"), ("A.NII.GZ", ".NII.GZ"), ("a.mha", ".mha"), ("a.nrrd", ".nrrd"), ("noext", "")],
)
def test_full_suffix(name: str, suffix: str) -> None:
    assert full_suffix(name) == suffix


def test_written_files_get_ordinary_permissions_even_from_private_writers(tmp_path: Path) -> None:
    """A model file bundled or shared must be readable by others, though safetensors creates files 0600."""
    import os
    import stat

    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
