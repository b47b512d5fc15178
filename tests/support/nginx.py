"""Run nginx with the project's etc/nginx.conf on a loopback port, without touching the
machine's nginx setup: the documented file is rendered for a root and a port and wrapped
in a minimal main configuration inside a private folder. Used by the tests and by
scripts/bench_serve.py; both check `nginx_binary()` first (nginx is optional).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parents[2]
DOCUMENTED_CONFIG = PROJECT / "etc" / "nginx.conf"
START_DEADLINE = 20.0


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def render_site(root: Path, port: int, pypi_folder: str = "pypi") -> str:
    """etc/nginx.conf as a user would edit it: their mirror_dir, port and PyPI folder."""
    text = DOCUMENTED_CONFIG.read_text()
    text = text.replace("/srv/cas-mirror", str(root))
    text = text.replace("    listen 8080;\n", f"    listen 127.0.0.1:{port};\n")
    text = text.replace("    listen [::]:8080;\n", "")
    # URLs (/pypi/...) and the folder (<root>/pypi/web/) both carry the name.
    return text.replace("/pypi/", f"/{pypi_folder}/")


def write_main_config(workdir: Path, site: str, workers: int = 1,
                      access_log: bool = False) -> Path:
    """A complete nginx.conf in `workdir` that includes `site`; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cas-mirror.conf").write_text(site)
    temp_paths = "\n".join(
        f"    {name}_temp_path {workdir / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's tmp dirs
    log = f"access_log {workdir / 'access.log'};" if access_log else "access_log off;"
    config = workdir / "nginx.conf"
    config.write_text(
        f"{user}worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"    {log}\n"
        f"{temp_paths}\n"
        f"    include {workdir / 'cas-mirror.conf'};\n"
        "}\n")
    return config


def check_config(config: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on a configuration written by write_main_config."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(config.parent), "-c", str(config),
         "-e", str(config.parent / "error.log")],
        capture_output=True, text=True, check=False, timeout=60)


class Nginx:
    """nginx serving `root` on 127.0.0.1:`port` with the documented configuration."""

    def __init__(self, root: Path, port: int, workdir: Path, workers: int = 1,
                 pypi_folder: str = "pypi"):
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        config = write_main_config(workdir, render_site(root, port, pypi_folder), workers)
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(workdir), "-c", str(config),
             "-e", str(workdir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: "
                                   f"{self.error_log()}")
            try:
                requests.head(self.url + "/", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx not ready: {self.error_log()}") from None
                time.sleep(0.05)  # poll interval, bounded by the deadline

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
