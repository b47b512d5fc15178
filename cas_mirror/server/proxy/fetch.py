"""The fetch thread of a cold miss: upstream's body, batch by batch, to the entry's
partial file and (in memory, `feed`) to the request that started the fetch, hashed on the
way (`upstream.file`); once size and digests match, the client's last byte goes and the
file is fsynced and renamed into place. A cache that stops taking writes (a full disk, an
I/O error) loses the entry, not the client: the partial file and the entry's lock go at
once, with one warning line, and the transfer goes on for the client alone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from cas_index.atomic import write_all

from ...errors import os_problem
from ...text import safe
from .feed import Feed
from .stats import Stats
from .upstream import Upstream, UpstreamFailure

if TYPE_CHECKING:
    from .store import Wanted

log = logging.getLogger(__name__)


def fetch(upstream: Upstream, stats: Stats, cache: CacheFile, wanted: Wanted,
          feed: Feed | None, future: concurrent.futures.Future) -> bool:
    """The fetch thread: upstream's body to the cache's partial file (`cache.fd`; None:
    not cached) and to `feed` (the requesting client), then, once verified, the entry
    renamed into place. When the cache cannot be written (disk full...) mid-way, the
    partial file is dropped and the client is still served. Sets `future` to the bytes
    received or the failure; returns whether the entry was cached."""
    started = time.monotonic()
    final = cache.final

    def sink(batch: list[bytes], size: int) -> None:
        if cache.fd is not None:
            try:
                _write_all(cache.fd, batch, size)
            except OSError as exc:
                cache.drop(f"cannot cache {final}: {os_problem(exc)}")
                if feed is None or feed.closed:
                    raise UpstreamFailure(cache.problem, 502) from None
        if feed is not None:
            feed.put(batch, size)
        elif cache.fd is None:
            raise UpstreamFailure(cache.problem or "not cached", 502)

    try:
        try:
            got = upstream.file(wanted.url, sink, wanted.size, wanted.digests)
        except BaseException as exc:
            if feed is not None:  # no entry, no lock left when the client hears of it
                cache.drop("")
                feed.finish(exc)
            raise
        if feed is not None:
            feed.finish(True)  # the client's last byte goes now; the cache follows
        cache.commit()
    except (UpstreamFailure, OSError) as exc:
        cache.drop("")
        stats.add("upstream_failures")
        if isinstance(exc, OSError):
            exc = UpstreamFailure(f"cannot cache {final}: {os_problem(exc)}", 502)
        log.warning("not cached: %s", safe(str(exc)))
        future.set_exception(exc)
    else:
        stats.add("upstream_fetches")
        stats.add("bytes_from_upstream", got)
        if cache.problem:  # said in one warning already
            log.info("served %s uncached (%d bytes)", safe(wanted.url), got)
        else:
            log.info("cached %s (%d bytes in %.2f s)", safe(wanted.url), got,
                     time.monotonic() - started)
        future.set_result(got)
    finally:
        cache.release()  # releases the lock: readers see the transfer is over
    return future.exception() is None and not cache.problem


class CacheFile:
    """The partial file of one fetch and the entry's lock, owned by the fetch thread."""

    def __init__(self, final, part, fd, lock_fd):
        self.final, self.part, self.fd, self.lock_fd = final, part, fd, lock_fd
        self.problem = "" if fd is not None else "the cache could not be written"

    def commit(self) -> None:
        """fsync and rename the verified file into place."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        now = time.time()
        os.utime(self.part, (now, now))
        os.rename(self.part, self.final)

    def drop(self, problem: str) -> None:
        """Give up caching: the partial file goes, and so does the lock (followers in
        other requests stop waiting for a file that will not come)."""
        if problem and not self.problem:
            self.problem = problem
            log.warning("%s; the client is served without it", safe(problem))
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
            with contextlib.suppress(OSError):
                os.unlink(self.part)
        self.release()

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _write_all(fd: int, chunks: list[bytes], size: int) -> None:
    """Write every chunk (one writev: no copy into a joined buffer)."""
    done = os.writev(fd, chunks)
    if done == size:
        return
    write_all(fd, memoryview(b"".join(chunks))[done:])
