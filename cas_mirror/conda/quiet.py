"""Knowing, from one conditional request, that a platform has nothing to do.

After a sync that published a platform with nothing failed or refused, we record a
fingerprint of everything its published state depends on:

- the program version and the effective configuration, with the size and mtime of every
  file the configuration names (lockfiles, requirement or patch files);
- the upstream validators the run ended with (`PlatformState`: URL, ETag, Last-Modified,
  the hashes of the cached upstream copies, run_exports.json's);
- the platform folder as the run left it: its inode and mtime (a file added, removed or
  renamed in it changes them) and those of its `repodata.json`.

The next run that finds upstream unchanged (304) and the same fingerprint does not parse
the cached document, filter, scan the folder or publish: it reports the counts the last
run recorded. That is what makes a no-op of a million-file mirror cost one request per
platform instead of a stat per file. A platform is quiet only when every platform of its
channel is (channeldata.json and the dependency check are per channel). A file changed in
place without touching its folder (truncated, corrupted) is not seen by this check:
`--verify` reads everything and never takes this path, nor do dry runs and `--explain`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cas_index.atomic import write_atomic
from cas_index.plain import Plain

from .. import __version__
from .state import PlatformState

QUIET_FILE = "quiet.json"
_VERSION = 1


class Recorded(Plain):
    """What the last complete run of a platform left, and the counts it reported."""

    _fields = ("fingerprint", "selected", "dropped", "up_to_date", "unsatisfied", "shards",
               "due")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"selected": 0, "dropped": 0, "up_to_date": 0,
                                 "unsatisfied": dict, "shards": None, "due": None}
    _factories: ClassVar[frozenset] = frozenset({"unsatisfied"})
    if TYPE_CHECKING:
        fingerprint: str
        selected: int
        dropped: int
        up_to_date: int
        unsatisfied: dict[str, list[str]]
        shards: dict | None
        # epoch seconds when an unnamed shard's grace period ends: a run after that
        # publishes again (to delete it) instead of being quiet
        due: float | None

    def still_quiet(self, now: float) -> bool:
        return self.due is None or now < self.due


# Keys that name what the run writes, not what it reads: their files change every run.
_NOT_INPUTS = ("mirror_dir", "diff_file")


def config_digest(values: dict[str, Any]) -> str:
    """A digest of the effective configuration and of the files it names (inputs only)."""
    values = {k: v for k, v in values.items() if k != "pypi"}  # another command's keys
    files: dict[str, list[int]] = {}

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, (str, os.PathLike)) and str(value) not in files:
            try:
                st = os.stat(value)
            except (OSError, ValueError):
                return
            if not stat.S_ISDIR(st.st_mode):
                files[str(value)] = [st.st_size, st.st_mtime_ns, st.st_ino]

    visit({k: v for k, v in values.items() if k not in _NOT_INPUTS})
    text = json.dumps([__version__, values, files], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(digest: str, state: PlatformState, folder: Path) -> str | None:
    """The platform's fingerprint now, or None when its folder or repodata is missing."""
    try:
        here, published = os.stat(folder), os.stat(folder / "repodata.json")
    except OSError:
        return None
    parts = [_VERSION, digest, state._asdict(),
             [here.st_ino, here.st_mtime_ns],
             [published.st_ino, published.st_mtime_ns, published.st_size]]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def recorded(state_folder: Path) -> Recorded | None:
    """What the last complete run recorded, or None."""
    try:
        data = json.loads((state_folder / QUIET_FILE).read_bytes())
        return Recorded(**{k: data[k] for k in Recorded._fields if k in data})
    except (OSError, ValueError, TypeError):
        return None


def record(state_folder: Path, digest: str, state: PlatformState, folder: Path,
           report, due: float | None) -> None:
    """Remember a platform a run has just published completely (report: its
    PlatformReport; due: when its oldest unnamed shard may be deleted)."""
    value = fingerprint(digest, state, folder)
    if value is None:
        return
    entry = Recorded(value, report.selected, report.dropped,
                     report.up_to_date + report.downloaded, report.unsatisfied,
                     _settled(report.shards), due)
    state_folder.mkdir(parents=True, exist_ok=True)
    write_atomic(state_folder / QUIET_FILE, json.dumps(entry._asdict()).encode(), fsync=False)


def _settled(shards: dict | None) -> dict | None:
    """A quiet run writes no shard: what the last one wrote is kept now."""
    if not shards:
        return shards
    out = dict(shards)
    out["kept"] = out.get("kept", 0) + out.get("written", 0)
    out.update(written=0, deleted=0, index_written=False)
    return out
