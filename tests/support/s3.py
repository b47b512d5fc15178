"""An S3-compatible endpoint on 127.0.0.1 for tests: moto's threaded server, and in front
of it a small recording proxy (test scaffolding, not part of the product) that logs every
request and injects faults.

The proxy is how tests count requests (a no-op run must send no LIST) and make the
endpoint answer 500, 503 SlowDown or 403 for chosen requests. Moto itself honours
If-Match / If-None-Match on PutObject (checked in tests/test_s3_storage.py), so the
conflict paths run against its own precondition checks.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"

_S3_ERRORS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
    403: ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist."),
}


@dataclass
class S3Fault:
    """Answer requests matching `method` and `pattern` (fnmatch on the path and query)
    with `status` and an S3 error document, `times` times (None: always)."""

    pattern: str
    status: int
    method: str = "*"
    times: int | None = None
    # With `release`: a matching request is held (`held` is set) until `release` is set,
    # then forwarded as usual (status 0) or answered with `status`.
    release: threading.Event | None = None
    held: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class S3Request:
    method: str
    path: str
    query: str

    @property
    def is_list(self) -> bool:
        """A ListObjects(V2) request: GET on a bucket (no key) with no sub-resource other
        than list parameters."""
        return self.method == "GET" and self.path.strip("/").count("/") == 0 and \
            "uploads" not in self.query.split("&")


@dataclass
class S3Endpoint:
    """The endpoint the product talks to (`url`, through the proxy) and moto behind it."""

    url: str
    moto_url: str
    requests: list[S3Request] = field(default_factory=list)
    faults: list[S3Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_bucket(self, stem: str = "bucket") -> str:
        """Create a fresh bucket (one per test keeps tests apart) and return its name."""
        name = f"{stem}-{uuid.uuid4().hex[:12]}"
        connection = http.client.HTTPConnection(urlsplit(self.moto_url).netloc, timeout=30)
        try:
            connection.request("PUT", f"/{name}")
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
        finally:
            connection.close()
        return name

    def add_fault(self, pattern: str, status: int, method: str = "*",
                  times: int | None = None, release: threading.Event | None = None) -> S3Fault:
        fault = S3Fault(pattern, status, method, times, release)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.requests.clear()

    def lists(self, bucket: str) -> list[S3Request]:
        """The ListObjects requests sent for `bucket`."""
        return [r for r in self.requests if r.is_list and r.path.strip("/") == bucket]

    def _take_fault(self, method: str, target: str) -> S3Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method in ("*", method) and fnmatch.fnmatchcase(target, fault.pattern):
                    if fault.times is not None:
                        if fault.times <= 0:
                            continue
                        fault.times -= 1
                    return fault
        return None


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: S3Endpoint):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.endpoint = endpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_request(self) -> None:
        endpoint = self.server.endpoint
        path, _, query = self.path.partition("?")
        with endpoint.lock:
            endpoint.requests.append(S3Request(self.command, path, query))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        fault = endpoint._take_fault(self.command, self.path)
        if fault is not None and fault.release is not None:
            fault.held.set()
            fault.release.wait(60)
            if not fault.status:
                fault = None
        if fault is not None:
            code, message = _S3_ERRORS.get(fault.status, ("InternalError", "injected"))
            text = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>").encode()
            self.send_response(fault.status)
            self.send_header("content-type", "application/xml")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)
            return
        upstream = http.client.HTTPConnection(urlsplit(endpoint.moto_url).netloc, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("transfer-encoding", "connection")}
            headers["content-length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length",
                                        "server", "date"):
                    self.send_header(name, value)
            length = answer.getheader("content-length") if self.command == "HEAD" else None
            self.send_header("content-length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_request


@contextlib.contextmanager
def running_endpoint() -> Iterator[S3Endpoint]:
    """moto's server and the recording proxy, both on 127.0.0.1, for the block."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = S3Endpoint(url="", moto_url=f"http://{host}:{port}")
    proxy = _Proxy(endpoint)
    endpoint.url = f"http://127.0.0.1:{proxy.server_address[1]}"
    thread = threading.Thread(target=proxy.serve_forever, name="s3-proxy", daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        proxy.shutdown()
        proxy.server_close()
        moto.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """One S3 endpoint for the whole session (tests create their own buckets)."""
    with running_endpoint() as endpoint:
        yield endpoint


def credentials_env(home: os.PathLike | str) -> dict[str, str]:
    """Environment variables with the test credentials and no shared AWS files of this
    machine (for subprocesses and monkeypatch)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": os.path.join(home, "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def s3_credentials(tmp_path, monkeypatch) -> dict[str, str]:
    """The test credentials in this process's environment (the standard AWS chain)."""
    env = credentials_env(tmp_path)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
