"""The shared downloader against a real loopback server that misbehaves on request."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cas_mirror.net import (
    Downloader,
    DownloadJob,
    FreeSpaceGuard,
    HttpError,
    NetworkSettings,
    ProgressReporter,
    RetryPolicy,
)


@pytest.fixture
def upstream(tmp_path, http_server):
    root = tmp_path / "upstream"
    root.mkdir()
    files = {}
    for i in range(12):
        data = os.urandom(50_000 + i * 1000)
        (root / f"f{i}.bin").write_bytes(data)
        files[f"f{i}.bin"] = data
    server = http_server(root)
    server.files = files
    return server


def job_for(server, name, dest_dir: Path, **overrides) -> DownloadJob:
    data = server.files[name]
    fields = {"url": f"{server.url}/{name}", "dest": dest_dir / name, "size": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()}
    fields.update(overrides)
    return DownloadJob(**fields)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(retries=3, workers=4, **kwargs) -> tuple[Downloader, Sleeps]:
    sleeps = Sleeps()
    settings = NetworkSettings(workers=workers, timeout=kwargs.pop("timeout", 5.0),
                               retries=retries, backoff=0.01)
    return Downloader(settings, sleep=sleeps, **kwargs), sleeps


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_parallel_verified_download(upstream, tmp_path):
    out = tmp_path / "out"
    jobs = [job_for(upstream, name, out) for name in upstream.files]
    downloader, sleeps = make()
    results = downloader.download(jobs)
    assert [r.job for r in results] == jobs
    assert all(r.ok and r.attempts == 1 for r in results), results
    for name, data in upstream.files.items():
        assert (out / name).read_bytes() == data
    assert leftovers(out) == []
    assert sleeps == []
    assert sum(r.received for r in results) == sum(map(len, upstream.files.values()))


def test_a_destination_without_a_folder_goes_to_the_working_directory(
        upstream, tmp_path, monkeypatch):
    out = tmp_path / "here"
    out.mkdir()
    monkeypatch.chdir(out)
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f0.bin", Path())])
    assert result.ok, result.error
    assert (out / "f0.bin").read_bytes() == upstream.files["f0.bin"]


def test_server_errors_are_retried_honouring_retry_after(upstream, tmp_path):
    upstream.add_fault("/f0.bin", status=500, times=2)
    upstream.add_fault("/f1.bin", status=429, times=1, headers={"Retry-After": "7"})
    downloader, sleeps = make()
    results = downloader.download([job_for(upstream, "f0.bin", tmp_path),
                                   job_for(upstream, "f1.bin", tmp_path)])
    assert [r.ok for r in results] == [True, True]
    assert [r.attempts for r in results] == [3, 2]
    assert 7.0 in sleeps


def test_retries_exhausted_reports_the_url_and_leaves_nothing(upstream, tmp_path):
    upstream.add_fault("/f2.bin", status=503)
    downloader, sleeps = make(retries=2)
    [result] = downloader.download([job_for(upstream, "f2.bin", tmp_path)])
    assert not result.ok and result.attempts == 3
    assert "HTTP 503" in result.error and "after 3 attempts" in result.error
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5  # backoff grows (with jitter)
    assert not (tmp_path / "f2.bin").exists() and leftovers(tmp_path) == []


def test_404_is_not_retried(upstream, tmp_path):
    downloader, sleeps = make()
    job = DownloadJob(url=f"{upstream.url}/missing.conda", dest=tmp_path / "missing.conda")
    [result] = downloader.download([job])
    assert not result.ok and result.attempts == 1 and "HTTP 404" in result.error
    assert sleeps == []


def test_corrupted_body_is_retried_and_never_published(upstream, tmp_path):
    upstream.add_fault("/f3.bin", corrupt=True, times=1)
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f3.bin", tmp_path)])
    assert result.ok and result.attempts == 2
    assert (tmp_path / "f3.bin").read_bytes() == upstream.files["f3.bin"]


def test_always_corrupt_fails_with_checksum_message(upstream, tmp_path):
    upstream.add_fault("/f3.bin", corrupt=True)
    downloader, _ = make(retries=1)
    [result] = downloader.download([job_for(upstream, "f3.bin", tmp_path)])
    assert not result.ok and "sha256 mismatch" in result.error
    assert not (tmp_path / "f3.bin").exists() and leftovers(tmp_path) == []


def test_md5_is_checked_when_it_is_all_upstream_gives(upstream, tmp_path):
    data = upstream.files["f4.bin"]
    bad = job_for(upstream, "f4.bin", tmp_path, sha256=None, md5="0" * 32)
    good = job_for(upstream, "f5.bin", tmp_path, sha256=None,
                   md5=hashlib.md5(upstream.files["f5.bin"]).hexdigest())
    downloader, _ = make(retries=0)
    results = downloader.download([bad, good])
    assert not results[0].ok and "md5 mismatch" in results[0].error
    assert results[1].ok
    assert len(data) > 0


def test_truncated_body_is_resumed_with_range(upstream, tmp_path):
    upstream.add_fault("/f6.bin", truncate=20_000, times=1)
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f6.bin", tmp_path)])
    assert result.ok and result.attempts == 2
    assert (tmp_path / "f6.bin").read_bytes() == upstream.files["f6.bin"]
    ranges = [r.headers.get("Range") for r in upstream.requests if r.path == "/f6.bin"]
    assert ranges == [None, "bytes=20000-"]
    assert result.received == len(upstream.files["f6.bin"])


def test_partial_from_a_killed_run_is_resumed(upstream, tmp_path):
    data = upstream.files["f7.bin"]
    (tmp_path / ".f7.bin.part").write_bytes(data[:30_000])
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f7.bin", tmp_path)])
    assert result.ok and result.received == len(data) - 30_000
    assert (tmp_path / "f7.bin").read_bytes() == data
    assert upstream.requests[-1].headers["Range"] == "bytes=30000-"


def test_a_reused_handle_carries_no_headers_of_the_request_before(upstream, tmp_path):
    """One handle, four files (biggest first): resumed, fresh, resumed, fresh. A handle
    whose last request had no headers is only pointed at the next URL; one whose request
    had a Range is set up again, so no file gets another's Range."""
    resumed = {"f11.bin", "f9.bin"}
    for name in resumed:
        (tmp_path / f".{name}.part").write_bytes(upstream.files[name][:20_000])
    downloader, _ = make(workers=1)
    names = ["f11.bin", "f10.bin", "f9.bin", "f8.bin"]
    results = downloader.download([job_for(upstream, n, tmp_path) for n in names])
    assert all(r.ok for r in results), [r.error for r in results]
    sent = [(r.path.lstrip("/"), r.headers.get("Range")) for r in upstream.requests]
    assert sent == [(n, "bytes=20000-" if n in resumed else None) for n in names]
    for name in names:
        assert (tmp_path / name).read_bytes() == upstream.files[name]


def test_bad_partial_is_discarded_after_the_checksum_fails(upstream, tmp_path):
    data = upstream.files["f7.bin"]
    (tmp_path / ".f7.bin.part").write_bytes(b"\0" * 30_000)  # not a prefix of the real file
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f7.bin", tmp_path)])
    assert result.ok and result.attempts == 2
    assert (tmp_path / "f7.bin").read_bytes() == data


def test_resume_without_range_support_starts_over(tmp_path, http_server):
    root = tmp_path / "up"
    root.mkdir()
    data = os.urandom(40_000)
    (root / "x.bin").write_bytes(data)
    server = http_server(root, range_support=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".x.bin.part").write_bytes(data[:10_000])
    downloader, _ = make()
    [result] = downloader.download([DownloadJob(f"{server.url}/x.bin", out / "x.bin",
                                                len(data), hashlib.sha256(data).hexdigest())])
    assert result.ok and (out / "x.bin").read_bytes() == data


def test_timeouts_are_retried_then_reported(upstream, tmp_path):
    upstream.add_fault("/f8.bin", delay=1.0)
    downloader, _sleeps = make(retries=1, timeout=0.2)
    [result] = downloader.download([job_for(upstream, "f8.bin", tmp_path)])
    assert not result.ok and "timed out" in result.error and result.attempts == 2


def test_connection_reset_is_retried(upstream, tmp_path):
    upstream.add_fault("/f9.bin", reset=True, times=1)
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f9.bin", tmp_path)])
    assert result.ok and result.attempts == 2


def test_fallback_url_is_used_when_the_first_fails(upstream, tmp_path):
    job = job_for(upstream, "f10.bin", tmp_path, url=f"{upstream.url}/elsewhere/f10.bin",
                  fallback_urls=(f"{upstream.url}/f10.bin",))
    downloader, sleeps = make()
    [result] = downloader.download([job])
    assert result.ok and result.attempts == 2 and sleeps == []  # no retries on the first URL


def test_not_enough_free_space_stops_before_downloading(upstream, tmp_path):
    guard = FreeSpaceGuard(tmp_path, minimum=10**18)
    downloader, _ = make(free_space=guard)
    results = downloader.download([job_for(upstream, n, tmp_path) for n in ("f0.bin", "f1.bin")])
    assert not any(r.ok for r in results)
    assert "not enough free space" in downloader.stop_reason
    assert all("not enough free space" in r.error for r in results)
    assert upstream.paths("GET") == []


def test_refuses_non_http_urls(tmp_path):
    downloader, _ = make()
    [result] = downloader.download([DownloadJob("file:///etc/passwd", tmp_path / "passwd")])
    assert not result.ok and "only http and https" in result.error


def test_get_bounds_size_and_handles_conditional_requests(upstream):
    downloader, _ = make()
    first = downloader.get(f"{upstream.url}/f0.bin")
    assert first.status == 200 and first.data == upstream.files["f0.bin"]
    again = downloader.get(f"{upstream.url}/f0.bin", {"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.data == b""
    with pytest.raises(HttpError, match="exceeds the limit"):
        downloader.get(f"{upstream.url}/f0.bin", max_bytes=1000)
    with pytest.raises(HttpError, match="HTTP 404") as info:
        downloader.get(f"{upstream.url}/nope")
    assert info.value.status == 404


def test_get_retries_truncated_responses(upstream):
    upstream.add_fault("/f1.bin", truncate=100, times=1)
    downloader, sleeps = make()
    assert downloader.get(f"{upstream.url}/f1.bin").data == upstream.files["f1.bin"]
    assert len(sleeps) == 1


def test_retry_policy_backoff_grows_and_is_capped():
    policy = RetryPolicy(retries=10, backoff=1.0)
    delays = [policy.delay(n) for n in range(1, 10)]
    assert all(0.5 <= d / min(2 ** (n - 1), 60) <= 1.5 for n, d in enumerate(delays, 1))
    assert policy.delay(1, retry_after=3) == 3
    assert policy.delay(1, retry_after=10_000) == 120


def test_disk_full_while_writing_stops_everything_cleanly(upstream, tmp_path, monkeypatch):
    import errno

    def full(fd, data):  # every write to a .part (transfer.py writes them with write_all)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("cas_mirror.net.transfer.write_all", full)
    downloader, _ = make(workers=1)
    results = downloader.download([job_for(upstream, n, tmp_path) for n in upstream.files])
    assert not any(r.ok for r in results)
    assert "disk is full" in downloader.stop_reason
    assert sum(1 for r in results if r.attempts) == 1  # nothing more was tried
    assert leftovers(tmp_path) == [] and not list(tmp_path.glob("*.bin"))


def test_a_write_that_takes_less_than_it_was_given_never_publishes_a_short_file(
        upstream, tmp_path):
    # write(2) to a regular file may take only part of its buffer: here a file size limit
    # one byte short of the file (SIGXFSZ ignored, so the kernel writes what fits and says
    # how much). A file object without a buffer only returns that count; the transfer
    # counted what curl gave it, so the size and hash matched and the file was published
    # one byte short. Run in a child: the limit would bind pytest's own files.
    import json
    import subprocess
    import sys

    data = upstream.files["f0.bin"]
    code = f"""
import json, resource, signal, hashlib
from pathlib import Path
from cas_mirror.net import Downloader, DownloadJob, NetworkSettings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({len(data) - 1}, resource.RLIM_INFINITY))
job = DownloadJob(url={upstream.url + "/f0.bin"!r}, dest=Path({str(tmp_path / "f0.bin")!r}),
                  size={len(data)}, sha256={hashlib.sha256(data).hexdigest()!r})
[r] = Downloader(NetworkSettings(workers=1, timeout=5.0, retries=0)).download([job])
print(json.dumps([r.ok, r.error]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    ok, error = json.loads(proc.stdout)
    assert not ok and "file too large" in error.lower(), error
    assert not (tmp_path / "f0.bin").exists()
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- processes


class Recorder(ProgressReporter):
    def __init__(self):
        self.advanced = 0
        self.done = []

    def advance(self, nbytes):
        self.advanced += nbytes

    def file_done(self, result):
        self.done.append(result)


@pytest.fixture
def many(tmp_path, http_server):
    """40 files in 4 folders upstream (the layout a conda platform or PyPI tree has)."""
    root = tmp_path / "many"
    files = {}
    for i in range(40):
        data = os.urandom(20_000 + i * 100)
        path = root / f"dir{i % 4}" / f"g{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[f"dir{i % 4}/g{i}.bin"] = data
    server = http_server(root)
    server.files = files
    return server


def many_jobs(server, out: Path) -> list[DownloadJob]:
    return [DownloadJob(f"{server.url}/{rel}", out / rel, len(data),
                        hashlib.sha256(data).hexdigest())
            for rel, data in server.files.items()]


@pytest.mark.parametrize("processes", [1, 2])
def test_work_alongside_runs_beside_the_transfers_and_is_done_when_they_are(
        many, tmp_path, processes):
    """`alongside` starts once the worker processes run (a fork must not copy a running
    thread: with one, multiprocessing would take the slow forkserver) and has returned by
    the time download() does."""
    import multiprocessing
    import threading

    seen: list = []

    def alongside() -> None:
        seen.append((threading.current_thread() is not threading.main_thread(),
                     len(multiprocessing.active_children())))

    settings = NetworkSettings(workers=4, timeout=5, retries=0, processes=processes)
    results = Downloader(settings).download(many_jobs(many, tmp_path / "out"),
                                            alongside=alongside)
    assert all(r.ok for r in results)
    assert seen == [(True, processes if processes > 1 else 0)]


def test_a_large_download_is_shared_among_processes(many, tmp_path):
    many.add_fault("/dir1/g1.bin", status=500, times=1)
    jobs = many_jobs(many, tmp_path / "out")
    jobs[5] = DownloadJob(f"{many.url}/nope.bin", tmp_path / "out/dir1/nope.bin", 10, "0" * 64)
    settings = NetworkSettings(workers=4, timeout=5, retries=2, backoff=0.01, processes=2)
    progress = Recorder()
    results = Downloader(settings).download(jobs, progress)
    assert [r.job for r in results] == jobs
    assert [r.ok for r in results] == [i != 5 for i in range(40)]
    assert "HTTP 404" in results[5].error
    assert results[1].attempts == 2  # the 500 was retried in its process
    for job in jobs[:5] + jobs[6:]:
        relative = job.dest.relative_to(tmp_path / "out").as_posix()
        assert job.dest.read_bytes() == many.files[relative]
    assert len(progress.done) == 40
    assert progress.advanced == sum(r.received for r in results)
    assert not list((tmp_path / "out").rglob(".*"))



def test_a_child_sends_its_progress_once_per_turn_not_per_file(tmp_path):
    """Thousands of small files: one message per turn of the child's transfer loop at
    most (the files finished in it, and their bytes), not two per file, each waking the
    parent; and no more than one per INTERVAL, except for a failed file, sent at once."""
    import multiprocessing

    from cas_mirror.net.processes import PipeProgress
    from cas_mirror.net.types import DownloadResult

    reader, writer = multiprocessing.Pipe(duplex=False)
    results = [DownloadResult(DownloadJob(f"http://127.0.0.1/{i}", tmp_path / str(i)),
                              ok=True, received=100, attempts=1) for i in range(6)]
    now = [100.0]
    progress = PipeProgress(writer, {id(r): 10 + i for i, r in enumerate(results)},
                            clock=lambda: now[0])
    for result in results[:3]:
        progress.advance(100)
        progress.file_done(result)
    assert not reader.poll()  # nothing until the turn ends
    progress.flush()
    assert reader.recv() == ("progress", 300, [(10 + i, True, 100, 1, None, None)
                                               for i in range(3)])
    progress.file_done(results[3])
    now[0] += PipeProgress.INTERVAL / 2
    progress.flush()  # too soon after the last message: the file waits
    assert not reader.poll()
    now[0] += PipeProgress.INTERVAL / 2
    progress.flush()
    assert reader.recv() == ("progress", 0, [(13, True, 100, 1, None, None)])
    results[4].ok, results[4].error = False, "HTTP 404"
    progress.file_done(results[4])
    progress.flush()  # a failure goes at once (a caller may stop on it)
    assert reader.recv() == ("progress", 0, [(14, False, 100, 1, "HTTP 404", None)])
    now[0] += PipeProgress.INTERVAL
    progress.advance(5)
    progress.flush()  # a few bytes alone wait for more
    assert not reader.poll()
    progress.flush(everything=True)
    assert reader.recv() == ("progress", 5, []) and not reader.poll()


def test_a_stop_reaches_every_process(many, tmp_path):
    many.add_fault("*.bin", delay=0.05)  # slow enough that most files are still to come
    jobs = many_jobs(many, tmp_path / "out")
    jobs[0] = DownloadJob(f"{many.url}/missing.bin", tmp_path / "out/dir0/missing.bin",
                          10**6, "0" * 64)  # the biggest: tried first, fails at once
    downloader = Downloader(NetworkSettings(workers=2, timeout=5, retries=0, processes=2))

    class StopOnFailure(Recorder):
        def file_done(self, result):
            super().file_done(result)
            if not result.ok:
                downloader.stop(f"stopped after {result.job.url} failed", "stop_on_error")

    results = downloader.download(jobs, StopOnFailure())
    stopped = [r for r in results if r.error == "not downloaded: run stopped (stop_on_error)"]
    assert stopped and all(r.attempts == 0 for r in stopped)
    assert all(r.cause == "run stopped (stop_on_error)" for r in stopped)  # the children's too
    assert downloader.stop_reason == f"stopped after {many.url}/missing.bin failed"


def test_processes_start_safely_while_other_threads_run(many, tmp_path):
    import threading

    done = threading.Event()
    other = threading.Thread(target=done.wait, daemon=True)  # fork would be unsafe now
    other.start()
    try:
        settings = NetworkSettings(workers=2, timeout=5, retries=0, processes=2)
        results = Downloader(settings).download(many_jobs(many, tmp_path / "out")[:6])
    finally:
        done.set()
    assert all(r.ok for r in results)



def test_urls_on_one_host_are_parsed_once_and_each_start_on_its_own(upstream, tmp_path,
                                                                    monkeypatch):
    """The scheme check and proxy choice depend on the URL up to its path only: a sync of
    thousands of files from one host parses one URL, and an odd URL is read as urlsplit
    reads it."""
    from urllib.parse import urlsplit

    from cas_mirror.net import curl

    parsed = []
    monkeypatch.setattr(curl, "urlsplit", lambda url: parsed.append(url) or urlsplit(url))
    downloader, _ = make()
    results = downloader.download([job_for(upstream, f"f{i}.bin", tmp_path) for i in range(6)])
    assert all(r.ok for r in results) and len(parsed) == 1
    setup = curl.CurlSetup(NetworkSettings(proxy="http://proxy.invalid:3128"))
    for url in ("HTTP://Example.invalid:8080/a", "http://\texample.invalid/a?b",
                "https://h.invalid?x/y", "http://[::1]:80/p", "ftp://files.invalid/x",
                "http://h.invalid#frag/x", "http://h.invalid"):
        assert setup.origin(url)[0] == urlsplit(url).scheme, url
        assert setup.origin(url)[0] == urlsplit(url).scheme, url  # from the cache
    assert setup.origin("https://h.invalid/x") == ("https", "http://proxy.invalid:3128")
    assert setup.origin("ftp://files.invalid/x") == ("ftp", "")
    assert setup.origin(" http://h.invalid/x")[0] == "http"  # urlsplit strips the blank
    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.invalid")
    setup = curl.CurlSetup(NetworkSettings())
    for _ in range(2):
        assert setup.origin("http://bypass.invalid/x") == ("http", "")
        assert setup.origin("http://other.invalid:81/x") == ("http", "http://env-proxy.invalid:3128")

# --------------------------------------------------------------------------- timeout


def test_timeout_limits_given_to_libcurl_are_derived_from_the_settings():
    import pycurl

    from cas_mirror.net.curl import limit_options, stalled

    assert limit_options(NetworkSettings(timeout=0.5)) == {pycurl.CONNECTTIMEOUT_MS: 500}
    assert limit_options(NetworkSettings(timeout=30, total_timeout=1800)) == {
        pycurl.CONNECTTIMEOUT_MS: 30_000, pycurl.TIMEOUT_MS: 1_800_000}
    # No low-speed options: libcurl averages the speed over ~5 s, so "1 byte/s for
    # `timeout` seconds" gave up 5-7 s after `timeout`. The wait is watched by us.
    assert stalled(last_read=10.0, timeout=1.0, now=11.0)
    assert not stalled(last_read=10.0, timeout=1.0, now=10.9)


def test_header_lines_are_collected_by_a_builtin_and_parsed_once_per_response():
    """libcurl hands each header line to list.append (no Python code runs per line); the
    last response's status and headers are parsed when first asked for."""
    from cas_mirror.net.curl import Headers

    headers = Headers()
    assert type(headers.add) is type([].append)
    headers.last_read = 0.0
    for line in (b"HTTP/1.1 301 Moved Permanently\r\n", b"Location: /b\r\n", b"\r\n",
                 b"HTTP/1.1 200 OK\r\n", b"ETag:  \"v1\x85x\" \r\n", b"Content-Length: 5\r\n",
                 b"X-Odd\r\n", b"\r\n"):
        headers.add(line)
    assert headers.status == 200
    assert headers.values == {"etag": '"v1\x85x"', "content-length": "5"}  # (one line)
    # header lines count as activity for the stall watch, once, when it next looks
    assert headers.since(10.0) == 10.0 and headers.since(20.0) == 10.0
    assert Headers().status == 0 and Headers().values == {}


def test_a_transfer_that_stalls_mid_body_is_abandoned_after_timeout(upstream, tmp_path):
    # The server would send the rest after 4 s; a 1 s timeout must give up long before
    # (libcurl's low-speed check alone waited 7 s, and the download then succeeded).
    upstream.add_fault("/f8.bin", stall=4.0, stall_after=20_000)
    downloader, _ = make(retries=0, timeout=1.0)
    [result] = downloader.download([job_for(upstream, "f8.bin", tmp_path)])
    assert not result.ok and "timed out: no data for 1 s" in result.error
    assert not (tmp_path / "f8.bin").exists()


def test_a_metadata_request_that_stalls_is_abandoned_after_timeout(upstream):
    upstream.add_fault("/f9.bin", stall=4.0, stall_after=20_000)
    downloader, _ = make(retries=0, timeout=1.0)
    with pytest.raises(HttpError, match="timed out: no data for 1 s"):
        downloader.get(f"{upstream.url}/f9.bin")


# --------------------------------------------------------------------------- size mismatch


def test_a_resume_refused_because_upstream_is_shorter_says_the_sizes(upstream, tmp_path):
    data = upstream.files["f11.bin"]
    promised = len(data) + 1000  # the index promises more than upstream has
    (tmp_path / ".f11.bin.part").write_bytes(data + b"\0" * 10)  # upstream answers 416
    downloader, _ = make(retries=2)
    [result] = downloader.download([job_for(upstream, "f11.bin", tmp_path, size=promised)])
    assert not result.ok
    assert result.error == (f"size mismatch: upstream file is {len(data)} bytes, "
                            f"the index says {promised}")
    assert result.attempts == 1  # retrying cannot change it
    assert [r.status for r in upstream.requests] == [416]
    assert leftovers(tmp_path) == []


def test_a_full_answer_of_the_wrong_size_says_the_sizes(upstream, tmp_path):
    data = upstream.files["f11.bin"]
    downloader, _ = make(retries=2)
    [result] = downloader.download([job_for(upstream, "f11.bin", tmp_path, size=len(data) - 5)])
    assert not result.ok and result.attempts == 1
    assert f"upstream file is {len(data)} bytes, the index says {len(data) - 5}" in result.error


# --------------------------------------------------------------------------- logging


def test_requests_retries_resumes_and_cache_hits_are_logged(upstream, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="cas_mirror.net")
    upstream.add_fault("/f6.bin", truncate=20_000, times=1)
    downloader, _ = make()
    [result] = downloader.download([job_for(upstream, "f6.bin", tmp_path)])
    assert result.ok
    etag = upstream.requests[-1].headers["If-Range"]
    first = downloader.get(f"{upstream.url}/f0.bin")
    downloader.get(f"{upstream.url}/f0.bin", {"If-None-Match": first.headers["etag"]})
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    url = f"{upstream.url}/f6.bin"
    assert ("DEBUG", f"GET {url}") in messages
    assert any(level == "INFO" and m.startswith(f"retrying {url} (attempt 2 of 4) after: "
                                                 "truncated")
               and ("; waiting " in m) for level, m in messages)
    assert ("INFO", f"resuming {url} from byte 20000 (If-Range: {etag})") in messages
    assert ("DEBUG", f"GET {url} (Range: bytes=20000-, If-Range: {etag})") in messages
    assert ("DEBUG", f'GET {upstream.url}/f0.bin (If-None-Match: {first.headers["etag"]})') \
        in messages
    assert ("INFO", f"not modified (304), the copy we have is current: {upstream.url}/f0.bin") \
        in messages


def test_logged_urls_are_escaped(upstream, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="cas_mirror.net")
    downloader, _ = make(retries=0)
    downloader.download([DownloadJob(f"{upstream.url}/x%1b[2J\x1b[2J.bin", tmp_path / "x")])
    assert caplog.records and not any("\x1b" in r.getMessage() for r in caplog.records)


def test_request_lines_are_built_only_when_debug_is_shown(upstream, tmp_path, caplog,
                                                           monkeypatch):
    """A cold sync starts thousands of transfers: without -vv no request line is built."""
    import logging

    from cas_mirror.net import curl, multi
    from cas_mirror.net import downloader as downloader_module

    built = []

    def counting(*args):
        built.append(args[1])
        return curl.describe_request(*args)

    monkeypatch.setattr(multi, "describe_request", counting)
    monkeypatch.setattr(downloader_module, "describe_request", counting)
    caplog.set_level(logging.INFO, logger="cas_mirror.net")
    downloader, _ = make()
    assert all(r.ok for r in downloader.download(
        [job_for(upstream, name, tmp_path) for name in ("f1.bin", "f2.bin")]))
    downloader.get(f"{upstream.url}/f0.bin")
    assert built == []
    caplog.set_level(logging.DEBUG, logger="cas_mirror.net")
    downloader.download([job_for(upstream, "f3.bin", tmp_path)])
    downloader.get(f"{upstream.url}/f0.bin")
    assert built == [f"{upstream.url}/f3.bin", f"{upstream.url}/f0.bin"]


def test_the_user_agent_names_the_version_without_importlib_metadata():
    """Start-up: importlib.metadata (with email and csv) costs tens of ms to import and a
    scan of the installed distributions; the version is cas_mirror.__version__."""
    import subprocess
    import sys

    from cas_mirror import __version__

    code = ("import sys\nfrom cas_mirror.net import curl, NetworkSettings\n"
            "print(curl.CurlSetup(NetworkSettings()).agent, "
            "'importlib.metadata' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [f"cas-mirror/{__version__}", "False"]
    shown = subprocess.run([sys.executable, "-X", "importtime", "-m", "cas_mirror",
                            "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == f"cas-sync, version {__version__}"
    assert "importlib.metadata" not in shown.stderr


def test_no_proxy_variable_means_urllib_request_is_never_imported():
    """Start-up: urllib.request (with http.client and email) costs ~40 ms to import and is
    needed only to read proxy variables; without a `<scheme>_proxy` variable for the URL's
    scheme (NO_PROXY alone, or another scheme's proxy) it stays out."""
    import subprocess
    import sys

    code = ("import sys\nfrom cas_mirror.net import curl, NetworkSettings\n"
            "setup = curl.CurlSetup(NetworkSettings())\n"
            "print(setup.origin('http://127.0.0.1:1/x'), 'urllib.request' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert plain[-1] == "False", plain
    bypass_only = subprocess.run([sys.executable, "-c", code],  # names no proxy at all
                                 env={**env, "NO_PROXY": "127.0.0.1", "https_proxy":
                                      "http://other-scheme.invalid:3128"},
                                 capture_output=True, text=True, check=True).stdout.split()
    assert bypass_only[-1] == "False", bypass_only
    proxied = subprocess.run([sys.executable, "-c", code],
                             env={**env, "http_proxy": "http://env-proxy.invalid:3128"},
                             capture_output=True, text=True, check=True).stdout
    assert "env-proxy.invalid:3128" in proxied and proxied.split()[-1] == "True", proxied


def test_get_fills_a_buffer_of_the_announced_length_only_when_that_is_safe(
        upstream, http_server, monkeypatch):
    """A plain body within max_bytes is read into a buffer made its announced length once
    (no growing by copies); an encoded body (libcurl decodes it to another length), one
    with no Content-Length, and one announced beyond max_bytes are not; every body comes
    back exactly as sent."""
    import gzip

    from cas_mirror.net import downloader as module
    from tests.support.http_server import Response

    made = []
    real = module._presize
    monkeypatch.setattr(module, "_presize", lambda *a: made.append(real(*a)) or made[-1])
    data = upstream.files["f2.bin"]
    upstream.route("/gz", lambda request: Response(200, gzip.compress(data),
                                                   {"Content-Encoding": "gzip"}))
    upstream.add_fault("/f3.bin", no_length=True)
    downloader, _ = make()
    assert downloader.get(f"{upstream.url}/f2.bin", max_bytes=10**6).data == data
    assert made == [len(data)]
    assert downloader.get(f"{upstream.url}/gz", max_bytes=10**6).data == data
    assert downloader.get(f"{upstream.url}/f3.bin", max_bytes=10**6).data == \
        upstream.files["f3.bin"]
    assert downloader.get(f"{upstream.url}/f2.bin").data == data  # no limit given
    with pytest.raises(HttpError, match="exceeds the limit"):
        downloader.get(f"{upstream.url}/f2.bin", max_bytes=1000)
    assert made[1:] == [0, 0, 0, 0]
