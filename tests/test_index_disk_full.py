"""cas-index when the disk fills up: the index cache (sqlite) is the first thing a run
writes, and a full disk there is reported as a full disk (exit 4), not as a damaged
cache to delete.

The disk is a real 2 MiB tmpfs when the suite may mount one (it runs as root here). A user
who cannot mount gets sqlite's own SQLITE_FULL error raised from the cache write instead,
because without a mount there is no way to give one folder a small disk.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess

import pytest

from cas_index.cache import SubdirCache
from cas_index.cli import main
from tests.support.conda_packages import PkgSpec, build_package
from tests.support.index_tools import records


@pytest.fixture
def small_disk(tmp_path):
    """(folder, mounted): a 2 MiB tmpfs at `folder` when mounting is allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, check=False).returncode == 0
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder) -> None:
    """Write a file until the disk says it is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_while_writing_the_cache_says_the_disk_is_full(small_disk, run_cli,
                                                                  monkeypatch):
    disk, mounted = small_disk
    chan = disk / "chan"
    build_package(PkgSpec("alpha", subdir="linux-64"), chan / "linux-64")
    assert run_cli(main, [chan]).code == 0
    published = (chan / "linux-64/repodata.json").read_bytes()
    build_package(PkgSpec("beta", subdir="linux-64"), chan / "linux-64")
    if mounted:
        fill(disk)
    else:
        def full(self, rows):
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise exc

        monkeypatch.setattr(SubdirCache, "store", full)

    result = run_cli(main, [chan])
    assert result.code == 4, result
    assert result.err == (
        f"cas-index: error: {chan}: the disk is full (sqlite could not write the index "
        "cache, <platform>/.cache/cas-index.sqlite); the published files are consistent: "
        "free some space and rerun\n")
    assert (chan / "linux-64/repodata.json").read_bytes() == published
    assert (chan / "linux-64/.cache/cas-index.sqlite").is_file()  # kept: it is not damaged

    if mounted:
        (disk / "filler").unlink()
    else:
        monkeypatch.undo()
    assert run_cli(main, [chan]).code == 0  # with space again, the next run publishes
    assert set(records(chan / "linux-64")) == {"alpha-1.0-0.conda", "beta-1.0-0.conda"}


def test_a_first_run_on_a_full_disk_says_the_disk_is_full(small_disk, run_cli, monkeypatch):
    # the first write of a run is the lock's pid: the kernel's error names no file
    disk, mounted = small_disk
    chan = disk / "chan"
    build_package(PkgSpec("alpha", subdir="linux-64"), chan / "linux-64")
    if mounted:
        fill(disk)
    else:
        from cas_index import lock

        def pwrite(fd, data, offset):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(lock.os, "pwrite", pwrite)
    result = run_cli(main, [chan])
    assert result.code == 4, result
    assert result.err == (
        f"cas-index: error: {chan / '.cas-index.lock'}: No space left on device (the disk is "
        "full); the published files are consistent: free some space and rerun\n")
    assert not (chan / "linux-64/repodata.json").exists()
