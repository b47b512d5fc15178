"""One run per tree: an exclusive, non-blocking `flock` on a lock file.

The kernel drops the lock when the process dies, however it dies, so a killed run never
leaves a stale lock behind. The file keeps the holder's pid and start time for the
message the second run prints.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import ConfigError, LockHeldError


class TreeLock:
    def __init__(self, path: str | os.PathLike, what: str = "cas-sync"):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> TreeLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot create the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeldError(
                f"another {self.what} run holds the lock {self.path} ({holder}); "
                "it is still running, try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
