"""Upstream `run_exports.json` (CEP-12), mirrored restricted to the published records.

Upstream writes it together with its repodata (conda-index `--run-exports`, cas-index), so
it is fetched (preferring `.zst`) only when the platform's repodata or shard index changed,
or when the last run did not look for it; otherwise the copy kept in the platform's state
folder is used, and a no-op run costs no request for it. Upstream without one: none is
published, and one published before is removed. A malformed file is a warning (the
repodata is what clients need), and none is published.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path
from typing import Any

from cas_index.atomic import write_atomic
from cas_index.layout import RUN_EXPORTS

from ..net import Downloader
from .errors import RepodataError
from .fetch import first_offered
from .state import PlatformState

log = logging.getLogger(__name__)
VARIANTS = (RUN_EXPORTS + ".zst", RUN_EXPORTS)
CACHED = "upstream_run_exports.json.zst"
ABSENT = "absent"  # PlatformState.run_exports: upstream has none


@cache
def _decoder():
    """A run_exports.json decoder, made when one is first published (a run with nothing
    to do publishes none, and imports no msgspec)."""
    import msgspec

    document = msgspec.defstruct("_Document", [
        ("info", msgspec.Raw, msgspec.Raw(b"{}")),
        ("packages", dict[str, msgspec.Raw], {}),
        ("conda", dict[str, msgspec.Raw], {}),
    ], rename={"conda": "packages.conda"})
    return msgspec.json.Decoder(document)


def fetch_run_exports(downloader: Downloader, base: str, max_size: int) -> bytes | None:
    """Upstream's run_exports.json (decompressed) at the platform URL `base`, or None."""
    found = first_offered(downloader, [base + variant for variant in VARIANTS], max_size)
    if found is None:
        log.debug("%s%s: not offered upstream", base, RUN_EXPORTS)
        return None
    url, response = found
    from .repodata import decompress

    return decompress(response.data, url, max_size)


def upstream_run_exports(downloader: Downloader, base: str, state: PlatformState,
                         state_folder: Path, changed: bool, max_size: int
                         ) -> tuple[bytes | None, bool]:
    """(upstream's run_exports.json or None, fetched): fetched when the platform's
    metadata `changed` or it was never looked for, else the cached copy `state` names."""
    if not changed and state.run_exports is not None:
        if state.run_exports == ABSENT:
            return None, False
        cached = _load(state_folder, state.run_exports)
        if cached is not None:
            return cached, False
    return fetch_run_exports(downloader, base, max_size), True


def _load(state_folder: Path, sha256: str) -> bytes | None:
    try:
        packed = (state_folder / CACHED).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(packed).hexdigest() != sha256:
        return None
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(packed).read()


def remember(state_folder: Path, state: PlatformState, data: bytes | None) -> None:
    """Keep `data` (or that upstream has none) for the next run; sets `state.run_exports`
    (the caller saves the state afterwards)."""
    if data is None:
        (state_folder / CACHED).unlink(missing_ok=True)
        state.run_exports = ABSENT
        return
    import zstandard

    packed = zstandard.ZstdCompressor(level=3).compress(data)
    state_folder.mkdir(parents=True, exist_ok=True)
    write_atomic(state_folder / CACHED, packed, fsync=False)
    state.run_exports = hashlib.sha256(packed).hexdigest()


def restricted_run_exports(data: bytes, keep: set[str], url: str) -> bytes:
    """`data` with only the entries of the files in `keep`; RepodataError when it is not
    a run_exports.json."""
    import msgspec

    from .repodata import PACKAGE_KEYS

    try:
        doc = _decoder().decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RepodataError(f"{url}: malformed {RUN_EXPORTS} ({exc})") from None
    out: dict[str, Any] = {"info": doc.info}
    for key, entries in zip(PACKAGE_KEYS, (doc.packages, doc.conda), strict=True):
        out[key] = {fn: entries[fn] for fn in sorted(entries) if fn in keep}
    return msgspec.json.encode(out)


def publish_run_exports(folder: Path, data: bytes | None, keep: set[str],
                        url: str) -> list[Path]:
    """Publish upstream's run_exports.json restricted to `keep` (+ `.zst`, `.bz2`), or
    remove a published one when upstream has none. Returns the paths written."""
    if data is None:
        for name in (RUN_EXPORTS, *(RUN_EXPORTS + s for s in (".zst", ".bz2"))):
            (folder / name).unlink(missing_ok=True)
        return []
    from cas_index.repodata import write_repodata

    return write_repodata(folder, restricted_run_exports(data, keep, url), name=RUN_EXPORTS)
