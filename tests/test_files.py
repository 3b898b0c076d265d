"""Atomic writes: whole files or none, and as readable as any file the user creates."""

from __future__ import annotations

import os
import stat

import pytest

from hagstudy.files import atomic_open, atomic_write


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    atomic_write(path, "a,b\n1,2\n")
    atomic_write(path, b"x\r\n")
    assert path.read_bytes() == b"x\r\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "labels.csv"
    atomic_write(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(path, "a"):
            pass


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "main.csv", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
