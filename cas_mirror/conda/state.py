"""What the sync remembers between runs, per channel and platform.

Under `<mirror_dir>/.cas-sync/channels/<channel path>/<platform>/`: the URL of the
repodata variant upstream answered with, its ETag / Last-Modified, and a zstd copy of the
upstream document. With these an unchanged upstream costs one conditional request (304)
and the filters can still be re-applied (a changed configuration needs no download).
The folder is hidden, so servers and indexers leave it alone.

For a sharded upstream (CEP-16, upstream_shards.py) the URL is the shard index's, the copy
is of the shard index (`upstream_shards.msgpack.zst`) instead of a document, and `shards/`
caches the shards the last run needed, each named by its sha256 (content-addressed: a
file is either whole and right or detected as wrong, whenever a run was killed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cas_index.atomic import write_atomic
from cas_index.plain import Plain

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import ClassVar

STATE_ROOT = ".cas-sync"


class PlatformState(Plain):
    _fields = ("url", "etag", "last_modified", "cache_sha256", "shard_index_sha256",
               "run_exports")
    __slots__ = _fields
    _defaults: ClassVar[dict] = dict.fromkeys(_fields)
    if TYPE_CHECKING:
        url: str | None  # the repodata variant that answered
        etag: str | None
        last_modified: str | None
        cache_sha256: str | None  # of the cached upstream document (.zst bytes)
        shard_index_sha256: str | None  # of the cached upstream shard index
        # run_exports.py: sha256 of the cached upstream run_exports.json, "absent", or
        # None (not looked for yet)
        run_exports: str | None

    def validators(self) -> dict[str, str]:
        """The conditional-request headers that revalidate what this state remembers."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


UPSTREAM_DOCUMENT = "upstream.json.zst"
UPSTREAM_SHARD_INDEX = "upstream_shards.msgpack.zst"
SHARD_CACHE = "shards"


def state_dir(mirror_dir: str | Path, channel_path: str, platform: str) -> Path:
    return Path(mirror_dir) / STATE_ROOT / "channels" / channel_path / platform


def load_state(folder: Path) -> PlatformState:
    try:
        data = json.loads((folder / "state.json").read_text())
        return PlatformState(**{k: data.get(k) for k in PlatformState._fields})
    except (OSError, ValueError, TypeError):
        return PlatformState()  # no state, or unreadable: start afresh


def load_cached_document(folder: Path, state: PlatformState) -> bytes | None:
    """The cached upstream document, still zstd-compressed (`unpack_document` reads it),
    if present and the one `state` describes (its sha256 is checked)."""
    try:
        packed = (folder / UPSTREAM_DOCUMENT).read_bytes()
    except OSError:
        return None
    if not state.cache_sha256 or hashlib.sha256(packed).hexdigest() != state.cache_sha256:
        return None
    return packed


def unpack_document(packed: bytes) -> bytes | None:
    """The document a cached copy holds, or None when it does not decompress."""
    import zstandard

    try:
        return zstandard.ZstdDecompressor().stream_reader(packed, read_across_frames=True).read()
    except zstandard.ZstdError:
        return None


def load_cached_shard_index(folder: Path, state: PlatformState) -> bytes | None:
    """The cached upstream shard index (still compressed), if it is the one `state`
    describes."""
    try:
        packed = (folder / UPSTREAM_SHARD_INDEX).read_bytes()
    except OSError:
        return None
    if not state.shard_index_sha256 or \
            hashlib.sha256(packed).hexdigest() != state.shard_index_sha256:
        return None
    return packed


def save_state(folder: Path, state: PlatformState, document: bytes | None,
               shard_index: bytes | None = None) -> None:
    """Record `state`; with `document` (or, for a sharded upstream, `shard_index`),
    replace the cached upstream copy first, and drop the copy of the other kind."""
    folder.mkdir(parents=True, exist_ok=True)
    if document is not None:
        import zstandard

        packed = zstandard.ZstdCompressor(level=3, threads=-1).compress(document)
        write_atomic(folder / UPSTREAM_DOCUMENT, packed, fsync=False)
        state.cache_sha256 = hashlib.sha256(packed).hexdigest()
        state.shard_index_sha256 = None
        (folder / UPSTREAM_SHARD_INDEX).unlink(missing_ok=True)
    elif shard_index is not None:
        write_atomic(folder / UPSTREAM_SHARD_INDEX, shard_index, fsync=False)
        state.shard_index_sha256 = hashlib.sha256(shard_index).hexdigest()
        state.cache_sha256 = None
        (folder / UPSTREAM_DOCUMENT).unlink(missing_ok=True)
    write_atomic(folder / "state.json", json.dumps(state._asdict(), indent=1).encode())
