"""Hashing a file on disk: the one definition every part uses (verifying a local package,
an upload, a staged object, an installer's payload)."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", start: int = 0) -> str:
    """The hex digest of the file at `path` (from byte `start` on), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        if start:
            handle.seek(start)
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
