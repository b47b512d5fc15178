"""Run-wide conditions told once: a stop (full disk) and an unreachable host are one
condition, and each file's own error names only that file."""

from __future__ import annotations

import errno
import hashlib
import os
import ssl
from collections import namedtuple
from pathlib import Path

import pytest

from cas_mirror.net import (
    Downloader,
    DownloadJob,
    FreeSpaceGuard,
    HostCondition,
    HttpError,
    NetworkSettings,
    ProgressReporter,
    host_conditions,
)
from tests.support.http_server import free_port


@pytest.fixture
def upstream(tmp_path, http_server):
    root = tmp_path / "upstream"
    root.mkdir()
    files = {}
    for i in range(10):
        files[f"p{i}.bin"] = data = os.urandom(50_000 - i * 1000)  # p0 is the biggest
        (root / f"p{i}.bin").write_bytes(data)
    server = http_server(root)
    server.files = files
    return server


def jobs_for(server, out: Path, base: str | None = None) -> list[DownloadJob]:
    return [DownloadJob(f"{base or server.url}/{name}", out / name, len(data),
                        hashlib.sha256(data).hexdigest())
            for name, data in server.files.items()]


def downloader(free_space: FreeSpaceGuard | None = None, **settings) -> Downloader:
    options = {"workers": 1, "timeout": 5, "retries": 0, "backoff": 0.01, "processes": 1}
    return Downloader(NetworkSettings(**{**options, **settings}), sleep=lambda s: None,
                      free_space=free_space)


class FillsAfter(ProgressReporter):
    """Counts the files done; the tests' disk fills after `n` of them."""

    def __init__(self, n: int):
        self.n, self.done = n, 0

    @property
    def full(self) -> bool:
        return self.done >= self.n

    def file_done(self, result):
        self.done += 1


def disk_full_on_write(monkeypatch, progress: FillsAfter) -> None:
    """Writes to a .part fail with ENOSPC once the disk is full (tmpfs block rounding
    after the free-space check passed)."""
    from cas_mirror.net import transfer

    real_write = transfer.write_all

    def write(fd, data):  # every write to a .part (transfer.py writes them with write_all)
        if progress.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(transfer, "write_all", write)


def disk_full_for_the_guard(monkeypatch, progress: FillsAfter, folder: Path,
                            total: int) -> FreeSpaceGuard:
    """Another writer fills the disk: the guard's next look finds less than its minimum.
    Free space starts at minimum + `total`, so that the guard looks before each file."""
    minimum = 10**9
    usage = namedtuple("usage", "total used free")

    def disk_usage(path):
        free = minimum - 1 if progress.full else minimum + total
        return usage(10**12, 10**12 - free, free)

    monkeypatch.setattr("shutil.disk_usage", disk_usage)  # what the guard asks (space.py)
    return FreeSpaceGuard(folder, minimum)


@pytest.mark.parametrize("trigger", ["write-fails", "guard"])
def test_a_disk_full_mid_run_is_one_stop_reason_and_each_file_names_only_itself(
        upstream, tmp_path, monkeypatch, trigger):
    out = tmp_path / "out"
    progress = FillsAfter(3)
    if trigger == "write-fails":
        disk_full_on_write(monkeypatch, progress)
        d, cause = downloader(), "no space left on device"
    else:
        total = sum(map(len, upstream.files.values()))
        d = downloader(free_space=disk_full_for_the_guard(monkeypatch, progress, tmp_path,
                                                          total))
        cause = "not enough free space"
    jobs = jobs_for(upstream, out)
    results = d.download(jobs, progress)
    assert [r.ok for r in results[:3]] == [True] * 3  # biggest first: p0, p1, p2
    failed = results[3:]
    assert cause in d.stop_reason and d.stop_cause == cause
    stopped = [r for r in failed if r.error == f"not downloaded: run stopped ({cause})"]
    assert stopped and all(r.cause == f"run stopped ({cause})" for r in stopped)
    assert len(stopped) >= len(failed) - 1, [r.error for r in failed]  # +1 that hit it
    for result in failed:
        others = [j.dest.name for j in jobs if j is not result.job]
        assert not any(name in result.error for name in others), result.error
    assert not list(out.glob(".*"))


def test_every_file_of_an_unreachable_host_has_one_cause_without_url(upstream, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    jobs = jobs_for(upstream, tmp_path / "a", dead)[:4] + jobs_for(upstream, tmp_path / "b")
    jobs[-1] = DownloadJob(f"{upstream.url}/missing.bin", tmp_path / "b/missing.bin")
    results = downloader(retries=1).download(jobs)
    assert {r.cause for r in results[:4]} == {"cannot connect (connection refused)"}
    assert results[-1].cause == "HTTP 404"
    # The dead host is one condition; the live one (one 404 among successes) is not.
    assert host_conditions(results) == [
        HostCondition(dead.removeprefix("http://"), "cannot connect (connection refused)", 4)]


def test_a_tls_failure_is_one_condition_and_get_errors_carry_the_cause(upstream, tmp_path,
                                                                       http_server):
    trustme = pytest.importorskip("trustme")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    secure = http_server(upstream.root, ssl_context=context)
    d = downloader()
    results = d.download(jobs_for(upstream, tmp_path, secure.url))
    [condition] = host_conditions(results)
    assert condition.files == 10 and condition.cause.startswith("TLS verification failed")
    assert "ssl_verify" not in condition.cause  # the advice is in the error, once per file
    with pytest.raises(HttpError) as info:
        d.get(f"{secure.url}/p0.bin")
    assert info.value.cause == condition.cause


def test_get_after_retries_keeps_a_cause_without_url(upstream):
    upstream.add_fault("/p1.bin", status=503)
    with pytest.raises(HttpError) as info:
        downloader(retries=1).get(f"{upstream.url}/p1.bin")
    assert info.value.cause == "HTTP 503" and "after 2 attempts" in str(info.value)
