"""gpuwizard.privatefile: the one "replace a private file" for run state, the VM ledger,
pinned host keys and the price cache."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from gpuwizard.privatefile import write_atomic


def test_the_file_is_0600_whatever_the_umask_and_replaced_whole(tmp_path):
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "state.json", "one")
        write_atomic(tmp_path / "state.json", "two")
    finally:
        os.umask(old)
    assert (tmp_path / "state.json").read_text() == "two"
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path, monkeypatch):
    write_atomic(tmp_path / "known_hosts", "old\n")

    def full(fd, *a, **kw):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gpuwizard.privatefile.os.fdopen", full)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "known_hosts", "new\n")
    monkeypatch.undo()
    assert (tmp_path / "known_hosts").read_text() == "old\n"
    assert os.listdir(tmp_path) == ["known_hosts"]
