"""Resuming a partial download safely: If-Range with the validator the .part remembers,
against a real loopback server whose file changes between requests."""

from __future__ import annotations

import email.utils
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cas_mirror.net import Downloader, DownloadJob, NetworkSettings
from cas_mirror.net.partial import RECORD_FROM, part_path, read_validator, remember_validator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def served(tmp_path, http_server):
    """A factory: serve one 60 kB file, with server options; returns (server, data)."""

    def start(size: int = 60_000, **options):
        root = tmp_path / "up"
        root.mkdir()
        data = os.urandom(size)
        (root / "pkg.bin").write_bytes(data)
        return http_server(root, **options), data

    return start


def download(server, out: Path, data: bytes | None = None, **job):
    """One job for pkg.bin (sha256 only when `data` is given, size as the job says)."""
    digest = hashlib.sha256(data).hexdigest() if data is not None else None
    downloader = Downloader(NetworkSettings(workers=1, timeout=5, retries=2, backoff=0.01),
                            sleep=lambda s: None)
    [result] = downloader.download([DownloadJob(f"{server.url}/pkg.bin", out / "pkg.bin",
                                                sha256=digest, **job)])
    return result


def killed_partial(out: Path, content: bytes, validator: str | None) -> Path:
    """What a killed run leaves: the first bytes in the .part, and their validator."""
    part = part_path(out / "pkg.bin")
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "wb") as handle:
        handle.write(content)
        remember_validator(handle.fileno(), validator)
    return part


def file_requests(server):
    return [r for r in server.requests if r.path == "/pkg.bin"]


def kill_mid_download(server, out: Path, after: int = 20_000) -> Path:
    """Run a download in another process, kill it once the server's first `after` bytes
    are in the .part (the server sends no more), and return the .part."""
    server.add_fault("/pkg.bin", stall=60, stall_after=after)
    script = (
        "import sys; from pathlib import Path\n"
        "from cas_mirror.net import Downloader, DownloadJob, NetworkSettings\n"
        "d = Downloader(NetworkSettings(timeout=60, retries=0, processes=1))\n"
        "d.download([DownloadJob(sys.argv[1], Path(sys.argv[2]))])\n")
    child = subprocess.Popen([sys.executable, "-c", script, f"{server.url}/pkg.bin",
                              str(out / "pkg.bin")], cwd=ROOT)
    part = part_path(out / "pkg.bin")
    try:
        deadline = time.monotonic() + 30
        while not (file_requests(server) and part.exists() and part.stat().st_size == after):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    server.clear_faults()
    return part


def etag_of(server) -> str:
    st = (server.root / "pkg.bin").stat()
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


def last_modified_of(server) -> str:
    return email.utils.formatdate((server.root / "pkg.bin").stat().st_mtime, usegmt=True)


def test_a_killed_run_leaves_the_validator_and_the_next_run_resumes_with_if_range(
        served, tmp_path):
    server, data = served(size=RECORD_FROM + 60_000)
    out = tmp_path / "out"
    part = kill_mid_download(server, out, after=RECORD_FROM + 20_000)
    assert read_validator(part) == etag_of(server)  # the strong ETag, kept on the .part
    result = download(server, out)  # no size, no hash: only If-Range makes this safe
    assert result.ok, result.error
    assert (out / "pkg.bin").read_bytes() == data
    last = file_requests(server)[-1].headers
    assert last["Range"] == f"bytes={RECORD_FROM + 20_000}-"
    assert last["If-Range"] == etag_of(server)
    assert result.received == len(data) - RECORD_FROM - 20_000
    assert not part.exists() and read_validator(out / "pkg.bin") is None


def test_a_small_new_file_gets_no_validator_and_a_kill_costs_only_its_restart(
        served, tmp_path, monkeypatch):
    """Below RECORD_FROM bytes a new .part carries no validator: no xattr call on its way
    to its final name. Killed meanwhile, it is resumed only when a hash checks it."""
    server, data = served()
    calls: list[str] = []
    for name in ("setxattr", "removexattr"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, _name=name, **k: (
            calls.append(_name), _real(*a, **k))[1])
    assert download(server, tmp_path / "fresh", data).ok
    assert calls == []
    out = tmp_path / "out"
    part = kill_mid_download(server, out)
    assert part.stat().st_size == 20_000 and read_validator(part) is None
    result = download(server, out, data)  # hashed: resumed without If-Range
    assert result.ok and (out / "pkg.bin").read_bytes() == data
    last = file_requests(server)[-1].headers
    assert last["Range"] == "bytes=20000-" and "If-Range" not in last


def test_a_partial_written_by_an_answer_without_validator_forgets_the_old_one(
        served, tmp_path):
    server, data = served(hide_headers=("ETag", "Last-Modified"), range_support=False)
    out = tmp_path / "out"
    killed_partial(out, data[:30_000], '"stale"')  # resumed: the server sends all again
    part = kill_mid_download(server, out)
    assert read_validator(part) is None  # else the next run would trust "stale"


@pytest.mark.parametrize("options", [
    {},  # If-Range with the ETag: the server answers 200 with the new file
    {"hide_headers": ("ETag",)},  # If-Range with Last-Modified
    {"honour_if_range": False},  # ignores If-Range: its 206 names the new ETag
], ids=["etag", "last-modified", "server-ignores-if-range"])
def test_a_partial_whose_upstream_changed_restarts_instead_of_splicing(served, tmp_path,
                                                                       options):
    server, old = served(**options)
    out = tmp_path / "out"
    first = download(server, out)
    assert first.ok
    validator = last_modified_of(server) if "hide_headers" in options else etag_of(server)
    (out / "pkg.bin").unlink()
    killed_partial(out, old[:30_000], validator)
    new = os.urandom(len(old))  # same size, other bytes, and no hash to catch a splice
    server.replace_file("pkg.bin", new)
    result = download(server, out, size=len(new))
    assert result.ok, result.error
    assert (out / "pkg.bin").read_bytes() == new
    assert file_requests(server)[1].headers.get("If-Range") == validator


def test_a_partial_without_validator_or_hash_is_not_resumed_blindly(served, tmp_path):
    server, data = served()
    out = tmp_path / "out"
    killed_partial(out, os.urandom(30_000), None)  # e.g. from a server without validators
    result = download(server, out)
    assert result.ok and (out / "pkg.bin").read_bytes() == data
    assert [r.headers.get("Range") for r in file_requests(server)] == [None]


def test_a_partial_without_validator_is_resumed_when_a_hash_checks_it(served, tmp_path):
    server, data = served()
    out = tmp_path / "out"
    killed_partial(out, data[:30_000], None)
    result = download(server, out, data, size=len(data))
    assert result.ok and (out / "pkg.bin").read_bytes() == data
    [request] = file_requests(server)
    assert request.headers["Range"] == "bytes=30000-" and "If-Range" not in request.headers
    assert result.received == len(data) - 30_000


def test_a_server_that_ignores_range_answers_200_and_the_file_starts_over(served, tmp_path):
    server, data = served(range_support=False)
    out = tmp_path / "out"
    killed_partial(out, data[:30_000], etag_of(server))
    result = download(server, out)
    assert result.ok and (out / "pkg.bin").read_bytes() == data
    [request] = file_requests(server)
    assert request.headers["Range"] == "bytes=30000-"
    assert result.received == len(data)


def test_a_fresh_download_reads_no_validator_and_a_partial_is_read_once(
        served, tmp_path, monkeypatch):
    """Thousands of new files cost no getxattr each: the attribute is read only when a
    .part exists (the resume itself is pinned by the tests above)."""
    server, data = served()
    reads: list[str] = []
    real_getxattr = os.getxattr

    def counting_getxattr(path, *args, **kwargs):
        reads.append(os.fspath(path))
        return real_getxattr(path, *args, **kwargs)

    monkeypatch.setattr(os, "getxattr", counting_getxattr)
    assert download(server, tmp_path / "fresh").ok
    assert reads == []
    out = tmp_path / "out"
    part = killed_partial(out, data[:30_000], etag_of(server))
    assert download(server, out).ok and (out / "pkg.bin").read_bytes() == data
    assert reads == [str(part)]
