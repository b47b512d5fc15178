"""Cached metadata (a conda platform's repodata, a PyPI page): fresh for `metadata_ttl`,
then revalidated upstream with a conditional request, served stale when upstream fails.

Each metadata entry is a folder under `<cache_dir>/meta/<URL path>` holding what the
conda or PyPI side derived from upstream's document, plus `.proxy-meta.json`: when it was
last confirmed upstream (`fetched`), upstream's validators (`etag`, `last_modified`) and
when upstream last failed (`failed`). A refresh runs under an flock on `.proxy-meta.lock`
(one refresh at a time across worker processes; the others wait and then find it fresh).
After a failure the entry is served stale without asking upstream again for
`RETRY_AFTER_FAILURE` seconds, so a dead or slow upstream costs one wait, not one per
request. Metadata is never evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cas_index.atomic import write_atomic

from ...errors import os_problem
from ...text import safe
from .upstream import UpstreamFailure

log = logging.getLogger(__name__)

META_FOLDER = "meta"
META_FILE = ".proxy-meta.json"
META_LOCK = ".proxy-meta.lock"
RETRY_AFTER_FAILURE = 10.0
NOT_MODIFIED = "not modified"


@dataclass(frozen=True)
class Freshness:
    note: str  # HIT (fresh or revalidated), MISS (fetched now), STALE (upstream failed)
    age: float  # seconds since upstream last confirmed the copy
    problem: str | None = None  # why it is stale

    def headers(self) -> list[tuple[str, str]]:
        """Age on every answer from the cache; Warning 111 on a stale one (RFC 7234)."""
        out = [("age", str(int(self.age)))]
        if self.note == "STALE":
            out.append(("warning", '111 cas-server "Revalidation Failed"'))
        return out


def read_meta(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, META_FILE), "rb") as f:
            meta = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("fetched"), (int, float)) \
        else None


# folder -> (when read, the meta read): a worker rereads an entry's meta file at most
# every RECHECK seconds, so a cache hit costs no file read (a refresh by another worker is
# seen at most that late; TTLs are minutes).
_SEEN: dict[str, tuple[float, dict | None]] = {}
RECHECK = 1.0


def fresh(folder: str, ttl: float, now: float | None = None, *,
          reread: bool = False) -> Freshness | None:
    """The cached copy's freshness when it can be served without asking upstream
    (`reread`: from the file, whatever this worker read lately)."""
    now = time.time() if now is None else now
    seen = None if reread else _SEEN.get(folder)
    if seen is not None and 0 <= now - seen[0] < RECHECK:
        meta = seen[1]
    else:
        meta = read_meta(folder)
        _SEEN[folder] = (now, meta)
    if meta is None:
        return None
    age = max(0.0, now - meta["fetched"])
    if age < ttl:
        return Freshness("HIT", age)
    failed = meta.get("failed")
    if isinstance(failed, (int, float)) and now - failed < RETRY_AFTER_FAILURE:
        return Freshness("STALE", age, meta.get("problem") or "upstream failed")
    return None


Fetch = Callable[[dict[str, str]], "Mapping[str, str] | str"]


def ensure(folder: str, ttl: float, fetch: Fetch, what: str) -> Freshness:
    """Make the entry in `folder` fresh (blocking: run it in a thread). `fetch(headers)`
    asks upstream with the conditional `headers` and either returns NOT_MODIFIED or
    writes the new content into `folder` and returns upstream's response headers. Raises
    UpstreamFailure when upstream fails and nothing is cached."""
    quick = fresh(folder, ttl)
    if quick is not None:
        return quick
    try:
        os.makedirs(folder, exist_ok=True)
        lock = os.open(os.path.join(folder, META_LOCK),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        quick = fresh(folder, ttl, reread=True)  # another worker may have refreshed it
        if quick is not None:
            return quick
        meta = read_meta(folder)
        conditional = {}
        if meta and meta.get("etag"):
            conditional["If-None-Match"] = meta["etag"]
        if meta and meta.get("last_modified"):
            conditional["If-Modified-Since"] = meta["last_modified"]
        now = time.time()
        try:
            try:
                answer = fetch(conditional if meta else {})
            except OSError as exc:  # the cache cannot be written (full disk, a file in the way)
                raise _unwritable(folder, exc) from None
        except UpstreamFailure as exc:
            if meta is None:
                raise
            age = max(0.0, now - meta["fetched"])
            log.warning("%s: upstream failed (%s); serving the copy cached %d s ago",
                        what, safe(str(exc)), age)
            _write_meta(folder, {**meta, "failed": now, "problem": str(exc)})
            return Freshness("STALE", age, str(exc))
        if answer == NOT_MODIFIED:
            _write_meta(folder, {**(meta or {}), "fetched": now, "failed": None})
            log.info("%s: revalidated upstream (not modified)", what)
            return Freshness("HIT", 0.0)
        headers = answer if isinstance(answer, Mapping) else {}
        _write_meta(folder, {"fetched": now, "etag": headers.get("etag"),
                             "last_modified": headers.get("last-modified")})
        log.info("%s: fetched from upstream", what)
        return Freshness("MISS", 0.0)
    finally:
        os.close(lock)


def _unwritable(folder: str, exc: OSError) -> UpstreamFailure:
    log.warning("cannot write the cache in %s: %s", safe(folder), os_problem(exc))
    return UpstreamFailure(f"cannot write the cache in {folder}: {os_problem(exc)}", 502)


def _write_meta(folder: str, meta: dict) -> None:
    _SEEN.pop(folder, None)
    with contextlib.suppress(OSError):  # a full disk: the next request asks upstream again
        write_atomic(os.path.join(folder, META_FILE), json.dumps(meta).encode())


async def refresh(upstream, folder: str, ttl: float, url: str, build: Callable,
                  errors: tuple[type[Exception], ...], *, prefix: str = "",
                  headers: Mapping[str, str] | None = None, max_bytes: int | None = None,
                  on_stale: Callable[[], None] | None = None) -> Freshness:
    """The entry in `folder`, fresh: as it is within `ttl`, else revalidated from `url`
    (`upstream.document`, conditionally) and rebuilt by `build(document)` when upstream
    sent a new one; an error of `errors` from `build` is a 502 saying `prefix` + why.
    `on_stale` is called when the entry is served stale."""
    quick = fresh(folder, ttl)
    if quick is not None:
        return quick

    def fetch(conditional: dict[str, str]):
        document = upstream.document(url, {**(headers or {}), **conditional},
                                     max_bytes=max_bytes)
        if document.status == 304:
            return NOT_MODIFIED
        try:
            build(document)
        except errors as exc:
            raise UpstreamFailure(f"{prefix}{exc}", 502) from None
        return document.headers

    freshness = await asyncio.to_thread(ensure, folder, ttl, fetch, url)
    if freshness.note == "STALE" and on_stale is not None:
        on_stale()
    return freshness
