#!/usr/bin/env python3
"""Load benchmark of cas-server, beside nginx serving the same tree with etc/nginx.conf.

Builds a mirror tree (repodata.json files of 100 KB - 1 MB, packages of 10 KB - 1 MB) on a
tmpfs, starts `cas-server` as a user would (the console script, --quiet) and nginx when it
is installed (private config, on a free loopback port), and hits each with 200 concurrent
keep-alive connections, every request picking a random repodata.json or package.

The shared protocol (benchlib.alternate), applied to throughput: both servers run side by
side; one warm-up window each, then --runs load windows of --duration seconds per server,
alternating (nginx, cas-server, nginx, ...). Each window is one run of the load generator
(a subprocess); the table gives median (min - max) over the windows of requests/s, MB/s,
p50/p99 latency, the errors summed, the CPU time the server's processes spent per 1,000
requests (from /proc, the whole process tree) and their RSS, and the ratio of medians to
nginx. `--write-docs` records it under "## cas-server" in docs/benchmarks.md.

The load generator is wrk (apt-get install wrk) with a Lua script that picks the paths;
without wrk a Python asyncio client (scripts/loadgen.py) is used, which is slower
than either server, and the output says so. Only 127.0.0.1 is used.

    scripts/bench_serve.py [--runs 5] [--duration 10] [--connections 200] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parents[1].resolve():
    # Run inside the project's environment (scripts/test creates it), where cas-server is.
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
sys.path.insert(0, str(PROJECT))
from benchlib import (  # noqa: E402
    Side,
    alternate,
    check_protocol_args,
    crash_note,
    free_port,
    machine_line,
    markdown_table,
    protocol_args,
    scratch_space,
    update_docs,
)
from loadgen import client_command, parse_bench_line, wrk_command  # noqa: E402

DOCS = PROJECT / "docs" / "benchmarks.md"
SECTION = "## cas-server"


# ---------------------------------------------------------------------- the tree


def build_tree(root: Path, seed: int = 6) -> tuple[list[str], list[str]]:
    """Channels with repodata.json of 100 KB - 1 MB and packages of 10 KB - 1 MB (sizes
    log-uniform); returns (repodata URL paths, package URL paths)."""
    rng = random.Random(seed)
    repodata, packages = [], []
    layout = {"pkgs/main": ("linux-64", "noarch"), "conda-forge": ("linux-64", "noarch"),
              "internal-pkgs": ("linux-64", "noarch")}
    for channel, subdirs in layout.items():
        for subdir in subdirs:
            folder = root / channel / subdir
            folder.mkdir(parents=True)
            files = {}
            for index in range(50):
                size = int(10_000 * 100 ** rng.random())
                name = f"pkg{index:03d}-1.{index}.0-py_0.conda"
                (folder / name).write_bytes(rng.randbytes(size))
                packages.append(f"/{channel}/{subdir}/{name}")
                files[name] = size
            target = int(100_000 * 10 ** rng.random())
            (folder / "repodata.json").write_text(fake_repodata(subdir, files, target, rng))
            repodata.append(f"/{channel}/{subdir}/repodata.json")
    return repodata, packages


def fake_repodata(subdir: str, files: dict[str, int], target: int, rng: random.Random) -> str:
    """A repodata.json-shaped document of about `target` bytes."""
    records = {}
    number = 0
    while True:
        number += 1
        name = f"name{number % 997}"
        records[f"{name}-{number}.0-h{number:07x}_0.conda"] = {
            "build": f"h{number:07x}_0", "build_number": 0, "depends": [f"dep{number % 31}"],
            "license": "MIT", "md5": rng.randbytes(16).hex(), "name": name,
            "sha256": rng.randbytes(32).hex(), "size": files.get(name, 12345),
            "subdir": subdir, "timestamp": 1700000000000 + number, "version": f"{number}.0"}
        if number % 200 == 0 and len(json.dumps(records)) >= target:
            break
    return json.dumps({"info": {"subdir": subdir}, "packages": {},
                       "packages.conda": records, "repodata_version": 1}, indent=1)


def request_mix(repodata: list[str], packages: list[str]) -> list[str]:
    """Paths that requests pick from uniformly: one in four is a repodata.json."""
    return repodata * max(1, len(packages) // (3 * len(repodata))) + packages


# ---------------------------------------------------------------------- servers


def wait_http(url: str, process: subprocess.Popen, what: str, deadline_s: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench_serve: {what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.05)  # poll interval, bounded by the deadline
    raise SystemExit(f"bench_serve: {what} did not answer within {deadline_s} s")


def cas_server_command() -> list[str]:
    """The console script, as a user runs it (the one beside this Python first)."""
    beside = Path(sys.executable).with_name("cas-server")
    found = str(beside) if beside.exists() else shutil.which("cas-server")
    if found is None:
        raise SystemExit("bench_serve: cas-server is not installed (pip install -e .)")
    return [found]


# ---------------------------------------------------------------------- servers' cost


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS MB now) of a server's process tree, reaped children's CPU
    included."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss = 0.0, 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        cpu += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        rss += next((int(line.split()[1]) for line in status.splitlines()
                     if line.startswith("VmRSS:")), 0) / 1024
    return cpu, rss


# ---------------------------------------------------------------------- report


def table(stats, baseline: str | None, labels: dict[str, str]) -> str:
    headers = ["server", "requests/s", "MB/s", "p50 ms", "p99 ms", "errors",
               "server CPU s / 1,000 requests", "server RSS MB", "vs nginx (requests/s)"]
    rows = []
    base = stats.get(baseline) if baseline else None
    for name, s in stats.items():
        ratio = (f"{s.extra('rps').median / base.extra('rps').median:.2f}x"
                 if base else "n/a")
        rows.append([labels[name], s.extra("rps").fmt(0), s.extra("mbps").fmt(0),
                     s.extra("p50").fmt(1), s.extra("p99").fmt(1),
                     f"{sum(x.extra['errors'] for x in s.samples):.0f}",
                     s.extra("cpu_per_1k").fmt(3), f"{s.extra('rss').max:.0f}", ratio])
    return markdown_table(headers, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per window")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="worker processes of each server (default: one per CPU)")
    parser.add_argument("--no-docs", action="store_true", help=argparse.SUPPRESS)  # old
    protocol_args(parser, tmpfs="1g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    from tests.support.nginx import Nginx, nginx_binary  # after the sys.path set-up above

    wrk = shutil.which("wrk")
    nginx = nginx_binary()
    notes = []
    if wrk is None:
        notes.append("wrk is not installed (apt-get install wrk): the load comes from a "
                     "Python asyncio client, which is slower than the servers, so the "
                     "figures measure the client more than the servers")
    if nginx is None:
        notes.append("nginx is not installed (apt-get install nginx): no baseline")
    for note in notes:
        print(f"bench_serve: {note}", file=sys.stderr)
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)

    with scratch_space(args.tmpfs_size, prefix="bench-serve-") as scratch:
        workdir = scratch.path
        os.chmod(workdir, 0o755)
        root = workdir / "mirror"
        repodata, packages = build_tree(root)
        mix = request_mix(repodata, packages)
        paths_file = workdir / "paths.txt"
        paths_file.write_text("\n".join(mix) + "\n")
        tree_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        print(f"bench_serve: tree of {len(repodata)} repodata.json + {len(packages)} packages, "
              f"{tree_mb:.0f} MB; {args.connections} keep-alive connections, "
              f"{args.duration} s windows, {args.workers} workers each", file=sys.stderr)

        def side(url: str, pid: int) -> Side:
            before: list[float] = []

            def command(_folder: Path) -> list[str]:
                before[:] = [tree_usage(pid)[0]]
                if wrk:
                    return wrk_command(url, paths_file, args.duration, args.connections,
                                       args.threads)
                return client_command(url, paths_file, args.duration, args.connections)

            def check(_folder: Path, sample) -> dict[str, float]:
                cpu, rss = tree_usage(pid)
                r = parse_bench_line(sample.stdout)
                return {"rps": r.rps, "mbps": r.mbps, "p50": r.p50_ms, "p99": r.p99_ms,
                        "errors": r.errors, "rss": rss,
                        "cpu_per_1k": (cpu - before[0]) / max(r.requests, 1) * 1000}

            return Side(command, check=check)

        labels = {"nginx": f"nginx ({args.workers} workers, etc/nginx.conf)",
                  "cas-server": f"cas-server ({args.workers} workers, --quiet)"}
        sides: dict[str, Side] = {}
        server = process = None
        try:
            if nginx:
                server = Nginx(root, free_port(), workdir / "nginx", workers=args.workers)
                sides["nginx"] = side(server.url, server.process.pid)
            port = free_port()
            command = [*cas_server_command(), "--root", str(root), "--host", "127.0.0.1",
                       "--port", str(port), "--workers", str(args.workers), "--quiet"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            wait_http(f"http://127.0.0.1:{port}", process, "cas-server")
            sides["cas-server"] = side(f"http://127.0.0.1:{port}", process.pid)
            stats = alternate(sides, args.runs, workdir)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
            if server is not None:
                server.stop()
        where = scratch.where.replace("output", "tree")

    report = table(stats, "nginx" if nginx else None, labels)
    generator = "wrk" if wrk else "a Python asyncio client (wrk missing)"
    about = (
        f"`scripts/bench_serve.py` ({header}). Tree: {len(repodata)} repodata.json of "
        f"100 KB - 1 MB and {len(packages)} packages of 10 KB - 1 MB ({tree_mb:.0f} MB, "
        f"{where}); each request picks a random file, one in four a repodata.json. "
        f"{args.connections} keep-alive connections, load from {generator} on the same "
        f"machine; both servers with {args.workers} worker processes and no access log, "
        "running side by side. Protocol for throughput: one warm-up window per server, "
        f"then {args.runs} windows of {args.duration} s each, alternating between the "
        "servers; median (min - max) over the windows; server CPU from /proc over each "
        f"window's process tree. Load average {load_at_start:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at the end. Target: no errors, at least 0.5 of "
        "nginx's requests/s."
    )
    crashes = crash_note(stats)
    section = (f"{SECTION}\n\n{textwrap.fill(about, 92)}\n\n{report}\n"
               + "".join(f"\n{textwrap.fill('Note: ' + note, 92)}.\n" for note in notes)
               + (f"\n{crashes}\n" if crashes else ""))
    print(section)
    if args.write_docs:
        update_docs(section)
        print(f"bench_serve: recorded in {DOCS.relative_to(PROJECT)}", file=sys.stderr)
    failed = any(x.extra["errors"] for s in stats.values() for x in s.samples)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
