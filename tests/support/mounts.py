"""Real filesystem faults for tests that run as root (root ignores permission bits, so a
chmod proves nothing): a small tmpfs that really fills up (ENOSPC), and a read-only bind
mount of a folder (EROFS). `Mounts.unmount_all` undoes them, newest first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PAGE = 4096  # tmpfs allocates whole pages


class Mounts:
    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)

    def tmpfs(self, folder: Path, size: int) -> Path:
        """Mount a tmpfs of `size` bytes (a whole number of pages) on `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
        self.mounted.append(folder)
        return folder

    def read_only(self, folder: Path) -> Path:
        """Bind `folder` onto itself, read-only: writes in it fail with EROFS."""
        self._mount("--bind", str(folder), str(folder))
        self.mounted.append(folder)
        self._mount("-o", "remount,bind,ro", str(folder))
        return folder

    def unmount_all(self) -> None:
        while self.mounted:
            subprocess.run(["umount", "-l", str(self.mounted.pop())], check=False,
                           capture_output=True)


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def fill(folder: Path, leave: int) -> Path:
    """Write a filler file so that exactly `leave` bytes (whole pages) stay free."""
    filler = folder / "filler"
    size = free_bytes(folder) - leave
    assert size >= 0 and size % PAGE == 0 and leave % PAGE == 0, (size, leave)
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * size)  # written, not sparse: tmpfs counts written pages
        handle.flush()
        os.fsync(handle.fileno())
    assert free_bytes(folder) == leave, (free_bytes(folder), leave)
    return filler


def pages_of(size: int) -> int:
    """Bytes a file of `size` bytes takes on tmpfs."""
    return -(-size // PAGE) * PAGE
