"""Reading a sharded upstream platform (CEP-16) shard by shard.

When upstream offers `<platform>/repodata_shards.msgpack.zst`, the sync fetches it
(fetch.py, conditionally: its ETag / Last-Modified and a copy live in the platform's
state, so an unchanged upstream costs one 304), keeps the names some record of which could
pass the filters (`names_that_may_pass`: a whitelist- or name-only config needs only its
names), and reads their shards: from the shard cache under the platform's state folder when the
index names the same hash, else from upstream, in parallel through the shared downloader
with the shard's name as its sha256 (a shard whose bytes do not hash to its name is
refused by the downloader's verification). The cache keeps exactly the shards the last
published run needed (`prune_shard_cache`), so it is bounded by the configuration; each
file is named by its sha256 and checked when read, so a killed run leaves nothing that
can be mistaken for a good shard. A dry run or `--explain` reads the cache but fetches
into a temporary folder.

The records become a repodata document (`packages`, `packages.conda`, `removed` of the
shards read; `info.subdir` and `info.base_url` from the index), which the rest of the
pipeline parses like a downloaded `repodata.json` (same validation, same refusal of
hostile file names), so the published mirror is the same either way. Records are
re-encoded as compact JSON: when upstream's `repodata.json` is compact too, the published
bytes are identical. Decompression is bounded by `max_repodata_size` (per file), and
anything that does not decode to the CEP's types is one error naming the URL; so is a set
of shards that cannot be fetched (grouped by cause). Any of these fails the platform,
whose previous mirror stays published.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin

import msgspec

from cas_index.plain import Plain
from cas_index.shards import (
    PACKAGE_KEYS,
    SHARD_INDEX,
    SHARD_SUFFIX,
    is_shard_file,
    unpack_record,
)

from ..net import Downloader, DownloadJob
from ..text import plural, safe
from .fetch import Fetched
from .filter import FilterSpec, names_that_may_pass
from .repodata import RepodataError, decompress
from .state import SHARD_CACHE, PlatformState

log = logging.getLogger(__name__)


class _IndexInfo(msgspec.Struct):
    base_url: str = "./"
    shards_base_url: str = "./shards/"
    subdir: str | None = None


class _Index(msgspec.Struct):
    info: _IndexInfo
    shards: dict[str, bytes]


class _Shard(msgspec.Struct, rename={"conda": "packages.conda"}):
    packages: dict[str, dict[str, Any]] = {}
    conda: dict[str, dict[str, Any]] = {}
    removed: list[str] = []


_INDEX = msgspec.msgpack.Decoder(_Index)
_SHARD = msgspec.msgpack.Decoder(_Shard)


class ShardedUpstream(Plain):
    """What a sync read from a sharded upstream platform, beyond the document."""
    _fields = ("index", "needed", "unfetched", "fetched", "cached", "refused", "decoded", "blobs")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "fetched": 0, "cached": 0, "refused": dict, "decoded": None, "blobs": dict}
    _factories: ClassVar[frozenset] = frozenset({"refused", "blobs"})
    if TYPE_CHECKING:
        index: bytes  # the shard index as fetched (compressed), to remember
        needed: dict[str, str]  # package name -> hex sha256 of the shards read
        unfetched: frozenset[str]  # lower-case names upstream offers whose shards were not read
        fetched: int  # shards fetched from upstream in this run
        cached: int  # shards read from the cache
        refused: dict[str, str]  # fn -> why (beyond parse_repodata)
        # for reading more shards in the same run (the dependency closure's rounds)
        decoded: ShardIndex | None
        blobs: dict[str, bytes]  # name -> compressed shard


class ShardIndex(Plain):
    _fields = ("url", "subdir", "base_url", "shards_url", "shards")
    __slots__ = _fields
    if TYPE_CHECKING:
        url: str
        subdir: str | None
        base_url: str
        shards_url: str  # absolute, ends with "/"
        shards: dict[str, str]  # name -> hex sha256


def decode_index(packed: bytes, url: str, max_size: int) -> ShardIndex:
    """The shard index at `url` from its compressed bytes; RepodataError naming the URL
    when it is not one."""
    data = decompress(packed, url, max_size)
    try:
        doc = _INDEX.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RepodataError(f"{url}: malformed shard index ({exc})") from None
    shards = {}
    for name, digest in doc.shards.items():
        if len(digest) != 32:
            raise RepodataError(f"{url}: malformed shard index (the hash of {safe(name)!r} "
                                f"is {len(digest)} bytes, not 32)")
        shards[name] = digest.hex()
    shards_url = urljoin(url, doc.info.shards_base_url.rstrip("/") + "/")
    return ShardIndex(url, doc.info.subdir, doc.info.base_url, shards_url, shards)


def read_sharded(downloader: Downloader, base: str, platform: str,
                 found: tuple[bytes, PlatformState, bool], state_folder: Path, max_size: int,
                 spec: FilterSpec, *, writable: bool, also: frozenset[str] = frozenset()):
    """The platform's records from its shards as a `Fetched`, once the shard index is
    `found` (fetch.py: `fetch_index`, `fetch_sharded`)."""
    packed, state, changed = found
    index = decode_index(packed, state.url or base + SHARD_INDEX, max_size)
    wanted = names_that_may_pass(index.shards, platform, spec)
    if also:
        wanted |= {n for n in index.shards if n.lower() in also}
    sharded = ShardedUpstream(packed, {}, frozenset(n.lower() for n in index.shards),
                              decoded=index)
    document = _read_more(downloader, sharded, wanted, platform, state_folder, max_size,
                          writable)
    return Fetched(document, changed, state, sharded=sharded)


def read_more_shards(downloader: Downloader, fetched: Fetched, names: set[str],
                     platform: str, state_folder: Path, max_size: int, *, writable: bool
                     ) -> bool:
    """Read the shards of `names` (lower-case) too, when the index has them and they were
    not read yet, and rebuild `fetched.document`; False when there was nothing to read."""
    sharded: ShardedUpstream = fetched.sharded
    index = sharded.decoded
    wanted = {n for n in index.shards if n.lower() in names and n not in sharded.needed}
    if not wanted:
        return False
    fetched.document = _read_more(downloader, sharded, wanted | set(sharded.needed), platform,
                                  state_folder, max_size, writable)
    return True


def _read_more(downloader: Downloader, sharded: ShardedUpstream, wanted: set[str],
               platform: str, state_folder: Path, max_size: int, writable: bool) -> bytes:
    index = sharded.decoded
    needed = {name: index.shards[name] for name in sorted(wanted)}
    new = {name: digest for name, digest in needed.items() if name not in sharded.blobs}
    cache = state_folder / SHARD_CACHE
    fetched_before, cached_before = sharded.fetched, sharded.cached
    sharded.fetched = 0
    with tempfile.TemporaryDirectory(prefix="cas-shards-") if not writable else \
            contextlib.nullcontext() as scratch:
        sharded.blobs.update(_read_shards(downloader, index, new, cache,
                                          Path(scratch) if scratch else cache, max_size,
                                          sharded))
    sharded.cached += cached_before
    sharded.fetched += fetched_before
    sharded.needed = needed
    sharded.unfetched = frozenset(n.lower() for n in index.shards if n not in needed)
    sharded.refused.clear()
    document = _document(index, platform, {n: sharded.blobs[n] for n in needed}, max_size,
                         sharded)
    log.info("%s: %d of %s read (%d from upstream, %d cached)", index.url, len(needed),
             plural(len(index.shards), "shard"), sharded.fetched, sharded.cached)
    return document


def _read_shards(downloader: Downloader, index: ShardIndex, needed: dict[str, str],
                 cache: Path, into: Path, max_size: int,
                 sharded: ShardedUpstream) -> dict[str, bytes]:
    """name -> compressed shard bytes, each verified against its name."""
    blobs: dict[str, bytes] = {}
    jobs: list[DownloadJob] = []
    names: list[str] = []
    for name, digest in needed.items():
        data = _cached(cache / (digest + SHARD_SUFFIX), digest, remove_bad=cache == into)
        if data is not None:
            blobs[name] = data
            continue
        jobs.append(DownloadJob(url=index.shards_url + digest + SHARD_SUFFIX,
                                dest=into / (digest + SHARD_SUFFIX), sha256=digest,
                                max_size=max_size))
        names.append(name)
    sharded.cached = len(blobs)
    if not jobs:
        return blobs
    log.debug("%s: fetching %s", index.url, plural(len(jobs), "shard"))
    results = downloader.download(jobs)
    failed: Counter[str] = Counter()
    first: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if not result.ok:
            cause = result.cause or result.error or "failed"
            failed[cause] += 1
            first.setdefault(cause, f"{safe(name)}: {result.job.url}")
            continue
        data = _cached(result.job.dest, result.job.sha256, remove_bad=True)
        if data is None:
            failed["sha256 mismatch"] += 1
            first.setdefault("sha256 mismatch", f"{safe(name)}: {result.job.url}")
            continue
        blobs[name] = data
        sharded.fetched += 1
    if failed:
        cause, count = failed.most_common(1)[0]
        others = sum(failed.values()) - count
        more = f"; {plural(others, 'other')} failed otherwise" if others else ""
        if cause.startswith("larger than"):
            more += " (max_repodata_size bounds each shard)"
        raise RepodataError(
            f"{index.shards_url}: {plural(count, 'shard')} of {len(jobs)} could not be "
            f"fetched: {safe(cause)} (first: {first[cause]}){more}")
    return blobs


def _cached(path: Path, digest: str | None, *, remove_bad: bool) -> bytes | None:
    """The bytes at `path` when they hash to `digest`; a wrong file is removed when
    `remove_bad` (it is ours: the cache, or a download just made)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() == digest:
        return data
    log.info("%s: does not hash to its name; fetching it again", path)
    if remove_bad:
        path.unlink(missing_ok=True)
    return None


def _document(index: ShardIndex, platform: str, blobs: dict[str, bytes], max_size: int,
              sharded: ShardedUpstream) -> bytes:
    """The repodata document the shards `blobs` make up (JSON bytes)."""
    out: dict[str, dict[str, Any]] = {key: {} for key in PACKAGE_KEYS}
    removed: set[str] = set()
    for name in sorted(blobs):
        url = index.shards_url + index.shards[name] + SHARD_SUFFIX
        try:
            shard = _SHARD.decode(decompress(blobs[name], url, max_size))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RepodataError(f"{url}: malformed shard of {safe(name)!r} ({exc})") from None
        for key, records in (("packages", shard.packages), ("packages.conda", shard.conda)):
            for fn, record in records.items():
                if record.get("name") != name:
                    sharded.refused[fn] = (f"record in the shard of {name!r} names "
                                           f"{record.get('name')!r}; refusing it")
                elif fn in out[key]:
                    sharded.refused[fn] = "file name in two shards; refusing it"
                else:
                    out[key][fn] = unpack_record(record)
        removed.update(shard.removed)
    for fn in sharded.refused:
        for key in PACKAGE_KEYS:
            out[key].pop(fn, None)
    # parse_repodata refuses an index of another platform, as it refuses such a document.
    info: dict[str, Any] = {"subdir": index.subdir or platform}
    if index.base_url and index.base_url != "./":
        info["base_url"] = index.base_url
    doc = {"info": info, **{key: dict(sorted(out[key].items())) for key in PACKAGE_KEYS},
           "removed": sorted(removed), "repodata_version": 1}
    try:
        return msgspec.json.encode(doc)
    except (TypeError, msgspec.EncodeError) as exc:  # a value JSON cannot hold
        raise RepodataError(f"{index.shards_url}: shards hold values repodata cannot "
                            f"({exc})") from None


def prune_shard_cache(state_folder: Path, keep: set[str]) -> int:
    """Remove the cached shards not in `keep` (hex sha256s) and any temporary file a
    killed run left; returns how many shards were removed."""
    cache = state_folder / SHARD_CACHE
    removed = 0
    try:
        entries = list(os.scandir(cache))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if is_shard_file(entry.name) and entry.name[:64] in keep:
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed += is_shard_file(entry.name)
    if not keep:
        with contextlib.suppress(OSError):  # something else is in there: not ours
            cache.rmdir()
    return removed
