"""What this machine's runs published into a bucket tree, so that a run needs no LIST:
key (below the tree, `web/...`) -> size, sha256 of the bytes sent, and the ETag the
bucket answered. A page is rewritten only when its bytes changed, with If-Match on the
ETag recorded here (If-None-Match when there is none); a distribution file is in place
when its key is here with the size and sha256 upstream's index gives.

Kept in the state folder as `published.json` plus an append-only `published.journal` of
the changes since (one JSON line per put or delete, written as each object lands), so a
killed run loses nothing it published: the next run replays the journal and its
conditional writes still match. `save` folds the journal into the file. `--verify`
replaces the whole with one LIST of the bucket (`adopt_listing`).

The entries are the conda side's `storage.inventory.Entry`; what differs is how they
are kept (a journal of each object as it lands here, batch saves there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import msgspec

from cas_index.atomic import write_if_changed

from ..storage.inventory import Entry

log = logging.getLogger(__name__)

FILE = "published.json"
JOURNAL = "published.journal"
VERSION = 1


def entry(size: int, sha256: str | None, etag: str) -> Entry:
    """The entry of one published object, in this file's order (size, sha256, ETag);
    sha256 is None when --verify listed it and this machine does not know its bytes."""
    return Entry(size, etag, sha256)


class Inventory:
    """The published objects of one bucket tree (thread-safe: uploads record from worker
    threads)."""

    def __init__(self, folder: Path, entries: dict[str, Entry] | None = None):
        self.folder = folder
        self.entries: dict[str, Entry] = entries or {}
        self.lock = threading.Lock()
        self._journal = None
        self.dirty = False

    @classmethod
    def load(cls, folder: Path) -> Inventory:
        entries: dict[str, Entry] = {}
        try:
            data = msgspec.json.decode((folder / FILE).read_bytes())
            if isinstance(data, dict) and data.get("version") == VERSION:
                entries = {k: entry(*v) for k, v in data["objects"].items()}
        except (OSError, msgspec.DecodeError, KeyError, TypeError):
            entries = {}
        inventory = cls(folder, entries)
        replayed = inventory._replay()
        if replayed:
            inventory.dirty = True
            log.info("replayed %d changes from %s (a run that did not finish)", replayed,
                     folder / JOURNAL)
        return inventory

    def _replay(self) -> int:
        try:
            lines = (self.folder / JOURNAL).read_bytes().splitlines()
        except OSError:
            return 0
        count = 0
        for line in lines:
            try:
                kind, key, *rest = msgspec.json.decode(line)
            except (msgspec.DecodeError, ValueError, TypeError):
                continue  # the last line of a killed run may be cut short
            if kind == "put" and len(rest) == 3:
                self.entries[key] = entry(*rest)
            elif kind == "del":
                self.entries.pop(key, None)
            count += 1
        return count

    def get(self, key: str) -> Entry | None:
        with self.lock:
            return self.entries.get(key)

    def keys_under(self, prefix: str) -> list[str]:
        with self.lock:
            return sorted(k for k in self.entries if k.startswith(prefix))

    def put(self, key: str, entry: Entry) -> None:
        with self.lock:
            self.entries[key] = entry
            self._log(["put", key, entry.size, entry.sha256, entry.etag])

    def drop(self, key: str) -> None:
        with self.lock:
            if self.entries.pop(key, None) is not None:
                self._log(["del", key])

    def adopt_listing(self, listed: Iterable[tuple[str, int, str]]) -> None:
        """--verify: the bucket's own listing (key, size, ETag) becomes the inventory; an
        object whose ETag and size still match keeps its recorded sha256."""
        with self.lock:
            fresh = {}
            for key, size, etag in listed:
                old = self.entries.get(key)
                keep = old is not None and old.etag == etag and old.size == size
                fresh[key] = old if keep else entry(size, None, etag)
            self.entries = fresh
            self.dirty = True

    def _log(self, record: list) -> None:
        self.dirty = True
        if self._journal is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._journal = open(self.folder / JOURNAL, "ab")  # noqa: SIM115 - closed in save
        self._journal.write(msgspec.json.encode(record) + b"\n")
        self._journal.flush()  # in the kernel: a killed process loses nothing

    def save(self) -> None:
        """Fold the journal into `published.json` (written atomically), then drop it."""
        with self.lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if not self.dirty:
                return
            data = {"version": VERSION,
                    "objects": {k: [e.size, e.sha256, e.etag]
                                for k, e in sorted(self.entries.items())}}
            write_if_changed(self.folder / FILE, msgspec.json.encode(data))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / JOURNAL)
            self.dirty = False
