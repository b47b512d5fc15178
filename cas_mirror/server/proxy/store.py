"""The package cache: one entry per file, fetched once however many clients and worker
processes ask, verified before it is kept, evicted least recently used first.

Entries live under `<cache_dir>/files/<URL path>`. Coordination goes through the cache
folder, because granian's workers are separate processes:

- `.<name>.lock` is flock()ed (exclusive, non-blocking) by the one request that fetches;
  the lock dies with its process, so a killed worker never blocks an entry.
- The fetch thread (`fetch`) streams upstream's body into `.<name>.part` (a fresh file
  each time) while hashing it, then, when size and sha256 match the index, fsyncs it and
  renames it to `<name>`. A failed or corrupt transfer deletes the partial file: no entry
  is left.
- The request that started the fetch gets the body from memory as it arrives (`feed`),
  not from the file: its first byte leaves as soon as upstream's does. Every other client
  reads the partial file as it grows and sends what is there. Both hold back the last
  byte until the body is verified: the response carries the index's Content-Length, so a
  transfer that fails leaves the client with a broken connection, never a short or
  unverified 200. A reader knows the transfer ended when its file became `<name>` (same
  inode) or the lock was released.
- A cache that cannot be written (the folder cannot be created, the disk fills up
  mid-way) costs the entry, not the client: one warning line, and the fetching request is
  served straight from upstream, verified the same way (its followers get a 502 or a cut
  connection, as for a failed transfer).
- Range and HEAD requests, and files whose size the index does not give, wait for the
  verified entry and are then served from it like any cached file (conditional and Range
  requests by `files.MirrorTree`).

The last access of an entry is its atime, set explicitly (so `relatime`/`noatime` mounts
do not matter) when it is created and at most once a minute when it is served; eviction
(`cache_max_size`) deletes the entries with the oldest ones, so the order survives restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import os_problem
from ...net import part_path
from ...text import safe
from ..app import Handled, send
from ..files import MirrorTree, Response, content_type_for
from .feed import Feed
from .fetch import CacheFile, fetch
from .stats import Stats
from .upstream import Upstream, UpstreamFailure

log = logging.getLogger(__name__)

FILES_FOLDER = "files"
EVICT_LOCK = ".evict.lock"
CHUNK = 1024 * 1024
TOUCH_EVERY = 60.0  # seconds: how stale an entry's access time may be before it is renewed
_POLL_FIRST, _POLL_MAX = 0.0005, 0.005  # seconds between looks at a growing partial file
_OPEN = os.O_RDONLY | os.O_CLOEXEC


@dataclass(frozen=True)
class Wanted:
    """A file the index lists: where upstream has it and what it must be."""

    url: str
    size: int | None
    digests: dict[str, str] = field(default_factory=dict)  # hashlib name -> hex


def lock_path(final: str) -> str:
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}.lock")


def package_files(folder: str) -> list[tuple[float, int, str]]:
    """(last access, size, path) of every entry under `folder` (hidden names skipped)."""
    out = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if stat.S_ISREG(st.st_mode):
                    out.append((st.st_atime, st.st_size, path))
    return out


class Store:
    def __init__(self, cache_dir: str, upstream: Upstream, stats: Stats,
                 max_size: int | None):
        self.cache_dir = cache_dir
        self.root = os.path.join(cache_dir, FILES_FOLDER)
        os.makedirs(self.root, exist_ok=True)
        self.tree = MirrorTree(self.root, pypi_folder=".none")  # no PyPI mapping here
        self.upstream = upstream
        self.stats = stats
        self.max_size = max_size

    def final_path(self, url_path: str) -> str:
        return os.path.join(self.root, *url_path.strip("/").split("/"))

    # ------------------------------------------------------------------ serving
    async def serve(self, method: str, url_path: str, wanted: Wanted,
                    headers: dict[str, str], protocol) -> Handled:
        """Answer a request for the entry at `url_path` (already checked against the
        index and the filters), fetching it first when it is not cached."""
        final = self.final_path(url_path)
        wait_whole = method == "HEAD" or "range" in headers or wanted.size is None
        for _ in range(3):
            try:
                st = os.stat(final)
            except (FileNotFoundError, NotADirectoryError):
                pass
            else:
                return await self._serve_cached(method, url_path, final, headers, protocol,
                                                "HIT", st)
            feed = None
            try:
                own, feed = self._start_fetch(final, wanted, not wait_whole)
            except OSError as exc:
                if wait_whole:
                    log.warning("cannot cache %s: %s", safe(final), os_problem(exc))
                    return await _error(method, protocol, 502,
                                        f"cannot write the cache: {os_problem(exc)}")
                log.warning("cannot cache %s: %s; serving it uncached", safe(final),
                            os_problem(exc))
                feed = self._feed()
                own = self._start_thread(None, None, None, None, wanted, feed)
            if feed is not None and own is not None and not own.done():
                return await self._send_own(url_path, wanted.size, feed, protocol)
            outcome = await self._follow(method, url_path, final, wanted, own, headers,
                                         protocol)
            if outcome is not None:
                return outcome
        return await _error(method, protocol, 502, "the upstream transfer did not start")

    async def _send_own(self, url_path: str, size: int, feed: Feed, protocol) -> Handled:
        """Send the transfer this request started, from memory as upstream delivers it:
        all but the last byte at once, the last byte once the file is verified; a failed
        transfer cuts the response (or is a 502/504 when nothing was sent yet)."""
        self.stats.add("misses")
        try:
            return await self._send_fed(url_path, size, feed, protocol)
        finally:
            feed.close()  # however it ended (a cancelled request too): never wait for it

    async def _send_fed(self, url_path: str, size: int, feed: Feed, protocol) -> Handled:
        transport = None
        sent = 0
        held = b""
        while True:
            chunks, verdict = await feed.take()
            if held:
                chunks.insert(0, held)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if verdict is not True and data and sent + len(data) == size:
                data, held = data[:-1], data[-1:]
            else:
                held = b""
            if verdict is not None and verdict is not True:
                break
            if data:
                if transport is None:
                    transport = protocol.response_stream(200, [
                        ("content-type", content_type_for(url_path)),
                        ("content-length", str(size))])
                try:
                    await transport.send_bytes(data)
                except RuntimeError:  # the client went away; the fetch goes on
                    return Handled(200, sent, "MISS")
                sent += len(data)
            if verdict is True:
                if transport is None:  # an empty file
                    protocol.response_bytes(200, [
                        ("content-type", content_type_for(url_path))], b"")
                return Handled(200, sent, "MISS")
        if transport is None:
            status = verdict.status if isinstance(verdict, UpstreamFailure) else 502
            return await _error("GET", protocol, status, str(verdict))
        log.warning("%s: upstream transfer failed after %d of %d bytes; the client's "
                    "connection is cut", safe(url_path), sent, size)
        return Handled(200, sent, "MISS")

    async def _serve_cached(self, method, url_path, final, headers, protocol,
                            note: str, st: os.stat_result | None = None) -> Handled:
        response = self.tree.respond(method, url_path, "", headers)
        if response.status in (200, 206):
            self._touch(final, st)
            if note == "HIT":
                self.stats.add("hits")
                self.stats.add("bytes_from_cache", response.length if method == "GET" else 0)
        return Handled(response.status, await send(method, response, protocol), note)

    def _touch(self, final: str, st: os.stat_result | None = None) -> None:
        with contextlib.suppress(OSError):
            st = st or os.stat(final)
            now = time.time()
            if now - st.st_atime > TOUCH_EVERY:
                os.utime(final, (now, st.st_mtime))

    async def _follow(self, method, url_path, final, wanted: Wanted,
                      own: concurrent.futures.Future | None, headers, protocol
                      ) -> Handled | None:
        """Serve the entry being fetched (by us, `own`, or by another request). None: no
        transfer was found to follow (it ended before we looked): try again."""
        self.stats.add("misses")
        wait_whole = method == "HEAD" or "range" in headers or wanted.size is None
        lock_fd = os.open(lock_path(final), _OPEN | os.O_CREAT, 0o644)
        try:
            fd = await self._open_partial(final, lock_fd)
            if fd is None:
                if os.path.exists(final):
                    return await self._serve_cached(method, url_path, final, headers,
                                                    protocol, "MISS")
                if own is None:
                    return None
                return await _failed(method, protocol, own)
            try:
                if wait_whole:
                    await self._wait_until_done(fd, final, lock_fd)
                    if _is_final(fd, final):
                        return await self._serve_cached(method, url_path, final, headers,
                                                        protocol, "MISS")
                    return await _failed(method, protocol, own)
                return await self._stream(fd, final, lock_fd, wanted.size, url_path, own,
                                          protocol)
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)

    async def _open_partial(self, final: str, lock_fd: int) -> int | None:
        """The partial file of the transfer under way, open; None when there is none (it
        finished or failed, or none started)."""
        part = str(part_path(Path(final)))
        delay = _POLL_FIRST
        while True:
            try:
                fd = os.open(part, _OPEN)
            except FileNotFoundError:
                if not _fetching(lock_fd):
                    return None
            else:
                if _fetching(lock_fd) or _is_final(fd, final):
                    return fd
                os.close(fd)  # a partial file left by a transfer that is over
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def _wait_until_done(self, fd: int, final: str, lock_fd: int) -> None:
        delay = _POLL_FIRST
        while not _is_final(fd, final) and _fetching(lock_fd):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def _stream(self, fd: int, final: str, lock_fd: int, size: int, url_path: str,
                      own, protocol) -> Handled:
        """Send the growing file `fd` (which must end up `size` bytes): the last byte only
        once the entry is verified and in place."""
        delay = _POLL_FIRST
        sent = 0
        transport = None
        while sent < size:
            done = _is_final(fd, final)
            available = os.fstat(fd).st_size
            if done and available != size:
                break  # verified against another index (it changed meanwhile): cut
            limit = min(available, size if done else size - 1)
            if limit > sent:
                if transport is None:
                    transport = protocol.response_stream(200, [
                        ("content-type", content_type_for(url_path)),
                        ("content-length", str(size))])
                data = os.pread(fd, min(CHUNK, limit - sent), sent)
                try:
                    await transport.send_bytes(data)
                except RuntimeError:  # the client went away; the fetch goes on
                    return Handled(200, sent, "MISS")
                sent += len(data)
                delay = _POLL_FIRST
                continue
            if done:
                break  # unreachable with the sizes checked above; never spin
            if not _fetching(lock_fd):
                if _is_final(fd, final):
                    continue  # renamed between the two looks: send the rest
                break  # the transfer failed
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        if transport is None:
            if sent == size:  # an empty file
                protocol.response_bytes(200, [("content-type", content_type_for(url_path))],
                                        b"")
                return Handled(200, 0, "MISS")
            return await _failed("GET", protocol, own)
        if sent < size:
            log.warning("%s: upstream transfer failed after %d of %d bytes; the client's "
                        "connection is cut", safe(url_path), sent, size)
        return Handled(200, sent, "MISS")

    # ------------------------------------------------------------------ fetching
    def _feed(self) -> Feed:
        return Feed(asyncio.get_running_loop(), self.upstream.settings.timeout)

    def _start_fetch(self, final: str, wanted: Wanted, stream: bool
                     ) -> tuple[concurrent.futures.Future | None, Feed | None]:
        """Start the upstream transfer in a thread when nobody else is fetching: its
        future (None when another request holds the entry's lock) and, with `stream`,
        the feed that hands its bytes to this request."""
        os.makedirs(os.path.dirname(final), exist_ok=True)
        lock_fd = os.open(lock_path(final), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            return None, None
        if os.path.exists(final):  # finished while we looked
            os.close(lock_fd)
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_result(0)
            return future, None
        part = str(part_path(Path(final)))
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)  # a killed worker's: start over, under a new inode
            part_fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError:
            os.close(lock_fd)
            raise
        feed = self._feed() if stream else None
        return self._start_thread(final, part, part_fd, lock_fd, wanted, feed), feed

    def _start_thread(self, final, part, part_fd, lock_fd, wanted: Wanted,
                      feed: Feed | None) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        threading.Thread(target=self._fetch, daemon=True, name=f"fetch {wanted.url}",
                         args=(final, part, part_fd, lock_fd, wanted, feed, future)).start()
        return future

    def _fetch(self, final: str | None, part: str | None, part_fd: int | None,
               lock_fd: int | None, wanted: Wanted, feed: Feed | None,
               future: concurrent.futures.Future) -> None:
        cache = CacheFile(final, part, part_fd, lock_fd)
        if fetch(self.upstream, self.stats, cache, wanted, feed, future) and self.max_size:
            self.evict()

    # ------------------------------------------------------------------ bounds
    def evict(self) -> int:
        """Delete the least recently used entries until the cache holds at most
        `max_size` bytes; one worker at a time (the others skip). Returns files deleted."""
        if self.max_size is None:
            return 0
        fd = os.open(os.path.join(self.cache_dir, EVICT_LOCK),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            entries = sorted(package_files(self.root))
            total = sum(size for _, size, _ in entries)
            deleted = 0
            for _, size, path in entries:
                if total <= self.max_size:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    deleted += 1
                    self.stats.add("evictions")
                    self.stats.add("bytes_evicted", size)
                    log.info("evicted %s (%d bytes; cache_max_size %d)", safe(path), size,
                             self.max_size)
                total -= size
            return deleted
        finally:
            os.close(fd)


def _is_final(fd: int, final: str) -> bool:
    """Whether the open file `fd` is now the verified entry `final`."""
    try:
        return os.stat(final).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _fetching(lock_fd: int) -> bool:
    """Whether some request (in any worker) holds the entry's lock."""
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    return False


async def _failed(method: str, protocol, own: concurrent.futures.Future | None) -> Handled:
    """The answer for a transfer that failed before the client got anything."""
    status, text = 502, "the upstream transfer failed"
    if own is not None:
        try:
            await asyncio.wrap_future(own)
        except UpstreamFailure as exc:
            status, text = exc.status, str(exc)
        else:
            status, text = 502, "the file was removed from the cache; try again"
    return await _error(method, protocol, status, text)


async def _error(method: str, protocol, status: int, text: str) -> Handled:
    response = error_response(status, text)
    return Handled(status, await send(method, response, protocol), "MISS")


def error_response(status: int, text: str) -> Response:
    reasons = {502: "Bad Gateway", 504: "Gateway Timeout", 404: "Not Found",
               405: "Method Not Allowed", 403: "Forbidden"}
    body = f"{status} {reasons.get(status, '')}\n{safe(text)}\n".encode()
    return Response(status, [("content-type", "text/plain; charset=utf-8")], body)


async def answer(method: str, protocol, response: Response, note: str = "") -> Handled:
    """Send a small response the handlers built; what the access log gets."""
    return Handled(response.status, await send(method, response, protocol), note)
