"""A bundle's payload: one tar stream (POSIX pax format, regular files only) cut into
volumes of at most a chosen size, `bundle.tar.001`, `bundle.tar.002`, ... A member larger
than a volume simply continues in the next one, so any volume size works and every volume
but the last is exactly that size. `cat bundle.tar.* | tar -tv` lists the members.

`VolumeWriter` is the file object the tar stream is written to: it opens the next volume
when one is full and hashes each as it goes. `VolumeReader` reads the volumes back as one
stream, checking that each has the size and sha256 the manifest gives the moment its last
byte is read, so a damaged volume is named whichever member its damage falls in.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from .manifest import BundleRefused, Volume, volume_name


class VolumeWriter:
    """A write-only file object that spreads what is written over volumes in `folder`."""

    def __init__(self, folder: Path, volume_size: int | None):
        self.folder = folder
        self.volume_size = volume_size
        self.volumes: list[Volume] = []
        self._handle: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._handle is None:
                self._open()
            room = len(view) if self.volume_size is None else self.volume_size - self._written
            chunk = view[:room]
            self._handle.write(chunk)
            self._digest.update(chunk)
            self._written += len(chunk)
            view = view[len(chunk):]
            if self.volume_size is not None and self._written >= self.volume_size:
                self._finish()
        return len(data)

    def _open(self) -> None:
        name = volume_name(len(self.volumes))
        self._handle = open(self.folder / name, "wb")  # noqa: SIM115 - closed by _finish
        self._digest = hashlib.sha256()
        self._written = 0
        self.volumes.append(Volume(name, 0, ""))

    def _finish(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        last = self.volumes[-1]
        last.size, last.sha256 = self._written, self._digest.hexdigest()

    def close(self) -> None:
        """Finish the last volume (an empty stream still gets one volume)."""
        if self._handle is None and not self.volumes:
            self._open()
        if self._handle is not None:
            self._finish()

    def abandon(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def check_volumes_present(folder: Path, volumes: list[Volume]) -> None:
    """Every volume is there with its size (cheap: before anything is read)."""
    for volume in volumes:
        path = folder / volume.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BundleRefused(f"volume {path} is missing; copy every volume the manifest "
                                "names into the bundle folder") from None
        if size != volume.size:
            raise BundleRefused(f"volume {path} is damaged: {size} bytes, the manifest "
                                f"says {volume.size}; nothing was published")


class VolumeReader:
    """The volumes of `folder`, read as one stream; each is checked when it ends."""

    def __init__(self, folder: Path, volumes: list[Volume]):
        self.folder = folder
        self.volumes = volumes
        self.index = -1  # the volume being read
        self._handle: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._left = 0
        self._next()

    @property
    def current(self) -> Path:
        return self.folder / self.volumes[min(self.index, len(self.volumes) - 1)].name

    def _next(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.index += 1
        if self.index < len(self.volumes):
            volume = self.volumes[self.index]
            self._handle = open(self.folder / volume.name, "rb")  # noqa: SIM115
            self._digest = hashlib.sha256()
            self._left = volume.size

    def _check_current(self) -> None:
        volume = self.volumes[self.index]
        if self._digest.hexdigest() != volume.sha256:
            raise BundleRefused(f"volume {self.folder / volume.name} is damaged: its sha256 "
                                "is not the one the manifest gives; nothing was published")

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while (size < 0 or len(out) < size) and self._handle is not None:
            want = self._left if size < 0 else min(self._left, size - len(out))
            data = self._handle.read(want)
            if not data and want:
                raise BundleRefused(f"volume {self.current} is shorter than the manifest "
                                    "says; nothing was published")
            self._digest.update(data)
            self._left -= len(data)
            out += data
            if self._left == 0:
                self._check_current()
                self._next()
        return bytes(out)

    def drain(self) -> None:
        """Read the rest of the current volume, raising if it is damaged: called when a
        member fails its check, since every volume before it has passed."""
        index = self.index
        while self._handle is not None and self.index == index:
            self.read(min(self._left, 1 << 20))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
