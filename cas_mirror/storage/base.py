"""The storage interface: what the code above it may do with a tree, whatever holds it.

A tree is a set of objects named by keys (``conda-forge/linux-64/repodata.json``: relative,
``/``-separated, no leading slash). The operations are the few the mirror needs, each with
the guarantee the filesystem code already gives:

- `put_file`: publish a file that was verified locally under its final key; the object
  appears whole or not at all (rename on disk; a single PUT or a completed multipart upload
  in a bucket), so no unverified or partial object is ever visible under a final name.
- `put_bytes`: replace a metadata object, optionally on a condition: ``expect=NEW`` (the
  key must not exist, If-None-Match: *) or ``expect=<etag>`` (the object must still be the
  one read, If-Match). A lost race raises `Conflict`, which another writer caused.
- `read`, `head`, `delete`, `list` (every object under a prefix), `list_folder` (one level,
  for listings), and `get_async` for serving (one request gives the validators and the
  body, so a replaced object reaches a client whole, old or new).

Errors the user can act on are `CasError`s: `StorageAccessError` (credentials, bucket,
endpoint: exit 2), `StorageError` (the service kept failing after the retries: exit 1),
`Conflict` (another writer won: exit 3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import Conflict, StorageAccessError, StorageError

__all__ = ["NEW", "Body", "Conflict", "Folder", "ObjectInfo", "Storage",
           "StorageAccessError", "StorageError", "join_key", "write_file_atomically"]

# `put_bytes(expect=NEW)`: create the key only if no object holds it.
NEW = "*"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object: its key, size in bytes, entity tag (quoted, as HTTP sends it) and
    modification time (seconds since the epoch)."""

    key: str
    size: int
    etag: str
    modified: float


@dataclass(frozen=True, slots=True)
class Folder:
    """One level below a prefix: sub-folder names (without '/') and the objects there."""

    folders: list[str]
    objects: list[ObjectInfo]


@dataclass
class Body:
    """An object being read: its `info`, the byte range sent (`start`, `length`) and the
    body as an async iterator of chunks (the caller consumes or closes it)."""

    info: ObjectInfo
    start: int
    length: int
    chunks: AsyncIterator[bytes]


class Storage(Protocol):
    """A tree of objects (see the module docstring)."""

    def describe(self, key: str = "") -> str:
        """How to name `key` (or the tree itself) in a message: a path or an s3:// URL."""
        ...

    def check_access(self) -> None:
        """Fail now, with a `StorageAccessError`, when the tree cannot be read."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def read(self, key: str) -> tuple[bytes, ObjectInfo] | None:
        """The object's bytes and info, or None when there is no such key."""
        ...

    def download(self, key: str, path: Path) -> ObjectInfo | None:
        """Copy the object to the file `path` (through a temporary name beside it, fsynced,
        renamed; never whole in memory); None when there is no such key."""
        ...

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Publish the verified file `path` under `key` (whole or not at all)."""
        ...

    def put_bytes(self, key: str, data: bytes, expect: str | None = None) -> ObjectInfo:
        """Write `data` under `key`; `expect` is None (unconditional), NEW or an ETag read
        earlier. Raises `Conflict` when the condition does not hold."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a folder prefix ends with '/')."""
        ...

    def has_any(self, prefix: str) -> bool:
        """Whether any object's key starts with the folder `prefix` (one short request)."""
        ...

    def list_folder(self, prefix: str) -> Folder:
        """One level of the tree below the folder `prefix` ('' or ending with '/')."""
        ...

    async def get_async(self, key: str, start: int | None = None,
                        end: int | None = None) -> Body | None:
        """Read `key` (bytes `start`..`end` inclusive when given); None when missing."""
        ...


def write_file_atomically(path: Path, chunks) -> None:
    """Write the byte chunks to `path` through a temporary name in its folder (fsync,
    rename), so no half-written file is ever visible under the final name."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def join_key(*parts: str) -> str:
    """Keys joined with '/', empty parts dropped (`join_key('', 'a/', 'b')` == 'a/b')."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
