"""The application each cas-server worker runs: RSGI requests in, file bytes out, access log.

Owns the glue between granian's RSGI protocol and `files.MirrorTree`: collecting the request
headers, sending a `Response` (whole for bodies up to `STREAM_THRESHOLD`, read from the open
descriptor in one go; larger ones streamed from the same descriptor in chunks read off the
event loop), HEAD without a body, and one common-log-format line per request on stderr.

Workers are separate processes started by granian; they learn what to serve from the
environment variables the `cas-server` command sets (`create_app` reads them).

Features that answer some requests themselves (anything beyond reading the tree) are
`Handler`s: asked in order before the tree, each either answers the request (returning a
`Handled`) or returns None to pass it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from ..storage.urls import is_bucket_url
from . import proxy, uploads
from .files import MirrorTree, Response, error

ENV_ROOT = "CAS_SERVER_ROOT"
ENV_PYPI_FOLDER = "CAS_SERVER_PYPI_FOLDER"
ENV_ACCESS_LOG = "CAS_SERVER_ACCESS_LOG"

# Bodies up to this size are read into memory in one call and handed to granian, which
# measured fastest (repodata and most packages). Larger bodies are streamed so a worker's
# memory stays bounded whatever the package size.
STREAM_THRESHOLD = 4 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024

_NO_BODY_STATUSES = (204, 304)
_LOG_SAFE = "/:@!$&'()*+,;=~%?"


@dataclass(frozen=True, slots=True)
class Handled:
    """What a `Handler` did with a request: the status sent, the body bytes sent, and an
    optional word for the access log (appended to the line, e.g. HIT or MISS)."""

    status: int
    sent: int
    note: str = ""


class Handler(Protocol):
    """Answers some requests itself (sending the response on `protocol`) and returns
    `Handled`, or returns None to leave the request to the next handler or the tree.
    `headers` are the request headers, lower-case names, repeated ones joined by ', '."""

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None: ...


class MirrorApp:
    """RSGI application serving a `MirrorTree`, logging to file descriptor `log_fd`;
    `handlers` are asked first, in order."""

    def __init__(self, tree: MirrorTree, log_fd: int | None = 2,
                 handlers: Sequence[Handler] = ()):
        self.tree = tree
        self.log_fd = log_fd
        self.handlers = tuple(handlers)
        self._log_second = -1
        self._log_time = ""

    async def __call__(self, scope, protocol) -> None:
        if scope.proto != "http":
            return
        method = scope.method
        headers: dict[str, str] = {}
        for raw_name, value in scope.headers.items():
            name = raw_name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        for handler in self.handlers:
            try:
                handled = await handler(scope, protocol, headers)
            except Exception:  # noqa: BLE001 - a bug: answer 500 and say why in the log
                traceback.print_exc(file=sys.stderr)
                handled = Handled(500, await send(method, error(500), protocol))
            if handled is not None:
                if self.log_fd is not None:
                    self._log(scope, handled.status, handled.sent, handled.note)
                return
        try:
            response = self.tree.respond(method, scope.path, scope.query_string, headers)
        except Exception:  # noqa: BLE001 - a bug: answer 500 and say why in the server's log
            traceback.print_exc(file=sys.stderr)
            response = error(500)
        sent = await send(method, response, protocol)
        if self.log_fd is not None:
            self._log(scope, response.status, sent)

    def _log(self, scope, status: int, sent: int, note: str = "") -> None:
        now = int(time.time())
        if now != self._log_second:
            self._log_second = now
            self._log_time = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        client = scope.client.rpartition(":")[0].strip("[]") or "-"
        target = quote(scope.path, safe=_LOG_SAFE)
        if scope.query_string:
            target += "?" + quote(scope.query_string, safe=_LOG_SAFE)
        line = (f'{client} - - [{self._log_time}] "{scope.method} {target} '
                f'HTTP/{scope.http_version}" {status} {sent or "-"}{" " + note if note else ""}\n')
        with contextlib.suppress(OSError):  # a closed or full log must not stop the server
            os.write(self.log_fd, line.encode("utf-8", "backslashreplace"))


async def send(method: str, response: Response, protocol) -> int:
    """Send `response`; return the number of body bytes sent."""
    status, headers = response.status, response.headers
    if method == "HEAD" or status in _NO_BODY_STATUSES:
        if status not in _NO_BODY_STATUSES:
            headers = [*headers, ("content-length", str(response.length))]
        response.close()
        protocol.response_empty(status, headers)
        return 0
    body = response.file
    if body is None:
        protocol.response_bytes(status, headers, response.body)
        return len(response.body)
    if body.length <= STREAM_THRESHOLD:
        try:
            data = read_at(body.fd, body.offset, body.length)
        finally:
            response.close()
        protocol.response_bytes(status, headers, data)
        return len(data)
    return await _stream(response, protocol)


async def _stream(response: Response, protocol) -> int:
    body = response.file
    assert body is not None
    loop = asyncio.get_running_loop()
    transport = protocol.response_stream(
        response.status, [*response.headers, ("content-length", str(body.length))])
    sent = 0
    try:
        while sent < body.length:
            want = min(CHUNK_SIZE, body.length - sent)
            chunk = await loop.run_in_executor(None, os.pread, body.fd, want, body.offset + sent)
            if not chunk:  # truncated in place under us: the client sees a short body
                break
            await transport.send_bytes(chunk)
            sent += len(chunk)
    except RuntimeError:  # the client went away (granian's RSGIProtocolClosed)
        pass
    finally:
        response.close()
    return sent


def read_at(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes of `fd` from `offset` (fewer only at end of file)."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def create_app() -> MirrorApp:
    """Granian's factory: the application configured by the `cas-server` command."""
    root = os.environ[ENV_ROOT]
    tree = MirrorTree(root, os.environ.get(ENV_PYPI_FOLDER, "pypi"))
    access_log = os.environ.get(ENV_ACCESS_LOG, "1") == "1"
    handlers: list[Handler] = []
    if is_bucket_url(root):  # the bucket handler answers every request; the tree is unused
        from .bucket import bucket_handler

        handlers.append(bucket_handler(root, os.environ.get(ENV_PYPI_FOLDER, "pypi")))
    else:
        handlers += uploads.handlers(tree)  # private packages: tokens, uploads, merged view
        handlers.extend(proxy.handlers_from_environment())  # the caching proxy
    return MirrorApp(tree, log_fd=sys.stderr.fileno() if access_log else None,
                     handlers=handlers)
