"""Shared pieces of the benchmark scripts: the measuring protocol (`alternate`: one warm-up
of each side, then N runs of every side in turn, each run a child process measured by
os.wait4 in a small launcher, into a fresh folder on a tmpfs), the statistics and their
table, serving a folder on loopback with nginx when installed, and writing sections of
docs/benchmarks.md.

Benchmarks build their data under `bench-data/` (git-ignored) and reuse it between runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA = ROOT / "bench-data"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # tests.support builds the packages

from tests.support.http_server import free_port  # noqa: E402

MIN_RUNS = 5  # fewer runs than this are a smoke test, never written to the docs


def _compile_project() -> None:
    """Byte-compile our packages once, as an installed copy is, so every measured run starts
    from cached bytecode even where PYTHONDONTWRITEBYTECODE is set (it is on these
    machines): otherwise each child compiles all of cas_mirror again, and start-up figures
    measure the compiler, not the program."""
    import compileall

    for package in ("cas_mirror", "cas_index"):
        compileall.compile_dir(ROOT / package, quiet=1)


_compile_project()


def settled_config(path: Path, text: str) -> Path:
    """A no-op side's configuration file, written once (as a cron job's is) and returned
    only once it is older than cas-sync's SETTLED rule (config/parsed.py): from then on
    each run finds its parse remembered, as a user's nightly run does. The wait happens
    once, outside the timing (while the command is being prepared)."""
    from cas_mirror.config.parsed import SETTLED

    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    st = path.stat()
    while time.time() - max(st.st_mtime, st.st_ctime) < SETTLED:
        time.sleep(0.05)
    return path


def cache_env(scratch: Path) -> dict[str, str]:
    """Keep cas-sync's parsed-configuration cache in the scratch space, not ~/.cache."""
    return {"CAS_MIRROR_CACHE_DIR": str(scratch / "cas-mirror-cache")}


# ---------------------------------------------------------------------- one measured run


@dataclass
class Sample:
    """One run of a command: wall time, CPU time (user + sys of the child and of every
    descendant it waited for, from os.wait4), peak RSS (largest of those processes), exit
    status, what it printed, and the figures a side's `check` extracted."""

    wall: float
    cpu: float
    peak_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, float] = field(default_factory=dict)


# Linux starts a child's peak RSS (ru_maxrss) at the peak of the process it was forked
# from: a bench script that once held a 200 MB document would report 200 MB for every
# `curl` it ran. So each measured command is forked by this small launcher, a fresh
# interpreter without site (about 8 MB), which times the command from its fork to its
# wait4 and writes wall, CPU (user + sys, descendants included), peak RSS (KiB) and wait
# status to the file its first argument names.
_LAUNCHER = """
import os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(out, "w") as f:
    f.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {status}")
"""


def measure(cmd: list[str], logs: Path, env: dict | None = None,
            cwd: Path | None = None) -> Sample:
    """Run `cmd` as a child of the launcher; its output goes to files in `logs` (read
    after the timing)."""
    logs.mkdir(parents=True, exist_ok=True)
    figures = logs / "figures"
    figures.unlink(missing_ok=True)
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(figures), *cmd],
                       env=env, cwd=cwd, stdout=out, stderr=err, check=False)
    try:
        wall, cpu, peak_kib, status = figures.read_text().split()
    except (OSError, ValueError):
        raise SystemExit(f"could not measure {cmd[0]}: the launcher wrote no figures "
                         f"({(logs / 'stderr').read_text(errors='replace')[-300:]})") from None
    returncode = os.waitstatus_to_exitcode(int(status))
    return Sample(float(wall), float(cpu), int(peak_kib) / 1024, returncode,
                  (logs / "stdout").read_text(errors="replace"),
                  (logs / "stderr").read_text(errors="replace"))


# ---------------------------------------------------------------------- the protocol


@dataclass
class Side:
    """One side of a comparison.

    `command(folder)` is called before each run, outside the timing, with a fresh empty
    folder on the scratch space; it prepares what the run needs (configs, copies) and
    returns the command. Sides that measure a second run over existing state (a no-op
    re-sync, a warm index) keep that state elsewhere and ignore the folder.
    `check(folder, sample)`, also outside the timing, raises when the run's output is
    wrong and may return extra figures (e.g. the tool's own `seconds`) kept per run.
    A run killed by a signal is noted and redone (at most `signal_retries` times)."""

    command: Callable[[Path], list[str]]
    env: dict | None = None
    check: Callable[[Path, Sample], dict[str, float] | None] | None = None
    signal_retries: int = 2


@dataclass
class Spread:
    median: float
    min: float
    max: float

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        return (f"{self.median:.{digits}f}{unit} ({self.min:.{digits}f} - "
                f"{self.max:.{digits}f})")


def spread(values: list[float]) -> Spread:
    return Spread(statistics.median(values), min(values), max(values))


@dataclass
class Stats:
    name: str
    samples: list[Sample] = field(default_factory=list)
    crashes: int = 0  # runs killed by a signal and redone

    @property
    def wall(self) -> Spread:
        return spread([s.wall for s in self.samples])

    @property
    def cpu(self) -> Spread:
        return spread([s.cpu for s in self.samples])

    @property
    def peak(self) -> Spread:
        return spread([s.peak_mb for s in self.samples])

    def extra(self, key: str) -> Spread:
        return spread([s.extra[key] for s in self.samples])


class BenchError(SystemExit):
    pass


def alternate(sides: dict[str, Side | Callable[[Path], list[str]]], runs: int,
              scratch: Path, warmup: bool = True) -> dict[str, Stats]:
    """The protocol: one warm-up run of each side, then `runs` rounds in which every side
    runs once, in the order given (A B A B ...). Each run gets a fresh folder under
    `scratch`; it is deleted after the run's measurement, never inside it."""
    sides = {name: s if isinstance(s, Side) else Side(s) for name, s in sides.items()}
    stats = {name: Stats(name) for name in sides}
    counter = 0
    rounds = ([True] if warmup else []) + [False] * runs
    for number, is_warmup in enumerate(rounds):
        for name, side in sides.items():
            for attempt in range(side.signal_retries + 1):
                counter += 1
                folder = scratch / "runs" / f"{counter:04d}"
                folder.mkdir(parents=True)
                cmd = side.command(folder)
                sample = measure([str(c) for c in cmd], scratch / "logs", env=side.env)
                if sample.returncode >= 0 or attempt == side.signal_retries:
                    break
                stats[name].crashes += 1
                print(f"  !! {name}: killed by signal {-sample.returncode}; redone",
                      file=sys.stderr)
                shutil.rmtree(folder, ignore_errors=True)
            if sample.returncode != 0:
                shutil.rmtree(folder, ignore_errors=True)
                raise BenchError(f"{name}: {' '.join(map(str, cmd[:4]))} ... exited "
                                 f"{sample.returncode}:\n{sample.stderr[-2000:]}")
            if side.check:
                sample.extra = side.check(folder, sample) or {}
            shutil.rmtree(folder, ignore_errors=True)
            label = "warm-up" if is_warmup else f"run {number + (0 if warmup else 1)}"
            print(f"  {label:8} {name:40} wall {sample.wall:7.3f} s  cpu {sample.cpu:7.3f} s"
                  f"  {sample.peak_mb:6.0f} MB", file=sys.stderr, flush=True)
            if not is_warmup:
                stats[name].samples.append(sample)
    return stats


# ---------------------------------------------------------------------- scratch space


@dataclass
class Scratch:
    path: Path
    kind: str  # "tmpfs" or why it is on disk

    @property
    def where(self) -> str:
        return "output on tmpfs" if self.kind == "tmpfs" else f"output on disk ({self.kind})"


@contextmanager
def scratch_space(size: str = "4g", prefix: str = "bench-") -> Iterator[Scratch]:
    """A tmpfs mounted on a new folder (root only), unmounted at the end, also on error or
    SIGTERM; without root or when the mount fails, a folder on disk (and `kind` says why)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    mounted = False
    kind = "not root"
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(path)], capture_output=True, text=True, check=False)
        mounted = done.returncode == 0
        kind = "tmpfs" if mounted else f"mount failed: {done.stderr.strip()}"
    if not mounted:
        print(f"warning: {kind}; the scratch space is on disk", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield Scratch(path, kind)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if mounted:
            if subprocess.run(["umount", str(path)], capture_output=True,
                              check=False).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        else:
            shutil.rmtree(path, ignore_errors=True)
        with suppress(OSError):
            path.rmdir()


# ---------------------------------------------------------------------- reporting


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(stats: dict[str, Stats], against: dict[str, str] | None = None,
          targets: dict[str, str] | None = None,
          extra: dict[str, Callable[[Stats], str]] | None = None,
          labels: dict[str, str] | None = None) -> str:
    """One row per side: wall and CPU median (min - max), peak RSS (largest of the runs),
    the ratio of medians (wall / CPU) to the side `against[name]`, extra columns and the
    target."""
    against, targets, extra, labels = against or {}, targets or {}, extra or {}, labels or {}
    headers = ["run", "wall s, median (min - max)", "CPU s, median (min - max)", "peak MB"]
    headers += list(extra)
    if against:
        headers.append("ratio of medians, wall / CPU")
    if targets:
        headers.append("target")
    rows = []
    for name, s in stats.items():
        row = [labels.get(name, name), s.wall.fmt(3), s.cpu.fmt(3), f"{s.peak.max:.0f}"]
        row += [render(s) for render in extra.values()]
        if against:
            base = stats.get(against.get(name, ""))
            row.append(f"{ratio(s.wall.median, base.wall.median)} / "
                       f"{ratio(s.cpu.median, base.cpu.median)} {base.name}"
                       if base else "")
        if targets:
            row.append(targets.get(name, ""))
        rows.append(row)
    return markdown_table(headers, rows)


def protocol_note(runs: int, scratch: Scratch, load_at_start: float) -> str:
    return (f"Protocol: one warm-up run of each side, then {runs} runs of each, alternating; "
            "every run is a child process (start-up included) into a fresh folder, "
            f"{scratch.where}, deletes outside the timing; CPU = user + sys of the process "
            "and its children (wait4); peak = largest RSS of any run. Load average "
            f"{load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at the end.")


def crash_note(stats: dict[str, Stats]) -> str:
    crashed = [f"{s.name} ({s.crashes})" for s in stats.values() if s.crashes]
    return f"Runs killed by a signal and redone: {', '.join(crashed)}." if crashed else ""


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def protocol_args(parser: argparse.ArgumentParser, tmpfs: str = "4g") -> None:
    """--runs, --write-docs (alias --update-docs) and --tmpfs-size for every script."""
    parser.add_argument("--runs", type=int, default=MIN_RUNS,
                        help=f"measured runs of each side (default {MIN_RUNS}; fewer is a "
                             "smoke test and cannot be written to the docs)")
    parser.add_argument("--write-docs", "--update-docs", dest="write_docs",
                        action="store_true",
                        help="replace this script's section of docs/benchmarks.md")
    parser.add_argument("--tmpfs-size", default=tmpfs,
                        help=f"size of the tmpfs the outputs go to (default {tmpfs})")


def check_protocol_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.write_docs and args.runs < MIN_RUNS:
        parser.error(f"--write-docs needs --runs >= {MIN_RUNS}: fewer runs are not evidence")


def update_docs(section: str) -> None:
    """Replace (or append) a section of docs/benchmarks.md: `section` starts with its
    '## heading' line, which identifies the section to replace."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = section.split("\n", 1)[0] + "\n"
    assert marker.startswith("## "), "a section starts with its '## heading' line"
    section = section.strip() + "\n\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def machine_line() -> str:
    load = os.getloadavg()[0]
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"load average {load:.2f} at start, Python {sys.version.split()[0]}")


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # poll interval, bounded by the deadline
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


class StaticServer:
    """Serve `root` on 127.0.0.1: nginx when installed (a fast upstream, so we measure the
    client), else the test suite's threaded server. Use as a context manager."""

    def __init__(self, root: Path, prefer_nginx: bool = True):
        self.root = Path(root).resolve()
        self.nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists()
                                               and "/usr/sbin/nginx")
        self.use_nginx = bool(prefer_nginx and self.nginx)
        self.kind = "nginx" if self.use_nginx else "python threaded server"
        self._tmp = None
        self._proc = None
        self._server = None

    def __enter__(self) -> StaticServer:
        if self.use_nginx:
            self.port = free_port()
            self._tmp = tempfile.mkdtemp(prefix="bench-nginx-")
            conf = Path(self._tmp) / "nginx.conf"
            conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self._tmp}/nginx.pid;
error_log {self._tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ application/json json; }}
  default_type application/octet-stream;
  client_body_temp_path {self._tmp}/body; proxy_temp_path {self._tmp}/proxy;
  fastcgi_temp_path {self._tmp}/fcgi; uwsgi_temp_path {self._tmp}/uwsgi;
  scgi_temp_path {self._tmp}/scgi;
  server {{ listen 127.0.0.1:{self.port}; root {self.root}; }}
}}
""")
            self._proc = subprocess.Popen([self.nginx, "-c", str(conf), "-p", self._tmp],
                                          stderr=subprocess.DEVNULL)
            wait_for_port(self.port)
        else:
            from tests.support.http_server import TestHTTPServer

            self._server = TestHTTPServer(self.root).start()
            self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGQUIT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._server is not None:
            self._server.stop()
