"""The hand-over of a cold miss's bytes from the fetching thread to the request that
started the fetch, in memory: that client gets each batch as soon as upstream delivered
it, without waiting for the cache file to be written and read back (other requests follow
the partial file, `store`).

The fetch thread `put`s batches of chunks and, at the end, `finish`es with the verdict
(True: size and digests matched; else the exception). The request's coroutine `take`s
everything that arrived since its last look, the verdict with it, so it can send all but
the last byte at once and the last byte only once the file is verified. At most `limit`
bytes wait in memory: beyond that the fetch thread waits for the client (upstream then
goes at the client's pace); a client that takes nothing for `timeout` seconds is dropped
(`closed`, its response cut) and the fetch goes on for the cache. `close` is also how the
request says its client went away.
"""

from __future__ import annotations

import asyncio
import threading

LIMIT = 16 * 1024 * 1024  # bytes the fetch may run ahead of its client


class ClientTooSlow(Exception):
    """The client took nothing for `timeout` seconds while the feed was full."""


class Feed:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, limit: int = LIMIT):
        self.loop = loop
        self.timeout = timeout
        self.limit = limit
        self._lock = threading.Condition()
        self._chunks: list[bytes] = []
        self._backlog = 0
        self._verdict: bool | BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self.closed = False

    # ------------------------------------------------------------ the fetch thread
    def put(self, batch: list[bytes], size: int) -> None:
        with self._lock:
            if self.closed:
                return
            self._chunks.extend(batch)
            self._backlog += size
            self._wake()
            while self._backlog > self.limit and not self.closed:
                if not self._lock.wait(self.timeout):
                    self.closed = True
                    self._verdict = ClientTooSlow(
                        f"the client took nothing for {self.timeout:g} s")
                    self._wake()

    def finish(self, verdict: bool | BaseException) -> None:
        with self._lock:
            if self._verdict is None:
                self._verdict = verdict
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self.loop.call_soon_threadsafe(_release, waiter)

    # ------------------------------------------------------------ the request
    async def take(self) -> tuple[list[bytes], bool | BaseException | None]:
        """What arrived since the last call (waiting until something did) and the
        verdict (None while the transfer goes on)."""
        while True:
            with self._lock:
                if self._chunks or self._verdict is not None:
                    chunks, self._chunks, self._backlog = self._chunks, [], 0
                    self._lock.notify_all()
                    return chunks, self._verdict
                waiter = self._waiter = self.loop.create_future()
            await waiter

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._chunks, self._backlog = [], 0
            self._lock.notify_all()


def _release(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
