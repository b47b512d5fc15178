#!/usr/bin/env python3
"""Benchmark `cas-sync pypi` against bandersnatch on the same local upstream, in one run.

Builds (and caches under bench-data/) a Simple-API upstream of real wheels and sdists,
serves it on 127.0.0.1 (nginx when installed, else a threaded Python server), then times,
each as a subprocess so interpreter start-up counts:

  cold            an empty mirror
  no-op           again, nothing changed upstream
  one changed     one project gained a release (a wheel, an sdist, a .metadata)

for our tool (.venv/bin/cas-sync pypi) and for bandersnatch (PyPI `bandersnatch`,
installed into bench-data/bandersnatch-venv so the project venv stays clean; `master`
over http with `allow-non-https = true`, `api-method = simple`), plus `curl --parallel`
fetching the same files as the practical limit. Prints one markdown table.

    .venv/bin/python scripts/bench_pypi.py [--projects 30] [--versions 2] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-data"
sys.path.insert(0, str(ROOT))
from benchlib import free_port, update_docs  # noqa: E402

from tests.support.http_server import TestHTTPServer  # noqa: E402
from tests.support.pypi_packages import SimpleUpstream  # noqa: E402


def build_upstream(projects: int, versions: int) -> tuple[SimpleUpstream, Path]:
    folder = DATA / f"pypi-upstream-{projects}x{versions}"
    cached = folder / "upstream.pickle"
    if cached.exists():
        return pickle.loads(cached.read_bytes()), folder
    shutil.rmtree(folder, ignore_errors=True)
    up = SimpleUpstream(folder)
    for index in range(projects):
        name = f"bench-project-{index:03d}"
        for v in range(versions):
            # Sizes from a few KB to ~300 KB (incompressible), like small real projects.
            up.add(name, f"1.{v}", payload=2000 + (index * 7919 + v * 104729) % 300_000,
                   seed=index * 100 + v)
    cached.write_bytes(pickle.dumps(up))
    return up, folder


class Nginx:
    def __init__(self, up: SimpleUpstream, root: Path, port: int, work: Path):
        self.up, self.root, self.port, self.work = up, root, port, work
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def write(self) -> None:
        """Static documents plus a config whose X-PyPI-Last-Serial header follows them."""
        self.up.write_static(self.url)
        serials = [f'        "/simple/" {self.up.serial};']
        for key, project in self.up.projects.items():
            serials.append(f'        "/simple/{key}/" {project.serial};')
            serials.append(f'        "/pypi/{key}/json" {project.serial};')
        conf = f"""
worker_processes 2;
daemon off;
pid {self.work}/nginx.pid;
error_log {self.work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.work}/body;
    proxy_temp_path {self.work}/proxy;
    fastcgi_temp_path {self.work}/fastcgi;
    uwsgi_temp_path {self.work}/uwsgi;
    scgi_temp_path {self.work}/scgi;
    sendfile on;
    keepalive_requests 100000;
    types {{ application/vnd.pypi.simple.v1+json v1_json; }}
    default_type application/octet-stream;
    map $request_uri $serial {{
        default "";
{chr(10).join(serials)}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location /simple/ {{ index index.v1_json; add_header X-PyPI-Last-Serial $serial; }}
        location /pypi/ {{ default_type application/json;
                          add_header X-PyPI-Last-Serial $serial; }}
    }}
}}
"""
        (self.work / "nginx.conf").write_text(conf)

    def start(self) -> None:
        self.write()
        self.proc = subprocess.Popen(["nginx", "-c", str(self.work / "nginx.conf"), "-p",
                                      str(self.work)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("nginx did not start")

    def reload(self) -> None:
        self.write()
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class ThreadedServer:
    """Fallback without nginx: the test suite's server with the same dynamic routes."""

    def __init__(self, up: SimpleUpstream, root: Path):
        self.server = TestHTTPServer(root).start()
        up.serve(self.server)
        self.url = self.server.url

    def reload(self) -> None:  # answers are computed per request
        pass

    def stop(self) -> None:
        self.server.stop()


def timed(cmd: list[str], env: dict | None = None,
          cwd: Path | None = None) -> tuple[float, int, int]:
    """(seconds, peak RSS in MB, exit status) of one subprocess."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"warning: {' '.join(cmd[:3])}... exited {code}: {err[-500:]}", file=sys.stderr)
    return seconds, usage.ru_maxrss // 1024, code


def bandersnatch_bin() -> Path | None:
    venv = DATA / "bandersnatch-venv"
    exe = venv / "bin" / "bandersnatch"
    if not exe.exists():
        print("installing bandersnatch into bench-data/bandersnatch-venv", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                               "bandersnatch"], check=False)
        if done.returncode != 0:
            return None
    return exe if exe.exists() else None


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".metadata"))\
        if folder.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=30)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions of each scenario; the table shows medians")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the cas-sync pypi section of docs/benchmarks.md")
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    up, upstream_root = build_upstream(args.projects, args.versions)
    files = sum(len(p.files) for p in up.projects.values())
    work = Path(tempfile.mkdtemp(prefix="bench-pypi-", dir=DATA))
    if shutil.which("nginx"):
        server = Nginx(up, upstream_root, free_port(), work)
        server.start()
        served_by = "nginx"
    else:
        server = ThreadedServer(up, upstream_root)
        served_by = "threaded Python server"
    try:
        return run(args, up, server, work, files, served_by)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args, up: SimpleUpstream, server, work: Path, files: int, served_by: str) -> int:
    ours_dir, theirs_dir = work / "ours", work / "bandersnatch"
    config = work / "cas-mirror.yaml"
    config.write_text(f"mirror_dir: {ours_dir}\nminimum_free_space: 0\nworkers: {args.workers}\n"
                      f"pypi:\n  remote_url: {server.url}\n")
    env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(work / "none"),
           "CAS_MIRROR_USER_CONFIG": str(work / "none"), "NO_PROXY": "127.0.0.1"}
    ours = [str(ROOT / ".venv" / "bin" / "cas-sync"), "pypi", "-f", str(config), "--quiet"]
    bs_conf = work / "bandersnatch.conf"
    bs_conf.write_text(f"""[mirror]
directory = {theirs_dir}
master = {server.url}
allow-non-https = true
api-method = simple
workers = {min(args.workers, 10)}
timeout = 10
global-timeout = 1800
stop-on-error = false
hash-index = false
json = false
release-files = true
simple-format = ALL
""")
    bs = bandersnatch_bin()
    runs: dict[str, dict[str, list]] = {"ours": {}, "bandersnatch": {}, "curl": {}}

    def record(tool: str, name: str, result: tuple) -> None:
        runs[tool].setdefault(name, []).append(result)

    for attempt in range(args.repeat):
        # Each repetition: fresh mirrors (cold), again (no-op), then one project gains a
        # release (a wheel with .metadata and an sdist) and both sync it.
        for folder in (ours_dir, theirs_dir):
            shutil.rmtree(folder, ignore_errors=True)
        record("ours", "cold", timed(ours, env))
        record("ours", "noop", timed(ours, env))
        if bs:
            record("bandersnatch", "cold", timed([str(bs), "-c", str(bs_conf), "mirror"]))
            record("bandersnatch", "noop", timed([str(bs), "-c", str(bs_conf), "mirror"]))
        if shutil.which("curl"):
            urls = [f"{server.url}/packages/{f.relpath}" for p in up.projects.values()
                    for f in p.files][:files]
            curl_dir = work / "curl"
            shutil.rmtree(curl_dir, ignore_errors=True)
            curl_dir.mkdir()
            lines = "".join(f'url = "{u}"\noutput = "{curl_dir}/{i}"\n'
                            for i, u in enumerate(urls))
            (work / "curl.cfg").write_text(lines)
            record("curl", "cold", timed(["curl", "-s", "--parallel", "--parallel-max",
                                          str(args.workers), "-K", str(work / "curl.cfg")]))
        changed = list(up.projects)[attempt % len(up.projects)]
        up.add(up.projects[changed].name, f"9.{attempt}", seed=900 + attempt)
        server.reload()
        record("ours", "changed", timed(ours, env))
        if bs:
            record("bandersnatch", "changed", timed([str(bs), "-c", str(bs_conf), "mirror"]))

    def median(values: list[tuple]) -> tuple:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    results = {tool: {name: median(v) for name, v in named.items()}
               for tool, named in runs.items()}

    ours_files = count_files(ours_dir / "pypi" / "web" / "packages")
    theirs_files = count_files(theirs_dir / "web" / "packages")
    lines = [
        (f"## cas-sync pypi\n\nRun on {date.today().isoformat()} by `scripts/bench_pypi.py` "
        f"(2 cores; quote ratios from one run). Upstream: {len(up.projects)} "
        f"projects, {files} files (+ {files // 2} `.metadata`) before the change, served "
        f"by {served_by} on 127.0.0.1; {args.workers} workers for both tools. Each run is a "
        f"subprocess, so interpreter start-up counts; medians of {args.repeat} repetitions "
        "(time, peak RSS). bandersnatch does not mirror PEP 658 `.metadata` files; we do. "
        f"Files mirrored after the last run: ours {ours_files}, bandersnatch {theirs_files}.\n"),
        "| run | cas-sync pypi | bandersnatch | ratio (ours / bandersnatch) | target |",
        "|---|---|---|---|---|",
    ]
    targets = {"cold": "<= 0.8x bandersnatch", "noop": "<= 0.3 s", "changed": "<= 0.4 s"}
    labels = {"cold": "cold (empty mirror)", "noop": "no-op (nothing changed)",
              "changed": "one project changed"}
    for run_name in ("cold", "noop", "changed"):
        o = results["ours"].get(run_name)
        b = results["bandersnatch"].get(run_name)
        cell_o = f"{o[0]:.2f} s, {o[1]} MB" if o else "n/a"
        cell_b = f"{b[0]:.2f} s, {b[1]} MB" if b else "not installed"
        ratio = f"{o[0] / b[0]:.2f}x" if o and b else "n/a"
        lines.append(f"| {labels[run_name]} | {cell_o} | {cell_b} | {ratio} | "
                     f"{targets[run_name]} |")
    if results["curl"].get("cold"):
        c = results["curl"]["cold"]
        lines.append(f"\n`curl --parallel` fetching the same {files} files (no metadata, no "
                     f"pages, no verification): {c[0]:.2f} s, the practical limit for the cold "
                     "run.")
    section = "\n".join(lines)
    print(section)
    if args.write_docs:
        update_docs(section)
    return 0 if all(r[2] == 0 for v in runs["ours"].values() for r in v) else 1


if __name__ == "__main__":
    sys.exit(main())
