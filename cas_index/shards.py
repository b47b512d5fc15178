"""Sharded repodata (CEP-16) beside a platform's `repodata.json`.

Layout, as rattler and conda read it:

- `<platform>/repodata_shards.msgpack.zst`: the shard index, zstd-compressed msgpack
  `{"version": 1, "info": {"base_url", "shards_base_url", "created_at", "subdir"},
  "shards": {package name: sha256 as 32 raw bytes}}`. `base_url` ("./": the packages sit
  beside the index) and `shards_base_url` ("./shards/") are relative to the index's URL.
- `<platform>/shards/<hex sha256>.msgpack.zst`: one shard per package name, zstd-compressed
  msgpack `{"packages": {...}, "packages.conda": {...}, "removed": [...]}` holding that
  name's records exactly as `repodata.json` has them, except that `sha256` and `md5` are
  raw bytes. The name is the sha256 of the compressed file, so a client can cache a shard
  forever and a changed shard always gets a new name.

Shards are derived from the published document's bytes (`shard_document`, pure), so they
describe exactly what `repodata.json` says, patches and filters included. `write_shards`
publishes them in the order that keeps every client consistent: shards first (each to a
temporary name, then renamed; an existing shard is never rewritten, only a file whose size
is wrong is repaired), then the index, atomically and only when its content (ignoring
`created_at`) changed, so HTTP caches stay valid. Then garbage: a shard the index no longer
names may still be wanted by a client holding an older index, so it is deleted only once it
has been unnamed for the grace period (default 7 days).

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
import datetime
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .atomic import TEMP_PREFIX, write_atomic, write_if_changed
from .cache import CACHE_DIR
from .layout import SHARD_INDEX, SHARDS_DIR
from .plain import Frozen, Plain

log = logging.getLogger(__name__)

SHARD_SUFFIX = ".msgpack.zst"
INDEX_VERSION = 1
DEFAULT_GRACE_SECONDS = 7 * 24 * 3600.0
# Shards are small (a few hundred bytes to a few KB): level 3 compresses them as well as
# level 19 to within 1-2 %, and 20-100x faster (higher levels pay a large per-frame setup).
SHARD_ZSTD_LEVEL = 3
_SHARD_FILE = re.compile(r"[0-9a-f]{64}" + re.escape(SHARD_SUFFIX))


def is_shard_file(name: str) -> bool:
    """Whether `name` is the name of a shard file we write (`<sha256 hex>.msgpack.zst`)."""
    return _SHARD_FILE.fullmatch(name) is not None
_HASH_LENGTHS = {"sha256": 64, "md5": 32}
PACKAGE_KEYS = ("packages", "packages.conda")


class Shard(Frozen):
    _fields = ("name", "sha256", "data")
    __slots__ = _fields
    if TYPE_CHECKING:
        name: str  # the package name
        sha256: str  # hex sha256 of `data`: the shard's file name without SHARD_SUFFIX
        data: bytes  # zstd-compressed msgpack

    @property
    def filename(self) -> str:
        return self.sha256 + SHARD_SUFFIX


class ShardSet(Frozen):
    _fields = ("shards", "index")
    __slots__ = _fields
    if TYPE_CHECKING:
        shards: dict[str, Shard]  # package name -> its shard
        index: bytes  # repodata_shards.msgpack.zst, compressed


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

# ------------------------------------------------------------------------- pure part


def _decoder():
    """Decoders for a document with records left as raw JSON, and for a record's name
    alone (msgspec is imported here: a run with nothing to publish never needs it)."""
    import msgspec

    raw_map = dict[str, msgspec.Raw]
    document = msgspec.defstruct("Document", [
        ("info", Any, None),
        ("packages", raw_map, msgspec.field(default_factory=dict)),
        ("conda", raw_map, msgspec.field(name="packages.conda", default_factory=dict)),
        ("removed", Any, None),
    ])
    named = msgspec.defstruct("Named", [("name", Any, None)])
    return msgspec.json.Decoder(document), msgspec.json.Decoder(named)


def package_name(filename: str) -> str:
    """The package name in `<name>-<version>-<build>.<ext>`."""
    return filename.rsplit("-", 2)[0]


def _packed(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a shard holds it: keys sorted, hex `sha256`/`md5` as raw bytes (a
    value that is not a hash of the right length stays as it is)."""
    out = {key: record[key] for key in sorted(record)}
    for key, length in _HASH_LENGTHS.items():
        value = out.get(key)
        if isinstance(value, str) and len(value) == length:
            with contextlib.suppress(ValueError):
                out[key] = bytes.fromhex(value)
    return out


def unpack_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record read from a shard as `repodata.json` holds it: raw-bytes `sha256`/`md5`
    back to hex (the inverse of how shards store them; other values stay as they are)."""
    out = dict(record)
    for key in _HASH_LENGTHS:
        value = out.get(key)
        if isinstance(value, bytes):
            out[key] = value.hex()
    return out


class _Parsed(Plain):
    _fields = ("info", "groups")
    __slots__ = _fields
    if TYPE_CHECKING:
        info: dict[str, Any]
        groups: dict[str, dict[str, list]]  # name -> packages / packages.conda / removed


def _parse(data: bytes) -> _Parsed:
    """The document's info and its records grouped by package name, still as raw JSON
    slices (decoded one shard at a time later, so a large document costs little more
    memory than its bytes)."""
    decode_doc, decode_name = _decoder()
    doc = decode_doc.decode(data)
    groups: dict[str, dict[str, list]] = {}

    def group(name: str) -> dict[str, list]:
        found = groups.get(name)
        if found is None:
            found = groups[name] = {"packages": [], "packages.conda": [], "removed": []}
        return found

    for key, records in (("packages", doc.packages), ("packages.conda", doc.conda)):
        for filename, raw in records.items():
            name = decode_name.decode(raw).name
            group(name if isinstance(name, str) else package_name(filename))[key].append(
                (filename, raw))
    if isinstance(doc.removed, list):
        for filename in doc.removed:
            if isinstance(filename, str):
                group(package_name(filename))["removed"].append(filename)
    return _Parsed(doc.info if isinstance(doc.info, dict) else {}, groups)


def _shards(parsed: _Parsed) -> Iterator[Shard]:
    import msgspec
    import zstandard

    compress = zstandard.ZstdCompressor(level=SHARD_ZSTD_LEVEL).compress
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.json.decode
    for name in sorted(parsed.groups):
        parts = parsed.groups[name]
        shard: dict[str, Any] = {
            key: {fn: _packed(decode(raw)) for fn, raw in sorted(parts[key])}
            for key in PACKAGE_KEYS}
        shard["removed"] = sorted(set(parts["removed"]))
        packed = compress(encode(shard))
        yield Shard(name, hashlib.sha256(packed).hexdigest(), packed)


def index_content(hashes: dict[str, str], *, subdir: str,
                  base_url: str = "./") -> dict[str, Any]:
    """The shard index for package name -> hex sha256, without `created_at` (added when
    it is written, so two indexes naming the same shards compare equal)."""
    return {
        "version": INDEX_VERSION,
        "info": {"base_url": base_url, "shards_base_url": f"./{SHARDS_DIR}/", "subdir": subdir},
        "shards": {name: bytes.fromhex(hashes[name]) for name in sorted(hashes)},
    }


def encode_index(content: dict[str, Any], created_at: float) -> bytes:
    import msgspec
    import zstandard

    stamp = datetime.datetime.fromtimestamp(created_at, datetime.timezone.utc)
    info = {**content["info"], "created_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
    doc = {"version": content["version"], "info": dict(sorted(info.items())),
           "shards": content["shards"]}
    return zstandard.ZstdCompressor(level=SHARD_ZSTD_LEVEL).compress(
        msgspec.msgpack.encode(doc))


def decode_index(packed: bytes) -> dict[str, Any]:
    """A shard index file's content. Raises ValueError when it is not one."""
    import msgspec
    import zstandard

    try:
        doc = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(packed))
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise ValueError(f"not a shard index: {exc}") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("info"), dict)
            and isinstance(doc.get("shards"), dict)):
        raise ValueError("not a shard index: no info or shards map")
    return doc


def decode_shard(packed: bytes) -> dict[str, Any]:
    """A shard's content, hashes as raw bytes as stored."""
    import msgspec
    import zstandard

    return msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(packed))


def _subdir_and_base(info: dict[str, Any], folder_name: str) -> tuple[str, str]:
    """The index's subdir (the document's, else the folder's name) and base_url (the
    document's, else "./": the packages are beside the index)."""
    subdir, base_url = info.get("subdir"), info.get("base_url")
    return (subdir if isinstance(subdir, str) and subdir else folder_name,
            base_url if isinstance(base_url, str) and base_url else "./")


class DerivedShards(Frozen):
    """The shards of one document, derived ahead of publishing it (`derive_shards`):
    `write_shards` takes them instead of deriving again when `digest` is its document's."""
    _fields = ("digest", "info", "shards")
    __slots__ = _fields
    if TYPE_CHECKING:
        digest: str  # hex sha256 of the document
        info: dict[str, Any]
        shards: list[Shard]  # in name order


def derive_shards(data: bytes) -> DerivedShards:
    """Every shard of the document `data` (pure): the CPU part of `write_shards`, for a
    caller with a core to spare before it may publish (a sync, while its packages
    download)."""
    parsed = _parse(data)
    return DerivedShards(hashlib.sha256(data).hexdigest(), parsed.info,
                         list(_shards(parsed)))


def shard_document(data: bytes, *, created_at: float, folder_name: str = "") -> ShardSet:
    """All shards of the document `data` and the index naming them (pure). The index's
    subdir is the document's `info.subdir`, else `folder_name`."""
    parsed = _parse(data)
    subdir, base_url = _subdir_and_base(parsed.info, folder_name)
    shards = {shard.name: shard for shard in _shards(parsed)}
    content = index_content({n: s.sha256 for n, s in shards.items()}, subdir=subdir,
                            base_url=base_url)
    return ShardSet(shards, encode_index(content, created_at))


# ------------------------------------------------------------------------- publishing


def stage_shards(folder: str | os.PathLike, derived: DerivedShards) -> frozenset[str]:
    """Write the shard files of `derived` that `folder/shards/` lacks, ahead of publishing
    its document (a sync, while its packages download): no index names them yet, so no
    client can see them. Returns the file names written, for `write_shards(staged=)`,
    which counts them as written by the run and deletes at once those the document it
    publishes does not name. A failure removes what it had written."""
    shards_dir = Path(folder) / SHARDS_DIR
    shards_dir.mkdir(exist_ok=True)
    present = _shard_files(shards_dir)
    written: list[str] = []
    try:
        for shard in derived.shards:
            if present.get(shard.filename) != len(shard.data):
                write_atomic(shards_dir / shard.filename, shard.data, fsync=False)
                written.append(shard.filename)
    except BaseException:
        for filename in written:
            (shards_dir / filename).unlink(missing_ok=True)
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
        parsed = _parse(data)  # (the shards come one at a time: a big document's are many)
        info, shards = parsed.info, _shards(parsed)
    subdir, base_url = _subdir_and_base(info, folder.name)
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


def _shard_files(shards_dir: Path) -> dict[str, int]:
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
