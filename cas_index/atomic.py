"""Atomic file replacement: a reader sees the old file or the new one, never a mix.

Every file this project publishes goes through here: it is written to a hidden temporary
name in the same folder (same filesystem, so the rename is atomic), flushed, given the
usual 0644-style permissions (mkstemp would leave 0600, which a web server cannot read),
and renamed over the final name. `write_if_changed` leaves an identical file alone so its
mtime, and the ETag/Last-Modified a server derives from it, stay valid. `write_all` is
the loop every write to a bare descriptor in the project goes through (os.write may take
only part of a buffer).
"""

from __future__ import annotations

import os
from itertools import count

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from pathlib import Path

TEMP_PREFIX = ".tmp-"


_SERIAL = count()  # temporary names of this process (next() is atomic in CPython)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | \
    getattr(os, "O_NOFOLLOW", 0)


def temp_path_for(path: Path) -> tuple[int, Path]:
    """An open descriptor and hidden temporary path beside `path`, on the same filesystem:
    `.tmp-NAME.PID.N`, created exclusively (O_EXCL: never an existing file or a symlink;
    a name a killed process left is skipped) with the usual permissions. Not mkstemp:
    its random names and extra chmod cost more than the write of a small shard, and a
    sync writes hundreds of those."""
    from pathlib import Path

    fd, tmp = open_temp(os.fspath(path))
    return fd, Path(tmp)


def open_temp(path: str) -> tuple[int, str]:
    """`temp_path_for` on text paths (no Path objects: a sync writes thousands of shard
    files, and making Paths cost more than the writes)."""
    folder, name = os.path.split(path)
    prefix = os.path.join(folder, f"{TEMP_PREFIX}{name}.{os.getpid()}.")
    while True:
        tmp = f"{prefix}{next(_SERIAL)}"
        try:  # 0o666 less the umask, as a web server expects to read it
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to the descriptor `fd` (os.write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` atomically. An OSError of the write that names no file
    (a write to a descriptor names none) names `path`: the file the user knows of, not
    its hidden temporary twin."""
    path = os.fspath(path)
    fd, tmp = open_temp(path)
    try:
        try:
            write_all(fd, data)  # (not a file object: less work per small file)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_if_present(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def remove_if_present(path: str) -> None:
    """Delete the file at `path`; nothing to do when there is none. (Not
    contextlib.suppress: contextlib is not imported on the warm path.)"""
    try:  # noqa: SIM105
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_if_changed(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> bool:
    """Write atomically unless the file already holds exactly `data`. True when written."""
    path = os.fspath(path)
    try:
        if os.stat(path).st_size == len(data):
            with open(path, "rb") as f:
                if f.read() == data:
                    return False
    except FileNotFoundError:
        pass
    write_atomic(path, data, fsync=fsync)
    return True
