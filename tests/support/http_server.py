"""A real HTTP server on 127.0.0.1 for tests: serves a folder, and misbehaves on request.

Threaded, HTTP/1.1 keep-alive, HEAD, single-range `Range` requests (206/416) with
`If-Range`, ETag and Last-Modified with conditional requests (304). Tests add `Fault`s to
make matching paths answer with a status code, wait, stall mid-body, cut the body short,
corrupt it, or drop the connection, and `route()`s for dynamic answers (JSON APIs,
XML-RPC). Every request is logged; `replace_file` changes a file as a new upstream
version does.

This is test infrastructure, so it is built on the standard library's `http.server`.
"""

from __future__ import annotations

import contextlib
import email.utils
import fnmatch
import mimetypes
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    """Misbehaviour for requests whose path matches `pattern` (an fnmatch glob)."""

    pattern: str
    status: int | None = None  # answer with this status and a short body
    times: int | None = None  # how many requests it applies to; None = all
    delay: float = 0.0  # seconds to wait before answering
    truncate: int | None = None  # send only this many body bytes, then close
    corrupt: bool = False  # flip bytes in the body (same length)
    reset: bool = False  # close the connection without an answer
    stall: float = 0.0  # after `stall_after` body bytes, send nothing for this long
    stall_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (Retry-After, ...)
    body: bytes | None = None  # replace the body entirely
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    methods: tuple[str, ...] = ("GET", "HEAD", "POST")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body: bytes = b""


RouteHandler = Callable[["LoggedRequest"], Response]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a client opening 8 connections
    # at once, which then waits for TCP's 1 s retransmission: real servers queue more.
    request_queue_size = 128

    def __init__(self, owner: TestHTTPServer):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        # Clients hanging up mid-answer (timeouts, aborted transfers) are expected here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for
    # the client's delayed ACK (40 ms per response).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._handle(send_body=True)

    def do_HEAD(self):
        self._handle(send_body=False)

    def do_POST(self):
        self._handle(send_body=True)

    # ------------------------------------------------------------------ dispatch
    def _handle(self, send_body: bool) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        body = b""
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = LoggedRequest(self.command, self.path, dict(self.headers.items()), body=body)
        owner._log(entry)
        fault = owner._take_fault(path, self.command)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.reset:
            entry.status = -1
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.status is not None:
            msg = fault.body if fault.body is not None else f"injected {fault.status}\n".encode()
            return self._send(entry, Response(fault.status, msg, dict(fault.headers)), send_body)
        route = owner._route_for(path)
        response = route(entry) if route is not None else self._file_response(owner.root, path)
        if fault:
            response.headers.update(fault.headers)
            if fault.body is not None:
                response.body = fault.body
        self._send(entry, response, send_body, fault)

    def _file_response(self, root: Path, url_path: str) -> Response:
        target = (root / url_path.lstrip("/")).resolve()
        if root.resolve() not in (target, *target.parents):
            return Response(403, b"outside the root\n")
        if target.is_dir():
            target = target / "index.html"
        try:
            st = target.stat()
        except OSError:
            return Response(404, b"not found\n")
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        owner = self.server.owner
        headers = {"ETag": etag, "Last-Modified": modified, "Content-Type": _content_type(target)}
        headers = {k: v for k, v in headers.items() if k not in owner.hide_headers}
        if self.server.owner.range_support:
            headers["Accept-Ranges"] = "bytes"
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if (inm and etag in [t.strip() for t in inm.split(",")]) or (
            not inm and ims and _not_modified_since(ims, st.st_mtime)
        ):
            return Response(304, b"", headers)
        data = target.read_bytes()
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range and if_range.strip() not in (etag, modified) and owner.honour_if_range:
            rng = None  # the file changed since the client's copy: send it whole
        if rng and owner.range_support:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if match and (match.group(1) or match.group(2)):
                start_s, end_s = match.groups()
                if start_s:
                    start, end = int(start_s), int(end_s) if end_s else len(data) - 1
                else:
                    start, end = max(0, len(data) - int(end_s)), len(data) - 1
                if start >= len(data) or start > end:
                    headers["Content-Range"] = f"bytes */{len(data)}"
                    return Response(416, b"", headers)
                end = min(end, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return Response(206, data[start:end + 1], headers)
        return Response(200, data, headers)

    def _send(self, entry: LoggedRequest, response: Response, send_body: bool,
              fault: Fault | None = None) -> None:
        entry.status = response.status
        body = response.body
        self.send_response(response.status)
        headers = {"Content-Type": "application/octet-stream", **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if fault and fault.no_length:
            self.close_connection = True
        elif response.status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not send_body or response.status == 304:
            return
        if fault and fault.corrupt and body:
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
        if fault and fault.stall:
            self.wfile.write(body[: fault.stall_after])
            self.wfile.flush()
            self.server.owner.stopping.wait(fault.stall)  # the rest comes late, if at all
            body = body[fault.stall_after:]
        if fault and fault.truncate is not None:
            self.wfile.write(body[: fault.truncate])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


def _content_type(path: Path) -> str:
    if path.name.endswith(".json"):
        return "application/json"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers started by other programs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestHTTPServer:
    """Serve `root` on 127.0.0.1 on a free port, in a background thread."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, root: str | os.PathLike, range_support: bool = True,
                 honour_if_range: bool = True, hide_headers: tuple[str, ...] = (),
                 ssl_context: ssl.SSLContext | None = None):
        self.root = Path(root)
        self.range_support = range_support
        self.honour_if_range = honour_if_range
        self.hide_headers = hide_headers  # e.g. ("ETag",): a server without that validator
        self.requests: list[LoggedRequest] = []
        self._faults: list[Fault] = []
        self._routes: list[tuple[str, RouteHandler]] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # ends stalls early when the server stops
        self._server = _Server(self)
        self.scheme = "http"
        if ssl_context is not None:  # HTTPS: wrap the listening socket
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> TestHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TestHTTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration
    def add_fault(self, pattern: str, **kwargs) -> Fault:
        fault = Fault(pattern, **kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def replace_file(self, relpath: str, data: bytes) -> None:
        """Change a served file, with a new ETag and a Last-Modified 2 s later (dates have
        whole seconds), as an upstream that publishes a new version does."""
        path = self.root / relpath
        before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
        path.write_bytes(data)
        os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def route(self, pattern: str, handler: RouteHandler) -> None:
        """Answer paths matching `pattern` (fnmatch) with `handler(request) -> Response`."""
        with self._lock:
            self._routes.append((pattern, handler))

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    # ------------------------------------------------------------------ internals
    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if method not in fault.methods or not fnmatch.fnmatchcase(path, fault.pattern):
                    continue
                if fault.times is None:
                    return fault
                if fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _route_for(self, path: str) -> RouteHandler | None:
        with self._lock:
            for pattern, handler in self._routes:
                if fnmatch.fnmatchcase(path, pattern):
                    return handler
        return None
