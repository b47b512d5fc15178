"""cas_index.atomic: files are replaced atomically, readable by a web server, and the
temporary name never writes through anything already there."""

from __future__ import annotations

import itertools
import os
import stat

import pytest

from cas_index import atomic


def test_a_published_file_has_the_usual_permissions_for_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_atomic(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    atomic.write_atomic(tmp_path / "b.json", b"{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o666 & ~old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


def test_a_temporary_name_already_taken_is_skipped_never_written_through(
        tmp_path, monkeypatch):
    """A killed process may have left `.tmp-NAME.PID.N` (the PID is reused), or someone
    put a symlink there: the next name is taken, and the file it points to is untouched."""
    monkeypatch.setattr(atomic, "_SERIAL", itertools.count(5))
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    pid = os.getpid()
    (tmp_path / f".tmp-out.json.{pid}.5").symlink_to(victim)
    (tmp_path / f".tmp-out.json.{pid}.6").write_bytes(b"left by a killed run")
    atomic.write_atomic(tmp_path / "out.json", b"new")
    assert (tmp_path / "out.json").read_bytes() == b"new"
    assert victim.read_bytes() == b"keep me"
    assert not (tmp_path / f".tmp-out.json.{pid}.7").exists()  # renamed into place


def test_write_all_goes_on_after_a_short_write(tmp_path, monkeypatch):
    """os.write may take only part of a buffer (a pipe, a signal): the rest still goes."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        atomic.write_all(fd, b"0123456789")
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"0123456789"


def test_a_failed_write_names_the_file_being_replaced_and_leaves_no_temporary(
        tmp_path, monkeypatch):
    # a write to a descriptor names no file ("cas-index: error: <channel>: File too large"
    # said neither which file nor what): the error names the final path
    import errno

    def too_large(fd, data):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(atomic, "write_all", too_large)
    target = tmp_path / "repodata.json"
    with pytest.raises(OSError) as raised:
        atomic.write_atomic(target, b"{}")
    assert raised.value.errno == errno.EFBIG and raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
