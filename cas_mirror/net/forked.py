"""Worker processes started with a bare `os.fork()` (processes.py, when the caller has a
single thread): a pipe of marshalled messages to the parent and a stop flag in shared
memory. The same interface as multiprocessing's Process, Connection and Event, for the
parts the download uses, without importing multiprocessing (with pickle, socket,
subprocess, tempfile and random: about 25 ms of every large sync's start, on these
machines).

Messages are built-in values (tuples, lists, str, int, bool, None), written as a 4-byte
length and the `marshal` bytes; a reader gets EOFError once every writer is closed.
"""

from __future__ import annotations

import marshal
import mmap
import os
import select
import signal
import sys
import time

from cas_index.atomic import write_all

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_LENGTH = 4


class Writer:
    """The child's end of the pipe."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, message: Any) -> None:
        data = marshal.dumps(message)
        write_all(self.fd, len(data).to_bytes(_LENGTH, "big") + data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Reader:
    """The parent's end of the pipe: whole messages, read as they were sent (nothing is
    read ahead, so a poll on `fileno()` says whether one is waiting)."""

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> Any:
        length = int.from_bytes(self._exactly(_LENGTH), "big")
        return marshal.loads(self._exactly(length))

    def _exactly(self, n: int) -> bytes:
        chunks, missing = [], n
        while missing:
            chunk = os.read(self.fd, missing)
            if not chunk:
                raise EOFError("the worker closed its pipe")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class StopFlag:
    """A stop flag every process forked after it was made sees (one shared byte)."""

    def __init__(self) -> None:
        self.map = mmap.mmap(-1, 1)  # anonymous and shared: children see its writes

    def is_set(self) -> bool:
        return self.map[0] == 1

    def set(self) -> None:
        self.map[0] = 1


class Child:
    """A forked worker, as the parent waits for it."""

    def __init__(self, pid: int):
        self.pid = pid
        self.status: int | None = None  # once reaped

    def is_alive(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is None

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def terminate(self) -> None:
        if self.is_alive():  # (unreaped, so its pid is still its own, even if it exited)
            os.kill(self.pid, signal.SIGTERM)


def start(target: Callable[..., None], *args: Any) -> tuple[Child, Reader]:
    """Fork a child that runs `target(*args, writer)` and exits; the parent keeps the
    reading end. The child never returns into the caller's code, runs no exit handlers
    and flushes none of the parent's buffers (os._exit)."""
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # what the child would write out again
        if stream is not None:
            stream.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            target(*args, Writer(write_fd))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return Child(pid), Reader(read_fd)


def ready(readers: list) -> list:
    """The readers among `readers` (objects with fileno()) with a message or an end of
    file waiting; blocks until there is one."""
    poller = select.poll()
    by_fd = {}
    for reader in readers:
        by_fd[reader.fileno()] = reader
        poller.register(reader.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    return [by_fd[fd] for fd, _ in poller.poll()]
