#!/usr/bin/env python3
"""Benchmark `cas-sync pypi` against bandersnatch on the same local upstream, in one run.

Builds (and caches under bench-data/) a Simple-API upstream of real wheels and sdists,
serves it on 127.0.0.1 (nginx when installed, else a threaded Python server), then
measures on the shared protocol (benchlib.alternate: a warm-up each, then --runs rounds
alternating every side; mirrors on a tmpfs), each run a subprocess so start-up counts:

  cold            an empty mirror
  no-op           again, nothing changed upstream
  one changed     one project gained a release (a wheel, an sdist, a .metadata)
  whitelist no-op a 20-name whitelist (bandersnatch: allowlist_project) against a second
                  upstream whose project list names 500,000 projects (--listed), nothing
                  changed: we fetch no project list, bandersnatch reads it whole

for our tool (.venv/bin/cas-sync pypi) and for bandersnatch (PyPI `bandersnatch`,
installed into bench-data/bandersnatch-venv so the project venv stays clean; `master`
over http with `allow-non-https = true`, `api-method = simple`), plus `curl --parallel`
fetching the same files as the practical limit. Prints one markdown table.

    .venv/bin/python scripts/bench_pypi.py [--projects 30] [--versions 2] [--workers 8]
        [--runs 5] [--listed 500000] [--skip-bandersnatch] [--write-docs]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-data"
sys.path.insert(0, str(ROOT))
from benchlib import (  # noqa: E402
    Side,
    alternate,
    cache_env,
    check_protocol_args,
    crash_note,
    free_port,
    machine_line,
    protocol_args,
    protocol_note,
    scratch_space,
    settled_config,
    table,
    update_docs,
)

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


WHITELISTED = 20


def build_big_listing(listed: int) -> tuple[SimpleUpstream, Path]:
    """20 real projects in an upstream whose project list names `listed` projects."""
    folder = DATA / f"pypi-biglist-{listed}"
    cached = folder / "upstream.pickle"
    if cached.exists():
        return pickle.loads(cached.read_bytes()), folder
    shutil.rmtree(folder, ignore_errors=True)
    up = BigListUpstream(folder, listed)
    for index in range(WHITELISTED):
        up.add(f"wanted-{index:02d}", "1.0", payload=2000, seed=7000 + index)
    cached.write_bytes(pickle.dumps(up))
    return up, folder


class BigListUpstream(SimpleUpstream):
    """Its project list also names `listed` projects that have no page (never asked for
    by a whitelist run)."""

    def __init__(self, root: Path, listed: int):
        super().__init__(root)
        self.listed = listed
        self._root_cache: tuple[int, bytes] | None = None

    def root_json(self) -> bytes:
        if self._root_cache is None or self._root_cache[0] != self.serial:
            import json

            names = [{"name": f"filler-{i:06d}", "_last-serial": 1} for i in range(self.listed)]
            names += [{"name": p.name, "_last-serial": p.serial}
                      for p in self.projects.values()]
            self._root_cache = (self.serial, json.dumps({
                "meta": {"api-version": "1.1", "_last-serial": self.serial},
                "projects": names}).encode())
        return self._root_cache[1]

    def __getstate__(self):
        return {**self.__dict__, "_root_cache": None}


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
    parser.add_argument("--repeat", dest="runs", type=int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the old spelling of --runs
    parser.add_argument("--listed", type=int, default=500_000,
                        help="projects the whitelist scenario's upstream lists")
    parser.add_argument("--skip-bandersnatch", action="store_true",
                        help="leave bandersnatch out (and do not install it)")
    protocol_args(parser, tmpfs="2g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    DATA.mkdir(exist_ok=True)
    up, upstream_root = build_upstream(args.projects, args.versions)
    big, big_root = build_big_listing(args.listed)
    files = sum(len(p.files) for p in up.projects.values())
    bs = None if args.skip_bandersnatch else bandersnatch_bin()
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-pypi-", dir=DATA))
    try:
        with scratch_space(args.tmpfs_size, prefix="bench-pypi-") as scratch:
            if shutil.which("nginx"):
                server = Nginx(up, upstream_root, free_port(), work)
                server.start()
                (work / "big").mkdir()
                big_server = Nginx(big, big_root, free_port(), work / "big")
                big_server.start()
                served_by = "nginx"
            else:
                server = ThreadedServer(up, upstream_root)
                big_server = ThreadedServer(big, big_root)
                served_by = "threaded Python server"
            try:
                stats = alternate(sides(args, up, server, scratch.path, bs, big, big_server),
                                  args.runs, scratch.path)
                ours_files = count_files(scratch.path / "ours-mirror" / "pypi" / "web" /
                                         "packages")
                theirs_files = count_files(scratch.path / "bs-mirror" / "web" / "packages")
            finally:
                server.stop()
                big_server.stop()
            note = protocol_note(args.runs, scratch, load_at_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, stats, note, header, up, files, served_by, ours_files, theirs_files,
                  big, load_at_start)


def sides(args, up: SimpleUpstream, server, scratch: Path, bs: Path | None,
          big: SimpleUpstream, big_server) -> dict:
    """Cold runs into fresh folders; no-op and one-changed runs on one persistent mirror
    per tool (its first, warm-up run fills it). The one-changed pair: our side adds a
    release upstream (outside the timing), then each tool syncs that same change."""
    env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(scratch / "none"),
           "CAS_MIRROR_USER_CONFIG": str(scratch / "none"), "NO_PROXY": "127.0.0.1",
           **cache_env(scratch)}
    cas_sync = str(ROOT / ".venv" / "bin" / "cas-sync")

    wanted = [p.name for p in big.projects.values()]

    def ours(mirror: Path, folder: Path, url: str = server.url,
             whitelist: list[str] | None = None, settled: bool = False) -> list[str]:
        """A cold run's configuration is new (written into its folder); a no-op's is
        written once (benchlib.settled_config), as a nightly job's is."""
        listed = "".join(f"\n    - {name}" for name in whitelist or ())
        text = (f"mirror_dir: {mirror}\nminimum_free_space: 0\n"
                f"workers: {args.workers}\npypi:\n  remote_url: {url}\n"
                + (f"  whitelist:{listed}\n" if whitelist else ""))
        if settled:
            config = settled_config(scratch / f"{mirror.name}.yaml", text)
        else:
            config = folder / "cas-mirror.yaml"
            config.write_text(text)
        return [cas_sync, "pypi", "-f", str(config), "--quiet"]

    def theirs(mirror: Path, folder: Path, url: str = server.url,
               allowlist: list[str] | None = None) -> list[str]:
        conf = folder / "bandersnatch.conf"
        plugins = ("\n[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n"
                   + "".join(f"    {name}\n" for name in allowlist)) if allowlist else ""
        conf.write_text(f"""[mirror]
directory = {mirror}
master = {url}
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
{plugins}""")
        return [str(bs), "-c", str(conf), "mirror"]

    def curl(folder: Path) -> list[str]:
        urls = [f"{server.url}/packages/{f.relpath}" for p in up.projects.values()
                for f in p.files]
        lines = "".join(f'url = "{u}"\noutput = "{folder}/{i}"\n' for i, u in enumerate(urls))
        (folder / "curl.cfg").write_text(lines)
        return ["curl", "-s", "--parallel", "--parallel-max", str(args.workers), "-K",
                str(folder / "curl.cfg")]

    changes = iter(range(1_000_000))

    def change_then_ours(folder: Path) -> list[str]:
        number = next(changes)
        changed = list(up.projects)[number % len(up.projects)]
        up.add(up.projects[changed].name, f"9.{number}", seed=900 + number)
        server.reload()
        return ours(scratch / "ours-mirror", folder, settled=True)

    out = {"ours cold": Side(lambda f: ours(f / "mirror", f), env=env)}
    if bs:
        out["bandersnatch cold"] = Side(lambda f: theirs(f / "mirror", f))
    if shutil.which("curl"):
        out["curl"] = Side(curl)
    out["ours no-op"] = Side(lambda f: ours(scratch / "ours-mirror", f, settled=True), env=env)
    if bs:
        out["bandersnatch no-op"] = Side(lambda f: theirs(scratch / "bs-mirror", f))
    out["ours changed"] = Side(change_then_ours, env=env)
    if bs:
        out["bandersnatch changed"] = Side(lambda f: theirs(scratch / "bs-mirror", f))
    out["ours whitelist"] = Side(lambda f: ours(scratch / "ours-wl", f, big_server.url,
                                                wanted, settled=True), env=env)
    if bs:
        out["bandersnatch whitelist"] = Side(lambda f: theirs(scratch / "bs-wl", f,
                                                              big_server.url, wanted))
    return out


def report(args, stats, note: str, header: str, up: SimpleUpstream, files: int,
           served_by: str, ours_files: int, theirs_files: int, big: SimpleUpstream,
           load_at_start: float) -> int:
    labels = {"ours cold": "cas-sync pypi cold (empty mirror)",
              "bandersnatch cold": "bandersnatch cold", "curl": "curl --parallel, files only",
              "ours no-op": "cas-sync pypi no-op (nothing changed)",
              "bandersnatch no-op": "bandersnatch no-op",
              "ours changed": "cas-sync pypi, one project changed",
              "bandersnatch changed": "bandersnatch, one project changed",
              "ours whitelist": f"cas-sync pypi no-op, {WHITELISTED}-name whitelist, "
                                f"{args.listed:,} listed",
              "bandersnatch whitelist": f"bandersnatch no-op, {WHITELISTED}-name allowlist"}
    against = {"ours cold": "bandersnatch cold", "ours no-op": "bandersnatch no-op",
               "ours changed": "bandersnatch changed",
               "ours whitelist": "bandersnatch whitelist"}
    targets = {"ours cold": "<= 0.5x bandersnatch", "ours no-op": "<= 0.15 s",
               "ours changed": "<= 0.4 s", "ours whitelist": "<= 0.3 s"}
    section = (
        f"## cas-sync pypi\n\n`scripts/bench_pypi.py --projects {args.projects} --versions "
        f"{args.versions}` ({header}). Upstream: {len(up.projects)} projects, {files} files "
        f"(+ {files // 2} `.metadata`) before the first change, served by {served_by} on "
        f"127.0.0.1; {args.workers} workers for both tools. Every one-changed run adds one "
        "release (a wheel with `.metadata` and an sdist) upstream first, so later cold runs "
        "fetch a few more files; both tools see the same upstream in each round. "
        "bandersnatch does not mirror PEP 658 `.metadata` files; we do. Files in the no-op "
        f"mirrors after the last run: ours {ours_files}, bandersnatch "
        f"{theirs_files if 'bandersnatch cold' in stats else 'n/a'}. The whitelist rows use a "
        f"second upstream: {WHITELISTED} real projects in a project list of {args.listed:,} "
        "names (a JSON document of about "
        f"{len(big.root_json()) / 1e6:.0f} MB); ours fetches no project list there, only the "
        f"{WHITELISTED} pages (conditionally), bandersnatch reads the whole list.\n\n{note}\n\n"
        + table(stats, against=against, targets=targets, labels=labels))
    if load_at_start > (os.cpu_count() or 1):
        section += (f"\n\nThe machine was shared (load average {load_at_start:.1f} on "
                    f"{os.cpu_count()} cores: other test suites ran meanwhile), so wall times "
                    "include waiting for a CPU; the CPU columns and the ratios of medians "
                    "(both tools measured alternately under the same load) are the steadier "
                    "comparison.")
    if "bandersnatch cold" not in stats:
        section += "\n\nbandersnatch was not run (--skip-bandersnatch or not installable)."
    crashes = crash_note(stats)
    section += f"\n\n{crashes}" if crashes else ""
    print(section)
    if args.write_docs:
        update_docs(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
