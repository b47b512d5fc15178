"""Upstream channel metadata: where a channel lives, which platforms it offers, and its
`repodata.json` per platform.

Prefers `repodata.json.zst`, then `.bz2`, then plain `.json`; once a variant answered,
the next run asks for it conditionally (If-None-Match / If-Modified-Since) so an unchanged
upstream costs one 304. Platforms, when not configured, come from the channel's
`channeldata.json` (`subdirs`), else from probing the known names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import KNOWN_PLATFORMS
from ..errors import ConfigError
from ..net import Downloader, HttpError
from .repodata import RepodataError, decompress
from .state import PlatformState, load_cached_document

VARIANTS = ("repodata.json.zst", "repodata.json.bz2", "repodata.json")
NOT_THERE = (404, 403, 410)
_SUBDIR_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class ChannelSource:
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


@dataclass
class Fetched:
    document: bytes  # decompressed upstream JSON
    changed: bool  # False: upstream answered 304 and the cached copy is used
    state: PlatformState  # what to remember once the platform is published


def fetch_platform(downloader: Downloader, source: ChannelSource, platform: str,
                   previous: PlatformState, state_folder: Path, max_size: int) -> Fetched:
    """The upstream document of one platform, as cheaply as upstream allows."""
    base = f"{source.url}/{platform}/"
    if previous.url and previous.url.startswith(base):
        cached = load_cached_document(state_folder, previous)
        headers = {}
        if cached is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        try:
            response = downloader.get(previous.url, headers, max_bytes=max_size)
        except HttpError as exc:
            if exc.status not in NOT_THERE:
                raise
        else:
            if response.status == 304 and cached is not None:
                return Fetched(cached, False, previous)
            if response.status == 200:
                return _fetched(previous.url, response, max_size)
    for variant in VARIANTS:
        url = base + variant
        try:
            response = downloader.get(url, max_bytes=max_size)
        except HttpError as exc:
            if exc.status in NOT_THERE:
                continue
            raise
        return _fetched(url, response, max_size)
    raise NotOffered(f"{base}repodata.json: not found upstream (HTTP 404)")


def _fetched(url: str, response, max_size: int) -> Fetched:
    document = decompress(response.data, url, max_size)
    state = PlatformState(url=url, etag=response.headers.get("etag"),
                          last_modified=response.headers.get("last-modified"))
    return Fetched(document, True, state)


def discover_platforms(downloader: Downloader, source: ChannelSource,
                       max_size: int) -> tuple[list[str], bool]:
    """(platforms, probed). From channeldata.json's `subdirs` when the channel has one;
    else every known platform name, to be probed (probed=True: absent ones are skipped)."""
    url = f"{source.url}/channeldata.json"
    try:
        response = downloader.get(url, max_bytes=max_size)
    except HttpError as exc:
        if exc.status in NOT_THERE:
            return list(KNOWN_PLATFORMS), True
        raise
    try:
        subdirs = json.loads(response.data).get("subdirs")
    except (ValueError, AttributeError):
        raise RepodataError(f"{url}: malformed channeldata.json") from None
    if not isinstance(subdirs, list):
        raise RepodataError(f"{url}: channeldata.json has no list of subdirs")
    platforms = [s for s in subdirs if isinstance(s, str) and _SUBDIR_NAME.match(s)]
    return list(dict.fromkeys(["noarch", *sorted(platforms)])), False
