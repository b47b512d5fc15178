"""Proxied conda channels: `/<path>/<subdir>/repodata.json` (+ `.zst`, `.bz2`), the CEP-16
shard index and shards, and packages, from `<upstream>/<subdir>/`.

A platform's metadata is fetched as upstream's `repodata.json`, parsed and checked by the
sync's own code (`conda.repodata`), passed through the filter pipeline (`conda.filter`)
and published into the metadata cache by the same function cas-sync and cas-index publish
with (`cas_index.repodata.publish_repodata`: the document, its compressed twins, shards
and shard index), so a proxied channel reads exactly like a mirrored one. Beside it,
`.proxy-index.json` keeps what a package request needs: the kept records' size and
hashes, and why each dropped record was dropped (a dropped package is refused with 403
even when asked for by URL). Packages go through the `Store`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from cas_index.atomic import write_atomic
from cas_index.repodata import publish_repodata
from cas_index.shards import SHARD_INDEX, SHARDS_DIR, is_shard_file

from ...conda.filter import FilterSpec, select
from ...conda.repodata import (
    EXTENSIONS,
    RepodataError,
    decompress,
    parse_repodata,
    restricted_document,
)
from ...config.keys import KNOWN_PLATFORMS
from ..app import Handled, send
from ..files import MirrorTree
from . import metadata
from .settings import CondaUpstream, ProxySettings
from .stats import Stats
from .store import Store, Wanted, answer, error_response
from .upstream import Upstream, UpstreamFailure

log = logging.getLogger(__name__)

REPODATA = "repodata.json"
METADATA_FILES = (REPODATA, f"{REPODATA}.zst", f"{REPODATA}.bz2", SHARD_INDEX)
INDEX_FILE = ".proxy-index.json"
SHARD_STATE = ".proxy-shards"


@dataclass(frozen=True)
class PlatformIndex:
    kept: dict[str, list]  # file name -> [size, sha256, md5]
    dropped: dict[str, str]  # file name -> why the filters dropped it


def build_platform(data: bytes, url: str, subdir: str, spec: FilterSpec, folder: str,
                   max_size: int) -> int:
    """Filter upstream's document `data` and publish the result in `folder` (pure up to
    the publishing). Returns the number of records kept."""
    upstream = parse_repodata(decompress(data, url, max_size), url, subdir)
    decisions = select(upstream.records, subdir, spec)
    keep = {fn for fn, decision in decisions.items() if decision.kept}
    document = restricted_document(upstream, keep)
    os.makedirs(folder, exist_ok=True)
    publish_repodata(folder, document, shard_state_dir=os.path.join(folder, SHARD_STATE))
    index = {
        "kept": {fn: [r.size, r.sha256, r.md5] for fn, r in upstream.records.items()
                 if fn in keep},
        "dropped": {fn: f"{d.step}: {d.reason}" for fn, d in decisions.items() if not d.kept},
    }
    write_atomic(os.path.join(folder, INDEX_FILE), json.dumps(index).encode())
    log.info("%s: %d of %d records kept", url, len(keep), len(upstream.records))
    return len(keep)


class CondaProxy:
    """The `Handler` for every proxied channel."""

    def __init__(self, settings: ProxySettings, upstream: Upstream, store: Store,
                 stats: Stats):
        self.settings = settings
        self.upstream = upstream
        self.store = store
        self.stats = stats
        self.meta_root = os.path.join(settings.cache_dir, metadata.META_FOLDER)
        self.tree = MirrorTree(self.meta_root, pypi_folder=".none")
        self.channels = [(f"/{c.path}/", c, FilterSpec.from_config(
            None, c.license_blacklist, c.blacklist, c.whitelist)) for c in settings.channels]
        self._indexes: dict[str, tuple[int, PlatformIndex, float]] = {}

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        path = scope.path
        found = next((c for c in self.channels if path.startswith(c[0])), None)
        if found is None:
            return None
        prefix, channel, spec = found
        method = scope.method
        if method not in ("GET", "HEAD"):
            return await answer(method, protocol, error_response(405, "GET or HEAD only"))
        segments = path[len(prefix):].split("/")
        subdir, name = segments[0], "/".join(segments[1:])
        if subdir not in KNOWN_PLATFORMS or not name:
            return await answer(method, protocol, error_response(
                404, f"not a proxied file; try /{channel.path}/<subdir>/repodata.json"))
        is_metadata = name in METADATA_FILES or (
            len(segments) == 3 and segments[1] == SHARDS_DIR and is_shard_file(segments[2]))
        is_package = len(segments) == 2 and name.endswith(EXTENSIONS)
        if not (is_metadata or is_package):
            return await answer(method, protocol, error_response(404, "not found"))
        folder = os.path.join(self.meta_root, *path[1:len(prefix) - 1].split("/"), subdir)
        try:
            freshness = await self._ensure(channel, spec, subdir, folder)
        except UpstreamFailure as exc:
            return await answer(method, protocol, error_response(exc.status, str(exc)),
                                 "MISS")
        if is_metadata:
            return await self._metadata(method, path, scope.query_string, headers, protocol,
                                        freshness)
        index = self._index(folder, freshness)
        record = index.kept.get(name)
        if record is None:
            if name in index.dropped:
                self.stats.add("refused")
                return await answer(method, protocol, error_response(
                    403, f"{name} is not served by this proxy ({index.dropped[name]})"))
            return await answer(method, protocol, error_response(
                404, f"{name} is not in {channel.upstream}/{subdir}/"))
        size, sha256, md5 = record
        digests = {"sha256": sha256} if sha256 else {"md5": md5} if md5 else {}
        wanted = Wanted(f"{channel.upstream}/{subdir}/{name}", size, digests)
        return await self.store.serve(method, path, wanted, headers, protocol)

    async def _ensure(self, channel: CondaUpstream, spec: FilterSpec, subdir: str,
                      folder: str) -> metadata.Freshness:
        url = f"{channel.upstream}/{subdir}/{REPODATA}"
        size = self.settings.max_repodata_size
        return await metadata.refresh(
            self.upstream, folder, self.settings.metadata_ttl, url,
            lambda document: build_platform(document.data, url, subdir, spec, folder, size),
            (RepodataError,), max_bytes=size, on_stale=lambda: self.stats.add("stale"))

    async def _metadata(self, method, path, query, headers, protocol,
                        freshness: metadata.Freshness) -> Handled:
        response = self.tree.respond(method, path, query, headers)
        if response.status in (200, 206, 304):
            response.headers.extend(freshness.headers())
            if freshness.note == "HIT" and response.status != 304:
                self.stats.add("hits")
        return Handled(response.status, await send(method, response, protocol),
                       freshness.note)

    def _index(self, folder: str, freshness: metadata.Freshness) -> PlatformIndex:
        """The platform's index, reread when the metadata was refreshed (by any worker:
        the file's mtime changes) and looked at no more than once a second otherwise."""
        path = os.path.join(folder, INDEX_FILE)
        now = time.monotonic()
        cached = self._indexes.get(folder)
        if cached is not None and freshness.note == "HIT" and now - cached[2] < 1.0:
            return cached[1]
        stamp = os.stat(path).st_mtime_ns
        if cached is None or cached[0] != stamp:
            with open(path, "rb") as f:
                raw = json.loads(f.read())
            cached = (stamp, PlatformIndex(raw["kept"], raw["dropped"]), now)
        self._indexes[folder] = (cached[0], cached[1], now)
        return cached[1]
