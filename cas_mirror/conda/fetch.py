"""Upstream channel metadata: where a channel lives, which platforms it offers, and its
`repodata.json` per platform (or, when upstream offers one, its CEP-16 shard index: the
shards themselves are read by upstream_shards.py).

Prefers `repodata.json.zst`, then `.bz2`, then plain `.json`; once a variant answered,
the next run asks for it conditionally (If-None-Match / If-Modified-Since) so an unchanged
upstream costs one 304. Platforms, when not configured, come from the channel's
`channeldata.json` (`subdirs`), else from probing the known names.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from cas_index.layout import SHARD_INDEX
from cas_index.plain import Frozen, Plain

from ..config import KNOWN_PLATFORMS
from ..errors import ConfigError
from ..net import Downloader, HttpError, HttpResponse
from ..text import safe
from .errors import RepodataError
from .state import PlatformState, load_cached_document, load_cached_shard_index, unpack_document

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable

    from .filter import FilterSpec

VARIANTS = ("repodata.json.zst", "repodata.json.bz2", "repodata.json")
NOT_THERE = (404, 403, 410)
_SUBDIR_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
log = logging.getLogger(__name__)


class ChannelSource(Frozen):
    _fields = ("name", "url", "path")
    __slots__ = _fields
    if TYPE_CHECKING:
        name: str  # as configured
        url: str  # upstream base URL, no trailing slash
        path: str  # folder under mirror_dir

    def local_dir(self, mirror_dir: str | Path) -> Path:
        return Path(mirror_dir) / self.path


def resolve_channel(entry: str, remote_url: str) -> ChannelSource:
    """`pkgs/main` -> remote_url/pkgs/main mirrored to pkgs/main; a full URL is mirrored
    to its path (https://host/conda-forge -> conda-forge)."""
    if "://" in entry:
        url = entry.rstrip("/")
        path = unquote(urlsplit(url).path).strip("/")
    else:
        url = f"{remote_url.rstrip('/')}/{entry.strip('/')}"
        path = entry.strip("/")
    if not path or not all(_PATH_SEGMENT.match(s) for s in path.split("/")):
        raise ConfigError(f"channel {entry!r}: cannot derive a safe local folder from {path!r}")
    return ChannelSource(entry, url, path)


class NotOffered(Exception):
    """Upstream has no repodata for this platform (every variant answered 404)."""


class Fetched(Plain):
    """One platform's upstream metadata. An unchanged upstream's cached copy is
    decompressed only when `document` is first read: a run that finds nothing to do
    (quiet.py) never pays for it."""

    _fields = ("_document", "changed", "state", "sharded", "_packed", "index_only")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"sharded": None, "_packed": None, "index_only": None}
    if TYPE_CHECKING:
        _document: bytes | None  # decompressed upstream JSON (None: still in `_packed`)
        changed: bool  # False: upstream answered 304 and the cached copy is used
        state: PlatformState  # what to remember once the platform is published
        sharded: Any  # upstream_shards.ShardedUpstream when read from shards
        _packed: bytes | None  # the cached zstd copy `document` comes from
        # Read from shards, and only the shard index so far (`fetch_index`'s answer, kept
        # for `read_sharded`): quiet.py found nothing to do before any shard was read.
        index_only: Any

    @property
    def document(self) -> bytes:
        if self._document is None:
            if self._packed is None or (document := unpack_document(self._packed)) is None:
                raise RepodataError(f"{self.state.url}: the cached copy of this document "
                                    "(under .cas-sync/channels/) does not decompress")
            self._document, self._packed = document, None
        return self._document

    @document.setter
    def document(self, value: bytes) -> None:  # more shards read (upstream_shards.py)
        self._document, self._packed = value, None


def fetch_platform(downloader: Downloader, source: ChannelSource, platform: str,
                   previous: PlatformState, state_folder: Path, max_size: int) -> Fetched:
    """The upstream document of one platform, as cheaply as upstream allows."""
    base = platform_url(source, platform)
    if previous.url and previous.url.startswith(base) and previous.url[len(base):] in VARIANTS:
        cached = load_cached_document(state_folder, previous)
        headers = previous.validators() if cached is not None else {}
        log.debug("GET %s (conditional: %s)", previous.url, ", ".join(headers) or "no cached copy")
        try:
            response = downloader.get(previous.url, headers, max_bytes=max_size)
        except HttpError as exc:
            if exc.status not in NOT_THERE:
                raise
        else:
            if response.status == 304 and cached is not None:
                log.debug("%s: 304 not modified, using the cached copy", previous.url)
                return Fetched(None, False, previous, _packed=cached)
            if response.status == 200:
                if (problem := html_answer(previous.url, response)) is not None:
                    raise problem
                return _fetched(previous.url, response, max_size)
    found = first_offered(downloader, [base + variant for variant in VARIANTS], max_size)
    if found is None:
        raise NotOffered(f"{base}repodata.json: not found upstream (HTTP 404)")
    return _fetched(*found, max_size)


def first_offered(downloader: Downloader, urls: list[str],
                  max_size: int) -> tuple[str, HttpResponse] | None:
    """(url, response) of the first of `urls` upstream has, or None when it has none (a
    404, 403 or 410 means: not there, try the next variant). An HTML answer (a captive
    portal, a login page) is refused as such."""
    for url in urls:
        try:
            response = downloader.get(url, max_bytes=max_size)
        except HttpError as exc:
            if exc.status in NOT_THERE:
                log.debug("%s: HTTP %s, trying the next variant", url, exc.status)
                continue
            raise
        if (problem := html_answer(url, response)) is not None:
            raise problem
        log.debug("%s: %d bytes", url, len(response.data))
        return url, response
    return None


def fetch_index(downloader: Downloader, base: str, previous: PlatformState,
                state_folder: Path, max_size: int
                ) -> tuple[bytes, PlatformState, bool] | None:
    """(compressed index, state to remember, changed) for the platform at `base`, or None
    when upstream has no shard index."""
    url = base + SHARD_INDEX
    cached = load_cached_shard_index(state_folder, previous) if previous.url == url else None
    headers = previous.validators() if cached is not None else {}
    try:
        response = downloader.get(url, headers, max_bytes=max_size)
    except HttpError as exc:
        if exc.status in NOT_THERE:
            log.debug("%s: HTTP %s, no sharded repodata", url, exc.status)
            return None
        raise
    if response.status == 304 and cached is not None:
        log.debug("%s: 304 not modified, using the cached shard index", url)
        return cached, previous, False
    if (problem := html_answer(url, response)) is not None:
        raise problem
    log.debug("%s: %d bytes", url, len(response.data))
    state = PlatformState(url=url, etag=response.headers.get("etag"),
                          last_modified=response.headers.get("last-modified"))
    return response.data, state, True


def fetch_sharded(downloader: Downloader, base: str, platform: str,
                  previous: PlatformState, state_folder: Path, max_size: int,
                  spec: Callable[[], FilterSpec], *, writable: bool,
                  also: Callable[[], frozenset[str]] = frozenset, unchanged=None) -> Fetched | None:
    """The platform's records from its shards (upstream_shards.py) as a `Fetched`, or
    None when upstream has no shard index. `spec()`: the filters; `also()`: names to read
    whatever the filters say (a lockfile's); both asked for only when shards are read.
    Raises RepodataError / HttpError for the platform. When the index is unchanged and
    `unchanged(state)` says there is nothing to do (quiet.py), no shard is read: the
    `Fetched` holds the index only."""
    found = fetch_index(downloader, base, previous, state_folder, max_size)
    if found is None:
        return None
    if not found[2] and unchanged is not None and unchanged(found[1]):
        return Fetched(None, False, found[1], index_only=found)
    from .upstream_shards import read_sharded

    return read_sharded(downloader, base, platform, found, state_folder, max_size, spec(),
                        writable=writable, also=also())


def platform_url(source: ChannelSource, platform: str) -> str:
    return f"{source.url}/{platform}/"


def html_answer(url: str, response) -> RepodataError | None:
    """An error saying so when upstream answered an HTML page (a login page, captive portal
    or proxy error) where JSON or compressed JSON was expected; else None."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if "html" in content_type.lower():
        what = content_type
    elif response.data[:512].lstrip()[:1] == b"<":
        what = "a body starting with '<'"
    else:
        return None
    return RepodataError(f"upstream answered HTML ({safe(what)}) for {url}; expected "
                         "conda metadata (a login page, captive portal or proxy error?)")


def _fetched(url: str, response, max_size: int) -> Fetched:
    """A repodata answer (already known not to be HTML) as what the sync works from."""
    from .repodata import decompress
    document = decompress(response.data, url, max_size)
    state = PlatformState(url=url, etag=response.headers.get("etag"),
                          last_modified=response.headers.get("last-modified"))
    return Fetched(document, True, state)


def fetch_channeldata(downloader: Downloader, source: ChannelSource,
                      max_size: int) -> dict | None:
    """The channel's upstream channeldata.json, or None when it has none."""
    url = f"{source.url}/channeldata.json"
    try:
        response = downloader.get(url, max_bytes=max_size)
    except HttpError as exc:
        if exc.status in NOT_THERE:
            return None
        raise
    if (problem := html_answer(url, response)) is not None:
        raise problem
    try:
        document = json.loads(response.data)
    except ValueError:
        raise RepodataError(f"{url}: malformed channeldata.json") from None
    if not isinstance(document, dict):
        raise RepodataError(f"{url}: malformed channeldata.json")
    return document


def discover_platforms(downloader: Downloader, source: ChannelSource,
                       max_size: int) -> tuple[list[str], bool]:
    """(platforms, probed). From channeldata.json's `subdirs` when the channel has one;
    else every known platform name, to be probed (probed=True: absent ones are skipped)."""
    document = fetch_channeldata(downloader, source, max_size)
    if document is None:
        return list(KNOWN_PLATFORMS), True
    subdirs = document.get("subdirs")
    if not isinstance(subdirs, list):
        raise RepodataError(f"{source.url}/channeldata.json: channeldata.json has no list "
                            "of subdirs")
    return list(dict.fromkeys(["noarch", *sorted(valid_subdirs(subdirs))])), False


def valid_subdirs(values: object) -> list[str]:
    """The platform names in an upstream list, ignoring anything that is not one."""
    if not isinstance(values, list):
        return []
    return [s for s in values if isinstance(s, str) and _SUBDIR_NAME.match(s)]
