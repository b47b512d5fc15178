"""What a sync published under one prefix of a tree, remembered locally so that the next
run knows what the bucket holds without listing it.

An `Inventory` maps names (relative to its prefix: ``numpy-1.0-0.conda``,
``shards/ab12....msgpack.zst``) to an `Entry`: size, ETag and, when this program uploaded
the bytes, their sha256. It is written by the sync after every batch of uploads (to a
temporary name, renamed), so a killed run loses at most the entries of the batch it was
uploading, which the next run uploads again.

When the file is missing or unreadable (a lost local state), `Inventory.from_listing`
rebuilds it from one LIST of the prefix; entries whose ETag did not change keep the
sha256 they had. A single-part upload's ETag is the MD5 of the bytes (`md5_of_etag`);
a multipart upload's is not (``"<hex>-<parts>"``), so for those the size is all a
listing can tell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .base import ObjectInfo, write_file_atomically

VERSION = 1
_MD5_ETAG = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{32})"?$')


@dataclass(frozen=True, slots=True)
class Entry:
    size: int
    etag: str
    sha256: str | None = None  # of the bytes uploaded; None when only listed


def md5_of_etag(etag: str) -> str | None:
    """The MD5 an ETag states (single-part uploads: S3 and compatible services), else None."""
    match = _MD5_ETAG.match(etag or "")
    return match.group(1).lower() if match else None


@dataclass
class Inventory:
    entries: dict[str, Entry] = field(default_factory=dict)
    listed: bool = False  # rebuilt from a LIST in this run (not saved)

    @classmethod
    def load(cls, path: Path) -> Inventory | None:
        """The saved inventory, or None when there is none or it cannot be read."""
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") != VERSION:
                return None
            return cls({name: Entry(int(size), str(etag), sha256)
                        for name, (size, etag, sha256) in data["entries"].items()})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def save(self, path: Path) -> None:
        data = {"version": VERSION,
                "entries": {n: [e.size, e.etag, e.sha256] for n, e in sorted(self.entries.items())}}
        write_file_atomically(path, [json.dumps(data, separators=(",", ":")).encode()])

    @classmethod
    def from_listing(cls, listing: Iterable[ObjectInfo], prefix: str,
                     previous: Inventory | None = None) -> Inventory:
        """The inventory of the objects directly or deeper under `prefix` ('a/b/'), from a
        listing; an entry of `previous` with the same ETag and size keeps its sha256."""
        known = previous.entries if previous is not None else {}
        entries = {}
        for info in listing:
            if not info.key.startswith(prefix):
                continue
            name = info.key[len(prefix):]
            before = known.get(name)
            same = before is not None and before.etag == info.etag and before.size == info.size
            entries[name] = Entry(info.size, info.etag, before.sha256 if same else None)
        return cls(entries, listed=True)
