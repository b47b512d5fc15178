"""Run the real `cas-server` as a subprocess on 127.0.0.1 for tests, and build the trees it
serves: a wheel, PEP 691 simple-API folders.

The server is started the way a user starts it (`python -m cas_mirror.server`, the same
entry point as the console script) on a free loopback port; readiness is polled with a
deadline, never slept for. Its stderr (the access log) goes to a file the test can read.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.http_server import free_port

START_DEADLINE = 30.0  # seconds; generous for a loaded 2-core machine


def server_env(home: Path) -> dict[str, str]:
    """The environment for a child process: no configuration files of this machine, no
    proxies, no pip settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("PIP_") and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy")}
    env.update(
        CAS_MIRROR_SYSTEM_CONFIG=str(home / "no-system-config"),
        CAS_MIRROR_USER_CONFIG=str(home / "no-user-config"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


class CasServer:
    """A running cas-server subprocess: `url`, `log()` (its stderr), `stop()`."""

    def __init__(self, root: Path, workdir: Path, *args: str, workers: int = 2):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"cas-server-{self.port}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "cas_mirror.server", "--host", "127.0.0.1",
                   "--port", str(self.port), "--root", str(root), "--workers", str(workers),
                   *args]
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env=server_env(workdir), stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cas-server exited with {self.process.returncode}: "
                                   f"{self.log()}")
            try:
                requests.head(self.url + "/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.05)  # poll interval, bounded by the deadline above
        self.stop()
        raise RuntimeError(f"cas-server not ready after {START_DEADLINE} s: {self.log()}")

    def log(self) -> str:
        self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, deadline_s: float = 10.0) -> str:
        """The log once it holds `text`: a worker writes a request's line just after handing
        the response over, so the client can be a little ahead of the log."""
        deadline = time.monotonic() + deadline_s
        while text not in (log := self.log()) and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval, bounded by the deadline
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


# ---------------------------------------------------------------------- PyPI trees


def build_wheel(out_dir: Path, name: str, version: str) -> Path:
    """A real, installable pure-Python wheel (tests.support.pypi_packages builds it), as a
    file in `out_dir`."""
    from tests.support.pypi_packages import build_wheel as wheel_bytes

    filename, data, _ = wheel_bytes(name, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / filename
    target.write_bytes(data)
    return target


def add_to_packages(web: Path, wheel: Path) -> str:
    """Copy `wheel` under web/packages/<hashed path>/ as bandersnatch does; return its
    URL relative to a project page (simple/<project>/)."""
    data = wheel.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    rel = f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{wheel.name}"
    (web / rel).parent.mkdir(parents=True, exist_ok=True)
    (web / rel).write_bytes(data)
    return f"../../{rel}#sha256={digest}"


def project_json(name: str, links: list[str]) -> str:
    files = []
    for link in links:
        url, _, fragment = link.partition("#")
        files.append({"filename": url.rsplit("/", 1)[1], "url": url,
                      "hashes": {"sha256": fragment.split("=", 1)[1]}})
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files,
                       "versions": []})


def project_html(name: str, links: list[str]) -> str:
    anchors = "\n".join(
        f'    <a href="{html.escape(link)}">{html.escape(_filename(link))}</a><br/>'
        for link in links)
    return ("<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.1">\n'
            f"    <title>Links for {name}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {name}</h1>\n{anchors}\n  </body>\n</html>\n")


def _filename(link: str) -> str:
    return link.split("#", maxsplit=1)[0].rsplit("/", 1)[1]


def write_project(web: Path, name: str, json_links: list[str] | None,
                  html_links: list[str] | None, legacy_html: bool = True) -> Path:
    """simple/<name>/ with index.v1_json (when json_links is given) and index.v1_html +
    index.html (when html_links is given; index.html only when legacy_html)."""
    folder = web / "simple" / name
    folder.mkdir(parents=True, exist_ok=True)
    if json_links is not None:
        (folder / "index.v1_json").write_text(project_json(name, json_links))
    if html_links is not None:
        (folder / "index.v1_html").write_text(project_html(name, html_links))
        if legacy_html:
            (folder / "index.html").write_text(project_html(name, html_links))
    return folder


def write_root_index(web: Path, names: list[str]) -> None:
    simple = web / "simple"
    simple.mkdir(parents=True, exist_ok=True)
    (simple / "index.v1_json").write_text(json.dumps({
        "meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}))
    page = ("<!DOCTYPE html>\n<html>\n  <body>\n"
            + "".join(f'    <a href="{n}/">{n}</a><br/>\n' for n in names)
            + "  </body>\n</html>\n")
    (simple / "index.v1_html").write_text(page)
    (simple / "index.html").write_text(page)
