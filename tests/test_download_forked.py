"""A large download in worker processes started with a bare fork (net/forked.py): what a
sync does when it has a single thread. Our test servers run in threads of the test
process, where a fork would be unsafe (the downloader then takes multiprocessing's
forkserver), so each test runs the download in a process of its own."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, signal, sys
from pathlib import Path
from cas_mirror.net import Downloader, DownloadJob, NetworkSettings

spec = json.loads(sys.argv[1])
jobs = [DownloadJob(url, Path(dest), size, sha256) for url, dest, size, sha256 in spec["jobs"]]
seen = {}

def children():
    path = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    return [int(pid) for pid in open(path).read().split()]

def alongside():
    seen["children"] = len(children())
    if spec.get("kill"):
        os.kill(children()[0], signal.SIGKILL)

if spec.get("crash"):
    from cas_mirror.net import processes

    class Broken:
        def __init__(self, *args, **kwargs):
            raise ValueError("a bug in the worker")
    processes.MultiRun = Broken  # (inherited by the forked children)

settings = NetworkSettings(workers=2, timeout=10, retries=0, processes=2)
downloader = Downloader(settings)
progress = None
if spec.get("stop"):
    from cas_mirror.net.types import ProgressReporter

    class StopOnFailure(ProgressReporter):
        def file_done(self, result):
            if not result.ok:
                downloader.stop(f"stopped after {result.job.url} failed", "stop_on_error")
    progress = StopOnFailure()
try:
    results = downloader.download(jobs, progress, alongside=alongside)
except RuntimeError as exc:
    print(json.dumps({"raised": str(exc)}))
    sys.exit(0)
print(json.dumps({"results": [[r.ok, r.error, r.attempts] for r in results],
                  "multiprocessing": "multiprocessing" in sys.modules, **seen}))
"""


def run(spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec)], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def served(tmp_path, http_server, count=24):
    root = tmp_path / "up"
    files = {}
    for i in range(count):
        data = os.urandom(10_000 + i * 100)
        path = root / f"dir{i % 3}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[path.relative_to(root).as_posix()] = data
    return http_server(root), files


def jobs_for(server, files, out: Path) -> list:
    return [[f"{server.url}/{rel}", str(out / rel), len(data),
             hashlib.sha256(data).hexdigest()] for rel, data in files.items()]


def test_forked_workers_download_everything_without_multiprocessing(tmp_path, http_server):
    server, files = served(tmp_path, http_server)
    jobs = jobs_for(server, files, tmp_path / "out")
    jobs[3][0] = f"{server.url}/missing.bin"
    got = run({"jobs": jobs})
    assert got["children"] == 2 and not got["multiprocessing"]
    assert [ok for ok, _, _ in got["results"]] == [i != 3 for i in range(len(jobs))]
    assert "HTTP 404" in got["results"][3][1]
    for i, (rel, data) in enumerate(files.items()):
        if i != 3:
            assert (tmp_path / "out" / rel).read_bytes() == data
    assert not list((tmp_path / "out").rglob(".*"))  # no .part, no temporary file


def test_the_jobs_of_a_killed_worker_say_so_and_the_others_finish(tmp_path, http_server):
    server, files = served(tmp_path, http_server)
    server.add_fault("*.bin", delay=0.1)  # the killed worker has files left to do
    got = run({"jobs": jobs_for(server, files, tmp_path / "out"), "kill": True})
    errors = [error for ok, error, _ in got["results"] if not ok]
    assert errors and set(errors) == {"not downloaded: the worker process died"}
    assert sum(ok for ok, _, _ in got["results"]) >= 8  # the other worker's folder(s)


def test_a_worker_that_fails_is_reported_not_waited_for(tmp_path, http_server):
    server, files = served(tmp_path, http_server, count=6)
    got = run({"jobs": jobs_for(server, files, tmp_path / "out"), "crash": True})
    assert got["raised"].startswith("download worker failed")
    assert "a bug in the worker" in got["raised"]


def test_a_stop_reaches_every_forked_worker(tmp_path, http_server):
    """The stop flag is shared memory: a worker stopping, or the parent, stops the other."""
    server, files = served(tmp_path, http_server)
    server.add_fault("*.bin", delay=0.05)  # slow enough that most files are still to come
    jobs = jobs_for(server, files, tmp_path / "out")
    jobs[0][0], jobs[0][2] = f"{server.url}/missing.bin", 10**6  # the biggest: tried first
    got = run({"jobs": jobs, "stop": True})
    stopped = [r for r in got["results"] if r[1] == "not downloaded: run stopped (stop_on_error)"]
    assert len(stopped) >= len(files) // 2 and all(attempts == 0 for _, _, attempts in stopped)
