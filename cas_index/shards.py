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

Shards are derived from the published document's bytes (`shard_document`, `derive_shards`,
pure), so they describe exactly what `repodata.json` says, patches and filters included.
Publishing them in a folder, in the order that keeps clients consistent, is shard_files.py.
"""


from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .layout import SHARD_INDEX as SHARD_INDEX  # (its importers' name for it)
from .layout import SHARDS_DIR
from .plain import Frozen, Plain

SHARD_SUFFIX = ".msgpack.zst"
INDEX_VERSION = 1
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


def subdir_and_base(info: dict[str, Any], folder_name: str) -> tuple[str, str]:
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


def iter_shards(data: bytes) -> tuple[dict[str, Any], Iterator[Shard]]:
    """The document's `info`, and its shards in name order, one at a time (a big
    document's are many: they need not be held at once)."""
    parsed = _parse(data)
    return parsed.info, _shards(parsed)


def derive_shards(data: bytes) -> DerivedShards:
    """Every shard of the document `data` (pure): the CPU part of `write_shards`, for a
    caller with a core to spare before it may publish (a sync, while its packages
    download)."""
    info, shards = iter_shards(data)
    return DerivedShards(hashlib.sha256(data).hexdigest(), info, list(shards))


def shard_document(data: bytes, *, created_at: float, folder_name: str = "") -> ShardSet:
    """All shards of the document `data` and the index naming them (pure). The index's
    subdir is the document's `info.subdir`, else `folder_name`."""
    parsed = _parse(data)
    subdir, base_url = subdir_and_base(parsed.info, folder_name)
    shards = {shard.name: shard for shard in _shards(parsed)}
    content = index_content({n: s.sha256 for n, s in shards.items()}, subdir=subdir,
                            base_url=base_url)
    return ShardSet(shards, encode_index(content, created_at))
