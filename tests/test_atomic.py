"""Atomic outputs (_atomic): nothing half-written, and errors that name the user's path."""

from __future__ import annotations

import errno

import pytest

from cotracker3_plugin._atomic import atomic_dir, atomic_path


def test_failed_write_names_the_final_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "tracks.npz"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")  # what a failed write() raises
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_failed_folder_is_removed_and_the_old_one_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["old.txt"]
