"""Free disk space: the guard that stops downloads before the disk fills."""

from __future__ import annotations

import threading
from pathlib import Path

from .types import DiskFull


class FreeSpaceGuard:
    """Stops downloads before `folder` would have less than `minimum` bytes free.

    The filesystem is asked again only when the bytes announced since the last look could
    have used up the margin it showed, so thousands of small files cost a few statvfs calls.
    """

    def __init__(self, folder: Path, minimum: int):
        self.folder = Path(folder)
        self.minimum = minimum
        self._margin = -1  # bytes we may still take before looking again
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # for download processes: the lock stays behind
        return {"folder": self.folder, "minimum": self.minimum}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["minimum"])

    def check(self, incoming: int) -> None:
        with self._lock:
            if incoming <= self._margin:
                self._margin -= incoming
                return
            import shutil  # (with its compression modules: only once a file is downloaded)

            free = shutil.disk_usage(self.folder).free
            if free - incoming < self.minimum:
                raise DiskFull(
                    f"not enough free space in {self.folder}: {human_bytes(free)} free, "
                    f"{human_bytes(incoming)} to download, minimum_free_space is "
                    f"{human_bytes(self.minimum)}", "not enough free space")
            # Look again after a tenth of the spare room (others may write here too).
            self._margin = (free - incoming - self.minimum) // 10


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"

