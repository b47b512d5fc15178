"""`Storage` on a local folder: the same operations as a bucket, with the filesystem's
guarantees (temporary name in the same folder, fsync, rename).

Conditional writes compare the ETag the server would send for the file (inode, mtime,
size) and run under an advisory lock on `<root>/.cas-storage.lock`, so two processes
using this class cannot both win; writers that do not use it are not excluded (the
commands keep their own lock on the tree as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .base import (
    NEW,
    Body,
    Conflict,
    Folder,
    ObjectInfo,
    StorageAccessError,
    join_key,
    write_file_atomically,
)

LOCK_NAME = ".cas-storage.lock"
_CHUNK = 1024 * 1024


def file_etag(st: os.stat_result) -> str:
    """The entity tag of a file, as cas-server sends it."""
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'


class LocalStorage:
    """The tree under the folder `root`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def check_access(self) -> None:
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise StorageAccessError(f"{self.root} {what}")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageAccessError(f"cannot read {self.root} (permission denied)")

    def _path(self, key: str) -> Path:
        key = join_key(key)
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"not a key: {key!r}")
        return self.root / key

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key, st.st_size, file_etag(st), st.st_mtime)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return self._info(key, st) if not os.path.isdir(self._path(key)) else None

    def read(self, key: str) -> tuple[bytes, ObjectInfo] | None:
        try:
            with open(self._path(key), "rb") as file:
                return file.read(), self._info(key, os.fstat(file.fileno()))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._path(prefix) if join_key(prefix) else self.root
        for folder, folders, files in os.walk(base):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            relative = os.path.relpath(folder, self.root)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                with contextlib.suppress(FileNotFoundError):
                    yield self._info(key, os.stat(os.path.join(folder, name)))

    def has_any(self, prefix: str) -> bool:
        return next(self.list(prefix), None) is not None

    def list_folder(self, prefix: str) -> Folder:
        base = self._path(prefix) if join_key(prefix) else self.root
        folders, objects = [], []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(base) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry.name)
                elif entry.is_file():
                    objects.append(self._info(join_key(prefix, entry.name), entry.stat()))
        return Folder(sorted(folders), sorted(objects, key=lambda o: o.key))

    async def get_async(self, key: str, start: int | None = None,
                        end: int | None = None) -> Body | None:
        try:
            file = open(self._path(key), "rb")  # noqa: SIM115 - closed by the chunk iterator
        except (FileNotFoundError, IsADirectoryError):
            return None
        info = self._info(key, os.fstat(file.fileno()))
        first = start or 0
        last = info.size - 1 if end is None else min(end, info.size - 1)
        length = max(0, last - first + 1)

        async def chunks():
            with file:
                sent = 0
                while sent < length:
                    data = os.pread(file.fileno(), min(_CHUNK, length - sent), first + sent)
                    if not data:
                        break
                    sent += len(data)
                    yield data

        return Body(info, first, length, chunks())

    def download(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            source = open(self._path(key), "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError):
            return None
        with source:
            info = self._info(key, os.fstat(source.fileno()))
            write_file_atomically(path, iter(lambda: source.read(_CHUNK), b""))
        return info

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as source:
            self._write(target, lambda out: shutil.copyfileobj(source, out, _CHUNK))
        return self._info(key, target.stat())

    def put_bytes(self, key: str, data: bytes, expect: str | None = None) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if expect is None:
            self._write(target, lambda out: out.write(data))
            return self._info(key, target.stat())
        with self._locked():
            current = self.head(key)
            if (expect == NEW and current is not None) or (
                    expect != NEW and (current is None or current.etag != expect)):
                raise Conflict(f"{target} was changed by another writer while this run was "
                               "working on it; it stopped without overwriting it")
            self._write(target, lambda out: out.write(data))
            return self._info(key, target.stat())

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _write(self, target: Path, fill) -> None:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
