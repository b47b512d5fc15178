"""Private packages in tests: the `cas-server` token and pypi commands run as users run
them, a served tree with upload settings, raw HTTP requests for what clients never send
(a body cut off, a Content-Length past the limit)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.cas_server import server_env


def cas_server_cli(root: Path, config: Path, workdir: Path, *args: str,
                   check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "cas_mirror.server", "--root", str(root), "-f", str(config),
         *args], capture_output=True, text=True, env=server_env(workdir), timeout=60,
        check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"cas-server {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stderr}")
    return proc


def add_token(root: Path, config: Path, workdir: Path, name: str, *scopes: str) -> str:
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    proc = cas_server_cli(root, config, workdir, "token", "add", name, *scope_args)
    return proc.stdout.strip()


def raw_request(url: str, head: str, body: bytes = b"", close_after_body: bool = False,
                timeout: float = 20.0) -> bytes:
    """Send `head` (request line and headers, without the blank line) and `body` on one
    connection; return what the server answers (until it closes or `timeout`). With
    `close_after_body`, the write side is shut down right after the body (a client that
    went away mid-upload) and nothing is read back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        if close_after_body:
            sock.shutdown(socket.SHUT_RDWR)
            return b""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def wait_until(predicate, deadline_s: float = 15.0) -> bool:
    """Poll `predicate` until it holds or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # poll interval, bounded by the deadline
    return predicate()


def form_upload(url: str, token: str, path: Path) -> requests.Response:
    """Upload `path` to the legacy API `url` with the form twine sends (its fields and
    digests), without twine's start-up cost: for tests about what follows an upload."""
    import hashlib

    data = path.read_bytes()
    if path.name.endswith(".whl"):
        name, version = path.name.split("-")[:2]
        filetype = "bdist_wheel"
    else:
        name, version = path.name[: -len(".tar.gz")].rsplit("-", 1)
        filetype = "sdist"
    fields = {":action": "file_upload", "protocol_version": "1", "name": name,
              "version": version, "filetype": filetype, "metadata_version": "2.1",
              "sha256_digest": hashlib.sha256(data).hexdigest(),
              "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest()}
    return requests.post(url, data=fields, files={"content": (path.name, data)},
                         auth=("__token__", token), timeout=30)
