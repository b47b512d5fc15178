"""Output nobody reads any more (`cas-sync --show | head`, `cas-index DIR | grep -q`): the
command stops quietly with status 1 (cas_index.streams), never an internal error or
Python's "Exception ignored" at exit; an error message for a stderr nobody reads is
dropped and its exit status kept. A full disk under stdout (`> /dev/full`) is one line
and the full-disk status. Real console scripts, a real pipe whose reader is
closed, with Python's stdout buffered (as on most machines) and unbuffered
(PYTHONUNBUFFERED: every write fails at once)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cas_index.streams import is_broken, reader_went_away
from tests.support.conda_packages import PkgSpec, build_channel

BIN = Path(sys.executable).parent


def run_into_closed_pipe(args: list[str], *, stream: str = "stdout",
                         unbuffered: bool = False) -> subprocess.CompletedProcess:
    """Run a console script with `stream` writing into a pipe whose reader is gone; the
    other stream is captured."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    reader, writer = os.pipe()
    os.close(reader)
    try:
        where = {"stdout": writer} if stream == "stdout" else {"stderr": writer}
        other = "stderr" if stream == "stdout" else "stdout"
        return subprocess.run([str(BIN / args[0]), *args[1:]], env=env, text=True,
                              check=False, timeout=120, **where, **{other: subprocess.PIPE})
    finally:
        os.close(writer)


@pytest.fixture
def upstream(tmp_path, isolated_config, http_server):
    root = tmp_path / "upstream"
    build_channel(root / "pkgs/main", [PkgSpec(f"p{i:02d}", subdir="linux-64")
                                       for i in range(12)])
    server = http_server(root)
    isolated_config.write_user(yaml.safe_dump({
        "remote_url": server.url, "mirror_dir": str(tmp_path / "mirror"),
        "platforms": ["linux-64"], "retries": 0, "timeout": 5, "minimum_free_space": 0}))
    return root / "pkgs/main"


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["cas-sync", "--show"], ["cas-sync", "--dry-run"],
                                  ["cas-sync", "--dry-run", "--json"],
                                  ["cas-sync", "--help"]], ids=" ".join)
def test_a_sync_whose_reader_went_away_stops_quietly(upstream, args, unbuffered):
    done = run_into_closed_pipe(args, unbuffered=unbuffered)
    assert (done.returncode, done.stderr) == (1, ""), done


def test_a_sync_run_finishes_before_its_reader_is_found_gone(upstream, tmp_path):
    """The summary is printed once everything is published: the mirror is complete."""
    done = run_into_closed_pipe(["cas-sync"])
    assert done.returncode == 1, done
    assert "error" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert len(list((tmp_path / "mirror/pkgs/main/linux-64").glob("*.conda"))) == 12


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_an_index_whose_reader_went_away_stops_quietly(upstream, tmp_path, unbuffered):
    channel = tmp_path / "channel"
    shutil.copytree(upstream, channel)
    done = run_into_closed_pipe(["cas-index", str(channel)], unbuffered=unbuffered)
    assert (done.returncode, done.stderr) == (1, ""), done


@pytest.mark.parametrize("args, status", [
    (["cas-sync", "-f", "/nonexistent/cas-mirror.yaml"], 2),
    (["cas-index", "/nonexistent/channel"], 2),
], ids=["sync", "index"])
def test_an_error_nobody_can_read_keeps_its_exit_status(isolated_config, args, status):
    done = run_into_closed_pipe(args, stream="stderr")
    assert done.returncode == status, done
    assert done.stdout == ""


def test_only_a_standard_stream_without_reader_is_a_reader_gone(tmp_path):
    reader, writer = os.pipe()
    assert not is_broken(writer)  # still read
    os.close(reader)
    assert is_broken(writer)
    os.close(writer)
    with open(tmp_path / "file", "w") as f:
        assert not is_broken(f.fileno())
    # an EPIPE of something else (a socket of ours): our own streams are fine, not this case
    assert not reader_went_away(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert not reader_went_away(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.parametrize("args", [["cas-sync", "-f", "/nonexistent/cas-mirror.yaml"],
                                  ["cas-index", "/nonexistent/channel"]], ids=["sync", "index"])
def test_an_error_with_stderr_closed_keeps_its_exit_status(isolated_config, args):
    """`cas-sync ... 2>&-`: Python starts without sys.stderr at all."""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], stdout=subprocess.PIPE, text=True,
                          check=False, timeout=60, preexec_fn=lambda: os.close(2))
    assert (done.returncode, done.stdout) == (2, ""), done


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args, line", [
    (["cas-sync", "--show"], "cas-sync: error: no space left on device"),
    (["cas-index", "{channel}"], ("cas-index: error: cannot write the summary to stdout: no "
                                 "space left on device; the published files are consistent")),
], ids=["sync", "index"])
def test_a_full_disk_under_stdout_is_one_line_and_status_4(upstream, tmp_path, args, line,
                                                           unbuffered):
    channel = tmp_path / "channel"
    shutil.copytree(upstream, channel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(BIN / args[0]), *(a.format(channel=channel) for a in args[1:])],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                              check=False, timeout=120)
    assert (done.returncode, done.stderr) == (4, line + "\n"), done
