"""The package cache's reader protocol on its own, with the test playing the worker that
fetches (holding the entry's flock and growing the partial file) and a recording RSGI
protocol in place of granian: what a reader sends, and that it always ends."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

from cas_mirror.net import part_path
from cas_mirror.server.proxy.stats import Stats
from cas_mirror.server.proxy.store import Store, Wanted, lock_path

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
