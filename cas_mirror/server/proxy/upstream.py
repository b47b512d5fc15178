"""Outbound HTTP of the proxy: metadata documents and package files from upstream.

Both run in threads beside the worker's event loop, on libcurl through the shared
downloader's pieces (`net.Downloader.get` for documents; `CurlSetup` and
`perform_watched` for files), so the proxy honours the `proxy`, `ssl_verify` and
`timeout` keys exactly as cas-sync does and reuses keep-alive connections per thread.
There are no retries: a client is waiting, and a stale copy or the client's own retry is
the better answer. Failures become `UpstreamFailure` with the status the proxy answers
for something it never cached: 404 (upstream has no such file), 504 (timed out), 502
(anything else).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pycurl

from ...net import Downloader, HttpError, NetworkSettings
from ...net.curl import STALLED, CurlSetup, Headers, perform_watched, stall_message
from ...net.retry import classify
from ...text import safe

log = logging.getLogger(__name__)


# libcurl's receive buffer for files: larger than its 16 KB default, so a 20 MB package
# costs a few hundred write callbacks (each a write(), a hash update, a GIL hand-over)
# instead of over a thousand.
BUFFER_SIZE = 512 * 1024
MAX_WRITE_SIZE = 16 * 1024  # CURL_MAX_WRITE_SIZE: the most one write callback gets
BATCH_SIZE = 1024 * 1024  # the most held before the batch goes to the sink


class UpstreamFailure(Exception):
    """Upstream did not deliver; `status` is what to answer when nothing is cached."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Document:
    status: int  # 200 or 304
    headers: Mapping[str, str]
    data: bytes


def _failure_status(status: int | None, cause: str) -> int:
    if status in (404, 410):
        return 404
    if "timed out" in cause:
        return 504
    return 502


class Upstream:
    """The proxy's outbound client, one per worker process (thread-safe)."""

    def __init__(self, timeout: float, proxy: str | None, ssl_verify: bool | str):
        self.settings = NetworkSettings(workers=1, timeout=timeout, retries=0, proxy=proxy,
                                        ssl_verify=ssl_verify)
        self.downloader = Downloader(self.settings)
        self.curl = CurlSetup(self.settings)
        self._local = threading.local()

    def document(self, url: str, headers: Mapping[str, str] | None = None,
                 max_bytes: int | None = None) -> Document:
        """GET a metadata document (304 when the conditional headers say it is current)."""
        started = time.monotonic()
        try:
            response = self.downloader.get(url, headers, max_bytes=max_bytes)
        except HttpError as exc:
            raise UpstreamFailure(str(exc), _failure_status(exc.status, exc.cause)) from None
        log.debug("upstream %s: %d, %d bytes in %.3f s", safe(url), response.status,
                  len(response.data), time.monotonic() - started)
        return Document(response.status, response.headers, response.data)

    def file(self, url: str, sink: Callable[[list[bytes], int], None], size: int | None,
             digests: Mapping[str, str]) -> int:
        """Stream `url` to `sink` (called in this thread with batches of the body's chunks
        and their byte count) while hashing; raise UpstreamFailure unless the status is 200
        and the body has `size` bytes (when known) and matches every digest in `digests`
        (hashlib names). Returns the bytes received. An exception raised by `sink` ends
        the transfer and is raised again."""
        c = getattr(self._local, "handle", None)
        if c is None:
            c, self._local.multi = pycurl.Curl(), pycurl.CurlMulti()
            self._local.handle = c
        multi = self._local.multi
        c.reset()
        self.curl.prepare(c, url, None)
        hashers = {name: hashlib.new(name) for name in digests}
        written = 0
        too_big = False
        headers = Headers()
        batch: list[bytes] = []
        batched = 0
        failure: list[BaseException] = []

        def flush() -> None:
            nonlocal batch, batched
            if hashers:
                chunks.put(batch)
            sink(batch, batched)
            batch, batched = [], 0

        def write(data: bytes) -> int | None:
            nonlocal written, too_big, batched
            headers.last_read = time.monotonic()
            if headers.status != 200:
                return None  # an error body: not part of the file
            written += len(data)
            if size is not None and written > size:
                too_big = True
                return -1
            batch.append(data)
            batched += len(data)
            # libcurl hands over at most 16 KB per call; a shorter piece ends what one
            # read() got, so the socket is drained: pass the batch on now (a slow upstream
            # reaches the client at once, a fast one in batches of a few hundred KB).
            if len(data) < MAX_WRITE_SIZE or batched >= BATCH_SIZE:
                try:
                    flush()
                except BaseException as exc:  # noqa: BLE001 - raised again after perform
                    failure.append(exc)
                    return -1
                headers.last_read = time.monotonic()  # the sink may have waited
            return None

        # Hashing runs in a helper thread (hashlib releases the GIL), overlapping the
        # receiving instead of adding to it.
        chunks: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()

        def hash_chunks() -> None:
            while (got := chunks.get()) is not None:
                for chunk in got:
                    for hasher in hashers.values():
                        hasher.update(chunk)

        hashing = threading.Thread(target=hash_chunks, daemon=True)
        hashing.start()

        c.setopt(pycurl.WRITEFUNCTION, write)
        c.setopt(pycurl.HEADERFUNCTION, headers.add)
        c.setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
        try:
            error = perform_watched(multi, c, headers, self.settings.timeout)
            if batch and not failure and not too_big and error is None:
                try:
                    flush()
                except BaseException as exc:  # noqa: BLE001 - raised just below
                    failure.append(exc)
        finally:
            chunks.put(None)
            hashing.join()
        if failure:
            raise failure[0]
        if error is STALLED:
            raise UpstreamFailure(f"{url}: {stall_message(self.settings.timeout)}", 504)
        if too_big:
            raise UpstreamFailure(f"{url}: more than the {size} bytes the index lists")
        if error is not None:
            exc = classify(*error)
            raise UpstreamFailure(f"{url}: {exc}", _failure_status(None, str(exc)))
        status = c.getinfo(pycurl.RESPONSE_CODE)
        if status != 200:
            raise UpstreamFailure(f"{url}: HTTP {status}", _failure_status(status, ""))
        if size is not None and written != size:
            raise UpstreamFailure(f"{url}: {written} bytes, the index lists {size}")
        for name, hasher in hashers.items():
            if hasher.hexdigest() != digests[name].lower():
                raise UpstreamFailure(f"{url}: {name} mismatch: the body is not the file "
                                      "the index lists")
        return written
