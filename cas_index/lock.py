"""The channel lock: one cas-index run per channel at a time.

An exclusive `fcntl.flock` on `<channel>/.cas-index.lock`, held for the whole run, covers
the channel root and every platform folder in it (indexing one platform folder takes the
lock of its channel, since channeldata.json is shared). The kernel drops the lock when
the process ends, however it ends, so a killed run never leaves a stale lock. The file
holds the pid of the holder, for the message a waiting run prints. The file itself is
never deleted: deleting a lock file that another process has open would let a third run
lock a different file under the same name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from .errors import LockHeldError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

LOCK_FILE = ".cas-index.lock"
POLL_SECONDS = 0.1


class ChannelLock:
    """`with ChannelLock(root, timeout=600):` waits up to `timeout` seconds (0: not at all)
    for another run to finish, then raises LockHeldError."""

    def __init__(self, root: str | Path, timeout: float = 600.0,
                 on_wait: Callable[[str], None] | None = None):
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, LOCK_FILE)
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> ChannelLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # the caller says the disk is full
            raise UsageError(f"{self.root}: cannot create the lock file "
                             f"{LOCK_FILE} ({exc.strerror})") from None
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder(fd)
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f" after waiting {self.timeout:g} s" if self.timeout else ""
                    raise LockHeldError(
                        f"{self.root}: another cas-index run{holder} is indexing this "
                        f"channel{waited}; try again later (--lock-timeout SECONDS waits "
                        "longer)") from None
                if not announced and self.on_wait is not None:
                    self.on_wait(f"waiting for another cas-index run{holder} to finish with "
                                 f"{self.root} (up to {self.timeout:g} s)")
                    announced = True
                time.sleep(POLL_SECONDS)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: name the file, let go of the lock
            os.close(fd)
            raise OSError(exc.errno, exc.strerror, self.path) from None
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            pid = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
