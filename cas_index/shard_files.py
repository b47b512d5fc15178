"""Publishing a platform's shards (CEP-16; shards.py has the format and derives them) in
its folder, beside `repodata.json`, in the order that keeps every client consistent:
shards first (each to a temporary name, then renamed; an existing shard is never
rewritten, only a file whose size is wrong is repaired), then the index, atomically and
only when its content (ignoring `created_at`) changed, so HTTP caches stay valid. (A sync
writes the shard files sooner, while its packages download, `stage_shards`: no index names
them until then.) Then garbage: a shard the index no longer names may still be wanted by a
client holding an older index, so it is deleted only once it has been unnamed for the
grace period (default 7 days); one staged for a document that was not published is
deleted at once.

When a shard became unnamed is recorded in a small state file that is never served (the
caller chooses where: cas-index keeps it in `<platform>/.cache/`, cas-sync in its
`.cas-sync/` state folder), because nothing on disk tells it otherwise: a shard's mtime
is when it was written, not when the index dropped it. The record is written after the
index that dropped the shard, and every gap errs towards keeping: a shard unnamed with no
record (the run was killed between the two writes, or the record was lost or unreadable)
counts as unnamed from now. So a shard can outlive its grace period, never fall short of
it. The same record holds the sha256 of the document the shards were derived from and the
stat of the index and of `shards/`: when all match, a run has nothing to derive.

Shards are written without fsync (thousands of them; fsync costs ~1 ms each on a VM disk);
the index and the record are fsynced. A shard torn by a power loss has the wrong size and
is rewritten by the next run that derives the shards (the document changed, or `force`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .atomic import TEMP_PREFIX, write_atomic, write_if_changed
from .cache import CACHE_DIR
from .layout import SHARD_INDEX, SHARDS_DIR
from .plain import Plain
from .shards import (
    SHARD_SUFFIX,
    DerivedShards,
    decode_index,
    encode_index,
    index_content,
    is_shard_file,
    iter_shards,
    subdir_and_base,
)

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 7 * 24 * 3600.0


class ShardCounts(Plain):
    """What publishing the shards of one platform did."""
    _fields = (
        "written", "kept", "deleted", "waiting", "index_written", "index_deleted", "named",
        "oldest_unnamed", "paths")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "written": 0, "kept": 0, "deleted": 0, "waiting": 0, "index_written": False,
        "index_deleted": False, "named": 0, "oldest_unnamed": None, "paths": list}
    _factories: ClassVar[frozenset] = frozenset({"paths"})
    if TYPE_CHECKING:
        written: int  # shard files written (new names, or repaired)
        kept: int  # named shards already in place, left alone
        deleted: int  # unnamed shards past their grace period, deleted
        waiting: int  # unnamed shards still within their grace period
        index_written: bool
        index_deleted: bool  # shards turned off: the index was removed
        named: int  # shards the published index names
        oldest_unnamed: float | None  # epoch s: when the longest-waiting shard was dropped
        paths: list[Path]  # files created or replaced

    def as_dict(self) -> dict[str, int | bool]:
        return {"written": self.written, "kept": self.kept, "deleted": self.deleted,
                "waiting": self.waiting, "index_written": self.index_written}


def stage_shards(folder: str | os.PathLike, derived: DerivedShards) -> frozenset[str]:
    """Write the shard files of `derived` that `folder/shards/` lacks, ahead of publishing
    its document (a sync, while its packages download): no index names them yet, so no
    client can see them. Returns the file names written, for `write_shards(staged=)`,
    which counts them as written by the run and deletes at once those the document it
    publishes does not name. A failure removes what it had written."""
    shards_dir = os.path.join(folder, SHARDS_DIR)  # (text paths: thousands of files)
    with contextlib.suppress(FileExistsError):
        os.mkdir(shards_dir)
    present = _shard_files(shards_dir)
    written: list[str] = []
    try:
        for shard in derived.shards:
            if present.get(shard.filename) != len(shard.data):
                write_atomic(os.path.join(shards_dir, shard.filename), shard.data,
                             fsync=False)
                written.append(shard.filename)
    except BaseException:
        for filename in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(shards_dir, filename))
        raise
    return frozenset(written)


def write_shards(folder: str | os.PathLike, data: bytes, *,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 now: float | None = None, force: bool = False,
                 state_dir: str | os.PathLike | None = None,
                 derived: DerivedShards | None = None,
                 staged: frozenset[str] = frozenset()) -> ShardCounts:
    """Publish the shards and shard index of the document `data` in `folder`, then delete
    the shards unnamed for longer than `grace_seconds` (see the module docstring). The
    state file goes in `state_dir` (default `<folder>/.cache`). With `force`, derive and
    check every shard even when the state says nothing changed. `derived`: this
    document's shards, derived before (derive_shards); one of another document is
    ignored. `staged`: the shard files this run wrote ahead (stage_shards)."""
    folder = Path(folder)
    now = time.time() if now is None else now
    digest = hashlib.sha256(data).hexdigest()
    record = state_path(folder, state_dir)
    state = _load_state(record)
    if not force and _fresh(folder, state, digest, grace_seconds, now):
        unnamed = state["unnamed_since"]
        return ShardCounts(kept=state["named"], named=state["named"], waiting=len(unnamed),
                           oldest_unnamed=min(unnamed.values(), default=None))
    if derived is not None and derived.digest == digest:
        info, shards = derived.info, iter(derived.shards)
    else:
        info, shards = iter_shards(data)
    subdir, base_url = subdir_and_base(info, folder.name)
    shards_dir = folder / SHARDS_DIR
    shards_dir.mkdir(exist_ok=True)
    present = _shard_files(shards_dir)
    counts = ShardCounts()
    hashes: dict[str, str] = {}
    for shard in shards:
        hashes[shard.name] = shard.sha256
        path = shards_dir / shard.filename
        if present.get(shard.filename) == len(shard.data):
            if shard.filename not in staged:
                counts.kept += 1
                continue
        else:
            write_atomic(path, shard.data, fsync=False)
        counts.written += 1
        counts.paths.append(path)
    counts.named = len(hashes)
    content = index_content(hashes, subdir=subdir, base_url=base_url)
    index_path = folder / SHARD_INDEX
    if not _index_holds(index_path, content):
        write_atomic(index_path, encode_index(content, now))
        counts.index_written = True
        counts.paths.append(index_path)
    named = {sha256 + SHARD_SUFFIX for sha256 in hashes.values()}
    for filename in staged - named:  # written ahead for a document that was not published:
        (shards_dir / filename).unlink(missing_ok=True)  # no index ever named it
        present.pop(filename, None)
    unnamed = _collect(shards_dir, [f for f in present if f not in named],
                       state["unnamed_since"], grace_seconds, now, counts)
    _save_state(record, folder, digest, counts.named, unnamed)
    log.debug("%s: %d shards written, %d kept, %d deleted, %d unnamed waiting%s", folder,
              counts.written, counts.kept, counts.deleted, counts.waiting,
              "; index rewritten" if counts.index_written else "")
    return counts


def remove_shards(folder: str | os.PathLike, *,
                  grace_seconds: float = DEFAULT_GRACE_SECONDS, now: float | None = None,
                  state_dir: str | os.PathLike | None = None) -> ShardCounts:
    """Shards turned off: remove the index at once (clients fall back to repodata.json),
    and the shards once their grace period has passed (a client may hold the old index)."""
    folder = Path(folder)
    now = time.time() if now is None else now
    counts = ShardCounts()
    index_path = folder / SHARD_INDEX
    if index_path.exists():
        index_path.unlink()
        counts.index_deleted = True
    shards_dir = folder / SHARDS_DIR
    if not shards_dir.is_dir():
        return counts
    record = state_path(folder, state_dir)
    unnamed = _collect(shards_dir, list(_shard_files(shards_dir)),
                       _load_state(record)["unnamed_since"], grace_seconds, now, counts)
    if unnamed:
        _save_state(record, folder, None, 0, unnamed)
    else:
        record.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else lives there: not ours
            shards_dir.rmdir()
    return counts


def _shard_files(shards_dir: str | os.PathLike) -> dict[str, int]:
    """Shard file name -> size for the shards in `shards_dir`; temporary files a killed
    run left are removed (the caller holds the tree's lock)."""
    found: dict[str, int] = {}
    with os.scandir(shards_dir) as entries:
        for entry in entries:
            if is_shard_file(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    found[entry.name] = entry.stat().st_size
            elif entry.name.startswith(TEMP_PREFIX):
                Path(entry.path).unlink(missing_ok=True)
    return found


def _index_holds(path: Path, content: dict[str, Any]) -> bool:
    """True when the index at `path` already says `content` (its created_at aside)."""
    try:
        old = decode_index(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    info = {k: v for k, v in old["info"].items() if k != "created_at"}
    return (old.get("version") == content["version"] and info == content["info"]
            and old["shards"] == content["shards"])


def _collect(shards_dir: Path, unnamed: list[str], since: dict[str, float],
             grace_seconds: float, now: float, counts: ShardCounts) -> dict[str, float]:
    """Delete the unnamed shards whose grace period has passed; return when each of the
    others became unnamed (now, for one with no record)."""
    keep: dict[str, float] = {}
    for filename in sorted(unnamed):
        dropped = since.get(filename, now)
        if now - dropped >= grace_seconds:
            (shards_dir / filename).unlink(missing_ok=True)
            counts.deleted += 1
        else:
            keep[filename] = dropped
    counts.waiting = len(keep)
    counts.oldest_unnamed = min(keep.values(), default=None)
    return keep


# The record of the last publication (never in shards/, whose mtime it holds): the
# document's sha256, the index's and shards/'s stat, and when each unnamed shard was
# dropped. When the document, the index and shards/ are as recorded and no grace period
# has run out, there is nothing to do, and a no-op run skips re-deriving shards.
SHARD_STATE = "shards-state.json"


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def state_path(folder: Path, state_dir: str | os.PathLike | None) -> Path:
    return Path(state_dir if state_dir is not None else folder / CACHE_DIR) / SHARD_STATE


def _load_state(path: Path) -> dict[str, Any]:
    """The record; an empty one when there is none or it cannot be read (every unnamed
    shard then counts as unnamed from now: kept longer, never shorter)."""
    empty: dict[str, Any] = {"unnamed_since": {}}
    try:
        state = json.loads(path.read_bytes())
        since = state["unnamed_since"]
        state["unnamed_since"] = {k: float(v) for k, v in since.items()
                                  if isinstance(v, (int, float))}
        return state
    except FileNotFoundError:
        return empty
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: unreadable (%s); unnamed shards count as unnamed from now", path, exc)
        return empty


def _fresh(folder: Path, state: dict[str, Any], digest: str, grace_seconds: float,
           now: float) -> bool:
    unnamed = state["unnamed_since"]
    return (state.get("version") == 1 and state.get("document_sha256") == digest
            and isinstance(state.get("named"), int)
            and state.get("index") == _stat(folder / SHARD_INDEX)
            and state.get("shards") == _stat(folder / SHARDS_DIR)
            and all(now - since < grace_seconds for since in unnamed.values()))


def _save_state(path: Path, folder: Path, digest: str | None, named: int,
                unnamed: dict[str, float]) -> None:
    state = {"version": 1, "document_sha256": digest, "named": named,
             "index": _stat(folder / SHARD_INDEX), "shards": _stat(folder / SHARDS_DIR),
             "unnamed_since": unnamed}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(path, json.dumps(state, indent=1, sort_keys=True).encode())
