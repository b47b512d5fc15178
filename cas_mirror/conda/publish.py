"""The second half of a conda sync: publish each platform's repodata atomically, then
delete what it no longer names; publish each channel's `channeldata.json`; retire
platforms no longer configured.

Environment problems become results, never crashes: a platform folder the sync cannot
write fails that platform alone (its previous repodata stays published), and a full disk
raises `DiskFullError` (the run stops with exit 4; every file is written to a temporary
name and renamed, so the metadata published before stays intact).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cas_index.layout import RUN_EXPORTS

from ..errors import DiskFullError, is_disk_full, os_problem
from ..net import part_path
from ..paths import not_writable
from ..text import safe
from .errors import RepodataError
from .fetch import platform_url
from .results import PlatformReport, SyncReport
from .run_exports import publish_run_exports, remember
from .state import save_state
from .target import LOCAL, Target

# A quiet platform (quiet.py) publishes nothing: what only publishing needs (the repodata
# writers, msgspec, the storage errors) is imported once there is something to publish.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .retired import Retired
    from .work import Work

log = logging.getLogger(__name__)


def disk_full(exc: OSError, writing: Path) -> DiskFullError:
    return DiskFullError(f"{os_problem(exc)} writing {exc.filename or writing}; what was "
                         "published before stays as it was")


def check_writable(w: Work) -> None:
    """Before downloading: can the platform folder be created and written? If not, the
    platform fails here, with one line naming the folder."""
    try:
        w.folder.mkdir(parents=True, exist_ok=True)
        problem = not_writable(w.folder)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, w.folder) from None
        problem = os_problem(exc)
    if problem:
        w.report.error = f"cannot write {w.folder}: {problem}"


def publish_platform(w: Work, report: SyncReport, *, shards: bool = True,
                     shard_grace_seconds: float = 7 * 86400.0) -> None:
    """Publish the platform's repodata (and its shards, CEP-16), then delete what it no
    longer names. A quiet platform (nothing to do, quiet.py) is left as it is."""
    if not w.usable or w.quiet is not None:
        return
    from ..storage import StorageError

    started = time.monotonic()
    try:
        _publish(w, report, shards, shard_grace_seconds)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, w.folder / "repodata.json") from None
        w.report.error = f"cannot write {exc.filename or w.folder}: {os_problem(exc)}"
    except StorageError as exc:  # a bucket kept failing: what it had published stays
        w.report.error = str(exc)
    finally:
        w.report.seconds += time.monotonic() - started


def prepare_ahead(work: list[Work], shards: bool) -> Callable[[], None] | None:
    """A function doing publishing's CPU work (compression, shards) for each platform with
    downloads, on the document it publishes once they all succeed, to run while they do;
    it also writes the shard files, which no index names until publishing. Where one
    fails the document differs: publishing does that work itself, and removes the shard
    files its document does not name. None when no platform downloads."""
    due = [w for w in work if w.usable and w.quiet is None and w.plan.download]
    if not due:
        return None

    def run() -> None:
        from cas_index.repodata import prepare_repodata

        for w in due:
            try:
                prepared = prepare_repodata(_document(w, set(w.plan.download)), shards=shards)
                w.prepared = prepared.stage(w.folder)
            except Exception:  # publishing does the same work and meets the error again
                log.debug("%s/%s: repodata not prepared ahead", w.source.path, w.platform,
                          exc_info=True)
    return run


def _document(w: Work, got: set[str]) -> bytes:
    """The platform's repodata.json as published when the files `got` were downloaded."""
    from .repodata import empty_document, restricted_document

    if w.upstream is None:
        return empty_document(w.platform)
    return restricted_document(w.upstream, set(w.plan.up_to_date) | got)


def _publish(w: Work, report: SyncReport, shards: bool, shard_grace_seconds: float) -> None:
    from cas_index.repodata import publish_repodata

    from .upstream_shards import prune_shard_cache

    w.folder.mkdir(parents=True, exist_ok=True)
    document = _document(w, w.got)
    publish = functools.partial(publish_repodata, shards=shards,
                                shard_grace_seconds=shard_grace_seconds,
                                shard_state_dir=w.state_folder, prepared=w.prepared)
    w.prepared = None  # (its bytes are not kept past publishing)
    published = publish(w.folder, document)
    report.changed_files.extend(published.paths)
    w.report.shards = published.shards.as_dict() if shards else None
    if shards and published.shards.oldest_unnamed is not None:
        w.shards_due = published.shards.oldest_unnamed + shard_grace_seconds
    # run_exports.json is metadata too: out (and, for a bucket, uploaded) before deletes
    state_changed = _publish_run_exports(w, report, set(w.plan.up_to_date) | w.got)
    w.target.publish(w)
    for fn in w.plan.delete:  # empty with keep_removed
        if w.target.delete(w, fn):
            w.report.deleted += 1
    w.target.settle(w)
    for fn in w.plan.stale_partials:  # a killed run's downloads of files no longer wanted
        part_path(w.folder / fn).unlink(missing_ok=True)
        log.info("%s/%s: removed the stale partial download of %s", w.source.path,
                 w.platform, safe(fn))
    for fn in w.report.verified_bad:
        w.report.verified_bad[fn] = "downloaded again" if fn in w.got else \
            "download failed; left out of the published repodata"
    sharded = w.fetched.sharded if w.fetched is not None else None
    if w.fetched is not None and (w.fetched.changed or state_changed):
        if sharded is None:
            save_state(w.state_folder, w.fetched.state, w.fetched.document)
        else:
            save_state(w.state_folder, w.fetched.state, None, sharded.index)
    # The shard cache keeps what this run read (nothing once upstream is read whole).
    prune_shard_cache(w.state_folder, set(sharded.needed.values()) if sharded else set())


def _publish_run_exports(w: Work, report: SyncReport, keep: set[str]) -> bool:
    """Publish upstream's run_exports.json restricted to `keep` (or remove ours when
    upstream has none); True when the platform's state must be saved to remember it."""
    url = platform_url(w.source, w.platform) + RUN_EXPORTS
    if w.run_exports_error is not None:
        report.warnings.append(f"{w.source.path}/{w.platform}: {w.run_exports_error}; "
                               f"{RUN_EXPORTS} left as it was")
        return False
    data = w.run_exports
    try:
        paths = publish_run_exports(w.folder, data, keep, url)
    except RepodataError as exc:
        report.warnings.append(f"{w.source.path}/{w.platform}: {exc}; none published")
        paths = publish_run_exports(w.folder, None, keep, url)
    report.changed_files.extend(paths)
    if w.fetched is None or not w.run_exports_fetched:
        return False
    remember(w.state_folder, w.fetched.state, data)
    return True


def publish_channeldata(work: list[Work], kept: list[Retired], mirror_dir: Path,
                        report: SyncReport, store: Target | None = None,
                        removed: list[Retired] = ()) -> set[str]:
    """channeldata.json per channel: its platforms and, per package, where it is mirrored,
    so another mirror (or a client) can discover the channel's platforms. Retired platforms
    that are kept are listed too: they are still served. A channel with a platform that
    failed keeps its previous channeldata.json. Returns the channels written."""
    channels: dict[str, dict[str, Any]] = {}
    broken = broken_channels(work)
    for w in work:
        if w.source.path in broken or w.quiet is not None:
            continue  # (a quiet platform's channel is all quiet: its file stays as it is)
        doc = channels.setdefault(w.source.path, _new_channeldata())
        _add_platform(doc, w.platform, (w.upstream.records[fn].name
                                        for fn in (*w.plan.up_to_date, *sorted(w.got))))
    for retired in kept:
        if retired.source.path in channels:
            from .repodata import published_records

            names = (r.name for r in published_records(retired.folder / "repodata.json")
                     .values() if isinstance(r.name, str))
            _add_platform(channels[retired.source.path], retired.platform, names)
    for path, doc in channels.items():
        owned = {*doc["subdirs"], *(r.platform for r in removed if r.source.path == path)}
        _write_channeldata(path, doc, mirror_dir / path / "channeldata.json", owned, report,
                           store or LOCAL)
    return set(channels)


def _write_channeldata(path: str, doc: dict[str, Any], target: Path, owned: set[str],
                       report: SyncReport, store: Target) -> None:
    import msgspec

    from ..storage import StorageError

    doc["subdirs"].sort()
    for package in doc["packages"].values():
        package["subdirs"].sort()
    doc["packages"] = dict(sorted(doc["packages"].items()))
    data = msgspec.json.format(msgspec.json.encode(doc), indent=2)
    try:
        if store.write_channeldata(path, target, data, doc, owned):
            report.changed_files.append(target)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, target) from None
        report.platforms.append(PlatformReport(
            path, "*", error=f"cannot write {target}: {os_problem(exc)}"))
    except StorageError as exc:
        report.platforms.append(PlatformReport(path, "*", error=str(exc)))


def broken_channels(work: list[Work]) -> set[str]:
    return {w.source.path for w in work if not w.usable}


def _new_channeldata() -> dict[str, Any]:
    return {"channeldata_version": 1, "packages": {}, "subdirs": []}


def _add_platform(doc: dict[str, Any], platform: str, names) -> None:
    doc["subdirs"].append(platform)
    for name in names:
        subdirs = doc["packages"].setdefault(name, {"subdirs": []})["subdirs"]
        if platform not in subdirs:
            subdirs.append(platform)


def retire(retired: Retired, report: SyncReport, store: Target = LOCAL) -> None:
    """Remove a platform no longer configured (after its channel's channeldata.json, which
    no longer lists it, is published)."""
    row = PlatformReport(retired.source.path, retired.platform, unconfigured="removed")
    report.platforms.append(row)
    try:
        row.deleted = store.remove_platform(retired)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, retired.folder) from None
        row.error = f"cannot remove {exc.filename or retired.folder}: {os_problem(exc)}"
    log.info("%s/%s: no longer configured; removed %d files", retired.source.path,
             retired.platform, row.deleted)
