"""Shared pieces of the benchmark scripts: timing commands (wall time and peak memory of
the child), serving a folder on loopback with nginx when installed, and tables.

Benchmarks build their data under `bench-data/` (git-ignored) and reuse it between runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA = ROOT / "bench-data"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # tests.support builds the packages

from tests.support.http_server import free_port  # noqa: E402


@dataclass
class Timing:
    seconds: float
    peak_mb: float
    returncode: int


def run_timed(cmd: list[str], env: dict | None = None, quiet: bool = True,
              cwd: Path | None = None) -> Timing:
    """Run `cmd`, returning its wall time and the peak RSS of the process (and children
    it waited for)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL if quiet else None,
                            stderr=subprocess.DEVNULL if quiet else None)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timing(seconds, usage.ru_maxrss / 1024, proc.returncode)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
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


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average "
            f"{load:.2f} at start, Python {sys.version.split()[0]}")
