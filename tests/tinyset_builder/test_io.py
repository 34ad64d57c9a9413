"""Atomic writes: both modes replace whole files, give 0666 & ~umask, leave no temporary file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyset_builder.io import FILE_MODE, atomic_write_bytes


@pytest.mark.parametrize("lean", [False, True])
def test_atomic_write_replaces_with_the_usual_mode_and_no_leftovers(tmp_path: Path,
                                                                    lean: bool) -> None:
    target = tmp_path / "tile.jpg"
    atomic_write_bytes(target, b"first", fsync=not lean, lean=lean)
    atomic_write_bytes(target, b"second, longer", fsync=not lean, lean=lean)  # not appended
    assert target.read_bytes() == b"second, longer"
    assert target.stat().st_mode & 0o777 == FILE_MODE
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes", lean=lean)  # type: ignore[arg-type]
    assert target.read_bytes() == b"second, longer"  # a failed write leaves the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile.jpg"]  # no .part left


def test_only_the_default_mode_makes_the_folder(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a" / "b" / "x.json", b"{}")
    assert (tmp_path / "a" / "b" / "x.json").read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError):  # lean: the caller makes the folder once
        atomic_write_bytes(tmp_path / "c" / "x.png", b"png", lean=True)
    assert not (tmp_path / "c").exists()


def test_lean_temporary_name_is_per_process(tmp_path: Path) -> None:
    """A stray temporary file of a killed writer is overwritten, never read as the output."""
    target = tmp_path / "t.png"
    stray = tmp_path / f".t.png.{os.getpid()}.part"
    stray.write_bytes(b"half of an earlier write, longer than the new one")
    atomic_write_bytes(target, b"new", lean=True)
    assert target.read_bytes() == b"new" and not stray.exists()
