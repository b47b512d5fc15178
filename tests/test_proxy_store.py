"""The package cache's reader protocol on its own, with the test playing the worker that
fetches (holding the entry's flock and growing the partial file) and a recording RSGI
protocol in place of granian: what a reader sends, and that it always ends."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from pathlib import Path

from cas_mirror.net import part_path
from cas_mirror.server.proxy import fetch
from cas_mirror.server.proxy.feed import ClientTooSlow, Feed
from cas_mirror.server.proxy.stats import Stats
from cas_mirror.server.proxy.store import Store, Wanted, lock_path
from cas_mirror.server.proxy.upstream import UpstreamFailure

URL_PATH = "/chan/noarch/x-1.0-0.conda"


class Recorder:
    """The part of granian's RSGI protocol the store uses, recording what is sent."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()

    def response_stream(self, status, headers):
        self.status, self.headers = status, headers
        return self

    async def send_bytes(self, data: bytes) -> None:
        self.body += data

    def response_bytes(self, status, headers, data):
        self.status, self.headers = status, headers
        self.body += data

    def response_empty(self, status, headers):
        self.status, self.headers = status, headers


async def until(condition, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)  # poll interval, bounded by the deadline


def fetching_elsewhere(store: Store) -> tuple[int, Path, str]:
    """Play another worker that is fetching the entry: its lock held, its partial file."""
    final = store.final_path(URL_PATH)
    os.makedirs(os.path.dirname(final))
    lock = os.open(lock_path(final), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    part = part_path(Path(final))
    part.write_bytes(b"a" * 100)
    return lock, part, final


def test_a_reader_holds_back_the_last_byte_until_the_entry_is_verified(tmp_path):
    store = Store(str(tmp_path), None, Stats(str(tmp_path)), None)
    lock, part, final = fetching_elsewhere(store)
    recorder = Recorder()

    async def run():
        task = asyncio.create_task(store.serve("GET", URL_PATH, Wanted("http://x.invalid/x", 200),
                                               {}, recorder))
        await until(lambda: len(recorder.body) == 100)
        with open(part, "ab") as f:
            f.write(b"b" * 100)
        await until(lambda: len(recorder.body) == 199)
        assert not task.done()  # the last byte waits for the rename
        os.rename(part, final)
        os.close(lock)
        return await asyncio.wait_for(task, 10)

    handled = asyncio.run(run())
    assert handled.sent == 200 and bytes(recorder.body) == b"a" * 100 + b"b" * 100
    assert ("content-length", "200") in recorder.headers and handled.note == "MISS"


def test_a_reader_never_spins_when_the_verified_file_has_another_size(tmp_path):
    """A reader that expects 200 bytes (a newer index) while the fetch verified 100 (the
    older one) cuts its connection instead of waiting for bytes that never come."""
    store = Store(str(tmp_path), None, Stats(str(tmp_path)), None)
    lock, part, final = fetching_elsewhere(store)
    recorder = Recorder()

    async def run():
        task = asyncio.create_task(store.serve("GET", URL_PATH, Wanted("http://x.invalid/x", 200),
                                               {}, recorder))
        await until(lambda: len(recorder.body) == 100)
        os.rename(part, final)
        os.close(lock)
        return await asyncio.wait_for(task, 10)

    handled = asyncio.run(run())
    assert handled.sent == 100 < 200  # content-length 200: the client sees a broken transfer


def test_a_reader_of_a_fetch_that_failed_elsewhere_ends(tmp_path):
    store = Store(str(tmp_path), None, Stats(str(tmp_path)), None)
    lock, part, _ = fetching_elsewhere(store)
    recorder = Recorder()

    async def run():
        task = asyncio.create_task(store.serve("GET", URL_PATH, Wanted("http://x.invalid/x", 200),
                                               {}, recorder))
        await until(lambda: len(recorder.body) == 100)
        part.unlink()  # what a failed fetch does, then its lock goes
        os.close(lock)
        return await asyncio.wait_for(task, 10)

    handled = asyncio.run(run())
    assert handled.sent == 100 and recorder.status == 200


class FakeUpstream:
    """Plays `upstream.Upstream` for the fetch thread: hands `body` to the sink in two
    batches, the second once `go_on` is set, and checks the size as the real one does."""

    def __init__(self, body: bytes):
        self.body = body
        self.go_on = threading.Event()
        self.settings = type("Settings", (), {"timeout": 10.0})()

    def file(self, url, sink, size, digests):
        half = len(self.body) // 2
        sink([self.body[:half]], half)
        assert self.go_on.wait(10)
        sink([self.body[half:]], len(self.body) - half)
        return len(self.body)


def test_the_fetching_client_gets_bytes_from_memory_and_is_not_held_up_by_the_fsync(
        tmp_path, monkeypatch):
    """The request that started the fetch gets what upstream sent before the fetch ends
    (even the partial file's contents are not needed), and its last byte once the body is
    verified, while the entry is still being fsynced: it is renamed into place after."""
    body = os.urandom(300_000)
    upstream = FakeUpstream(body)
    store = Store(str(tmp_path), upstream, Stats(str(tmp_path)), None)
    synced = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        assert synced.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(fetch.os, "fsync", slow_fsync)
    recorder = Recorder()
    final = Path(store.final_path(URL_PATH))

    async def run():
        task = asyncio.create_task(store.serve(
            "GET", URL_PATH, Wanted("http://x.invalid/x", len(body)), {}, recorder))
        await until(lambda: len(recorder.body) == 150_000)
        assert not task.done()
        upstream.go_on.set()
        handled = await asyncio.wait_for(task, 10)
        assert not final.exists()  # the client is done; the entry waits for its fsync
        synced.set()
        await until(final.exists)
        return handled

    handled = asyncio.run(run())
    assert handled.sent == len(body) and bytes(recorder.body) == body
    assert final.read_bytes() == body and not part_path(final).exists()


def test_a_failed_transfer_cuts_the_fetching_clients_response(tmp_path):
    """All but the last byte may have gone: the verdict decides whether the last one goes."""
    body = os.urandom(1000)

    class Corrupt(FakeUpstream):
        def file(self, url, sink, size, digests):
            sink([self.body], len(self.body))
            assert self.go_on.wait(10)
            raise UpstreamFailure("x: sha256 mismatch")

    upstream = Corrupt(body)
    store = Store(str(tmp_path), upstream, Stats(str(tmp_path)), None)
    recorder = Recorder()

    async def run():
        task = asyncio.create_task(store.serve(
            "GET", URL_PATH, Wanted("http://x.invalid/x", len(body)), {}, recorder))
        await until(lambda: len(recorder.body) == len(body) - 1)
        assert not task.done()  # the last byte waits for the verdict
        upstream.go_on.set()
        return await asyncio.wait_for(task, 10)

    handled = asyncio.run(run())
    assert handled.sent == len(body) - 1 and ("content-length", "1000") in recorder.headers
    final = Path(store.final_path(URL_PATH))
    assert not final.exists() and not part_path(final).exists()


def test_the_feed_makes_the_fetch_wait_for_a_slow_client_and_drops_a_stuck_one():
    async def run():
        loop = asyncio.get_running_loop()
        feed = Feed(loop, timeout=30.0, limit=10)
        put = loop.run_in_executor(None, feed.put, [b"x" * 20], 20)
        chunks, verdict = await feed.take()
        assert chunks == [b"x" * 20] and verdict is None
        await asyncio.wait_for(put, 10)  # the take made room: the fetch goes on
        stuck = Feed(loop, timeout=0.05, limit=10)
        await loop.run_in_executor(None, stuck.put, [b"y" * 20], 20)  # nobody takes
        assert stuck.closed
        _, verdict = await stuck.take()
        assert isinstance(verdict, ClientTooSlow)
        stuck.put([b"z"], 1)  # a closed feed takes nothing more, and never blocks
        stuck.finish(True)
        assert (await stuck.take())[1] is verdict

    asyncio.run(run())
