"""Publishing repodata documents: `repodata.json`, its `.zst` / `.bz2` twins and its
shards.

Both the indexer and the mirror's publisher end here (`publish_repodata`). A document is
published as bytes (the caller chooses the JSON encoding); each variant is written to a
temporary name and renamed into place. When `repodata.json` already holds exactly these
bytes and the wanted variants exist, nothing is rewritten, so mtimes (and HTTP caches) stay
valid. The shards (CEP-16, shards.py) are derived from the same bytes, so they say exactly
what `repodata.json` says.
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .atomic import write_atomic
from .plain import Frozen, Plain
from .shard_files import (
    DEFAULT_GRACE_SECONDS,
    ShardCounts,
    remove_shards,
    stage_shards,
    write_shards,
)
from .shards import DerivedShards, derive_shards

# zstd level 16 is what conda-index publishes with; multithreaded compression keeps large
# documents (hundreds of MB) affordable. Below a few MB zstd cannot split the work and its
# worker threads only add overhead.
ZSTD_LEVEL = 16
ZSTD_THREADS_FROM = 8 << 20
# A document under 1 MiB (a mirror's filtered platform) at level 16 costs ~75 ms for 165 KB
# and saves a client ~3 KB over level 6, which takes ~2 ms: the cold sync of four such
# platforms spent a third of its time here. Larger documents keep level 16.
ZSTD_SMALL_LEVEL = 6
ZSTD_SMALL_BELOW = 1 << 20


def dumps_repodata(doc: dict[str, Any]) -> bytes:
    """The canonical encoding conda-index uses: sorted keys, two-space indent."""
    return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")


def compress_zst(data: bytes, level: int | None = None) -> bytes:
    """`data` as one zstd frame: at `level`, by default ZSTD_LEVEL (ZSTD_SMALL_LEVEL for a
    document under ZSTD_SMALL_BELOW)."""
    import zstandard

    if level is None:
        level = ZSTD_SMALL_LEVEL if len(data) < ZSTD_SMALL_BELOW else ZSTD_LEVEL
    threads = -1 if len(data) >= ZSTD_THREADS_FROM else 0
    return zstandard.ZstdCompressor(level=level, threads=threads).compress(data)


def _compress(suffix: str, data: bytes) -> bytes:
    return compress_zst(data) if suffix == ".zst" else bz2.compress(data, 9)


def write_repodata(
    folder: str | Path,
    data: bytes,
    *,
    name: str = "repodata.json",
    bz2_variant: bool = True,
    zst_variant: bool = True,
    packed: dict[str, bytes] | None = None,
) -> list[Path]:
    """Publish `data` as `folder/name` (+ `.zst`, `.bz2`). Returns the paths rewritten.

    Variants not wanted are removed so they can never go stale beside a new document.
    `packed`: suffix -> `data` compressed so, done before (Prepared); the rest is done here.
    """
    folder = Path(folder)
    target = folder / name
    variants = {target.with_name(name + ".zst"): zst_variant,
                target.with_name(name + ".bz2"): bz2_variant}
    written: list[Path] = []
    unchanged = _holds(target, data) and all(p.exists() for p, want in variants.items() if want)
    if not unchanged:
        ready = packed or {}
        wanted = [path for path, want in variants.items() if want]
        missing = [path.suffix for path in wanted if path.suffix not in ready]
        ready = {**ready, **dict(zip(missing, _compress_all(missing, data), strict=True))}
        for path in wanted:
            write_atomic(path, ready[path.suffix])
            written.append(path)
        write_atomic(target, data)
        written.append(target)
    for path, want in variants.items():
        if not want:
            path.unlink(missing_ok=True)
    return written


class Published(Plain):
    _fields = ("paths", "shards")
    __slots__ = _fields
    if TYPE_CHECKING:
        paths: list[Path]  # files created or replaced
        shards: ShardCounts


class Prepared(Frozen):
    """The CPU part of publishing one document, done before it may be published (a sync
    does it while the packages download): its compressed variants and its shards, and
    the shard files already written (`stage`)."""
    _fields = ("data", "packed", "shards", "staged")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"staged": frozenset()}
    if TYPE_CHECKING:
        data: bytes
        packed: dict[str, bytes]  # ".zst" / ".bz2" -> the document compressed so
        shards: DerivedShards | None
        staged: frozenset[str]  # shard files written ahead (stage_shards)

    def stage(self, folder: str | Path) -> Prepared:
        """This, with its shard files written in `folder` ahead of publishing: no index
        names them yet (stage_shards). publish_repodata counts them as its own, and
        removes those its document does not name (when another document is published)."""
        if self.shards is None:
            return self
        return self._replace(staged=stage_shards(folder, self.shards))


def prepare_repodata(data: bytes, *, shards: bool = True, bz2_variant: bool = True,
                     zst_variant: bool = True) -> Prepared:
    """What `publish_repodata` with the same switches would compute for `data` (pure)."""
    suffixes = [suffix for suffix, want in ((".zst", zst_variant), (".bz2", bz2_variant))
                if want]
    packed = dict(zip(suffixes, _compress_all(suffixes, data), strict=True))
    return Prepared(data, packed, derive_shards(data) if shards else None)


def publish_repodata(
    folder: str | Path,
    data: bytes,
    *,
    shards: bool = True,
    shard_grace_seconds: float = DEFAULT_GRACE_SECONDS,
    now: float | None = None,
    force: bool = False,
    shard_state_dir: str | Path | None = None,
    bz2_variant: bool = True,
    zst_variant: bool = True,
    prepared: Prepared | None = None,
) -> Published:
    """Publish the platform document `data` as `repodata.json` (+ variants) and, when
    `shards`, its shards and shard index beside it. With `shards=False` an old shard index
    is removed at once and its shards after the grace period, so no stale shard index can
    contradict the new `repodata.json`. The shards' state file goes in `shard_state_dir`
    (default `<folder>/.cache`). `prepared`: what prepare_repodata gave for these bytes;
    one prepared for other bytes is ignored."""
    staged = prepared.staged if prepared is not None else frozenset()
    if prepared is not None and prepared.data != data:
        prepared = None
    paths = write_repodata(folder, data, bz2_variant=bz2_variant, zst_variant=zst_variant,
                           packed=prepared.packed if prepared else None)
    if shards:
        counts = write_shards(folder, data, grace_seconds=shard_grace_seconds, now=now,
                              force=force, state_dir=shard_state_dir,
                              derived=prepared.shards if prepared else None, staged=staged)
    else:
        counts = remove_shards(folder, grace_seconds=shard_grace_seconds, now=now,
                               state_dir=shard_state_dir)
    return Published(paths + counts.paths, counts)


def _compress_all(suffixes: list[str], data: bytes) -> list[bytes]:
    """`data` compressed as each suffix says; two at once in threads (bz2 and zstd release
    the GIL, so the slower one sets the time, not the sum)."""
    if len(suffixes) < 2:
        return [_compress(suffix, data) for suffix in suffixes]
    import threading

    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def work(suffix: str) -> None:
        try:
            results[suffix] = _compress(suffix, data)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    helper = threading.Thread(target=work, args=(suffixes[1],))
    helper.start()
    work(suffixes[0])
    helper.join()
    if errors:
        raise errors[0]
    return [results[suffix] for suffix in suffixes]


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False
