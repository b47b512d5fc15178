"""The conda sync, end to end, for every configured channel and platform:

config -> fetch upstream repodata -> filter -> plan (gather.py) -> download -> publish
repodata atomically -> delete stale files (publish.py) -> retire platforms no longer
configured (retired.py) -> remember upstream state -> report (results.py, report.py).
A platform with nothing to do since the last run is recognised from one conditional
request and skipped (quiet.py).

Metadata is published only after the files it names are in place, and stale files are
deleted only after the metadata that dropped them is published, so a client reading at
any moment sees a consistent channel. A platform whose upstream metadata cannot be used,
or whose folder cannot be written, is reported and its previous mirror left untouched. A
file that failed to download is left out of the published repodata (the mirror stays
installable) and reported. A full disk stops the run (exit 4) with the summary of what
was done.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, DiskFullError, os_problem
from ..lock import TreeLock
from ..net import Downloader, DownloadJob, FreeSpaceGuard
from ..paths import nearest_existing
from . import quiet
from .gather import channel_sources, filter_spec, gather, network_settings
from .local import mirror_dir_status
from .publish import (
    broken_channels,
    check_writable,
    prepare_ahead,
    publish_channeldata,
    publish_platform,
    retire,
)
from .results import PlatformReport, SyncReport
from .retired import Retired, find_retired, removal_allowed
from .state import STATE_ROOT, load_state
from .target import Target, open_target
from .work import Work

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from ..output import Output

log = logging.getLogger(__name__)


def run_sync(config: Config, *, output: Output, dry_run: bool = False,
             verify: bool = False) -> SyncReport:
    """Mirror every configured channel; see the module docstring for the order of work."""
    started = time.monotonic()
    sources = channel_sources(config)
    # The filters are built when a platform is first filtered: a run with nothing to do
    # needs none. Lockfiles are read now, so that one that cannot be read stops the run
    # before anything is fetched.
    spec = functools.cache(functools.partial(filter_spec, config))
    if config.lockfiles:
        spec()
    mirror_dir, target = open_target(config)  # for a bucket: the local staging tree
    report = SyncReport(dry_run=dry_run, mirror_dir=str(config.mirror_dir))
    key = "state_dir" if target.remote else "mirror_dir"
    problem, report.mirror_dir_status = mirror_dir_status(mirror_dir)
    if problem:
        raise ConfigError(f"{config.where(key)}: {problem}")
    if dry_run:
        _run(config, sources, spec, mirror_dir, output, report, dry_run, verify, target)
    else:
        try:
            mirror_dir.mkdir(parents=True, exist_ok=True)
            (mirror_dir / STATE_ROOT).mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{config.where(key)}: cannot create "
                              f"{exc.filename or mirror_dir}: {os_problem(exc)}") from None
        with TreeLock(mirror_dir / STATE_ROOT / "lock"):
            try:
                _run(config, sources, spec, mirror_dir, output, report, dry_run, verify,
                     target)
            except DiskFullError as exc:
                _stop(report, output, str(exc))
            _write_diff_file(config, report, output, target)
    report.seconds = time.monotonic() - started
    return report


def _stop(report: SyncReport, output: Output, reason: str) -> None:
    if not report.stopped:
        report.stopped = reason
        output.error(f"stopped: {reason}")


def _run(config: Config, sources, spec, mirror_dir: Path, output: Output,
         report: SyncReport, dry_run: bool, verify: bool, target: Target) -> None:
    guard = FreeSpaceGuard(nearest_existing(mirror_dir), config.minimum_free_space)
    # Taken once, before anything is read: a record describes the inputs this run used.
    digest = quiet.config_digest(config.values)
    with Downloader(network_settings(config), free_space=guard) as downloader:
        work = gather(config, sources, spec, mirror_dir, downloader, output, report, verify,
                      writable=not dry_run,
                      quiet_digest=None if dry_run or verify else digest, target=target)
        retired = _retired(config, mirror_dir, work, report, dry_run)
        if dry_run:
            return
        target.prepare(work)
        for w in work:
            if w.usable:
                check_writable(w)
                if w.report.error:
                    output.error(f"{w.source.path}/{w.platform}: {w.report.error}")
        _download(work, downloader, output, report, target, config.shards)
    for w in work:  # also after a stop for disk space: what is in place is published
        publish_platform(w, report, shards=config.shards,
                         shard_grace_seconds=config.shard_grace_period)
    # Retired platforms are removed only by a run that finished: otherwise they stay
    # listed in channeldata.json, since they are still served.
    remove = removal_allowed(config)[0] and not report.stopped
    written = publish_channeldata(work, [] if remove else retired, mirror_dir, report,
                                  target, retired if remove else [])
    if remove:
        for r in retired:
            if r.source.path in written:
                retire(r, report, target)
    _record_quiet(work, written if not report.stopped else set(), digest)


def _record_quiet(work: list[Work], written: set[str], digest: str) -> None:
    """Remember each platform published completely, so that the next run can tell from
    one request that it has nothing to do (quiet.py). A platform with anything failed,
    refused or left as it was (a warning) is not recorded. An older record needs no
    removal: a run that changed upstream state, the folder or the repodata of a platform
    changed what its fingerprint covers."""
    for w in work:
        if w.quiet is not None or not (w.usable and w.report.ok and w.source.path in written
                                       and w.run_exports_error is None):
            continue
        state = w.fetched.state if w.fetched is not None else load_state(w.state_folder)
        try:
            quiet.record(w.state_folder, digest, state, w.folder, w.report, w.shards_due)
        except OSError as exc:  # only costs the next run its shortcut
            log.info("%s/%s: cannot record the run in %s: %s", w.source.path, w.platform,
                     w.state_folder, os_problem(exc))


def _retired(config: Config, mirror_dir: Path, work: list[Work], report: SyncReport,
             dry_run: bool) -> list[Retired]:
    """Platform folders published before but no longer configured; says what happens to
    them (a dry run: what would)."""
    active: dict[str, set[str]] = {}
    sources = {}
    for w in work:
        active.setdefault(w.source.path, set()).add(w.platform)
        sources[w.source.path] = w.source
    found = [r for path, source in sources.items()
             for r in find_retired(mirror_dir, source, active[path])]
    if not found:
        return []
    remove, why = removal_allowed(config)
    names = ", ".join(f"{r.source.path}/{r.platform}" for r in found)
    if not remove:
        report.warnings.append(
            f"no longer in platforms, kept and still served ({why}): {names}")
    elif dry_run:
        broken = broken_channels(work)
        for r in found:
            row = PlatformReport(r.source.path, r.platform,
                                 unconfigured="would be removed" if r.source.path not in broken
                                 else "kept until its channel syncs without errors")
            report.platforms.append(row)
    return found


def _packages_url(w: Work) -> str:
    """Where the platform's package files are: its folder upstream, or the `base_url` its
    repodata names (CEP-15), resolved against the repodata's URL; ends with "/"."""
    base_url = w.upstream.info.get("base_url") if w.upstream else None
    if isinstance(base_url, str) and base_url:
        from urllib.parse import urljoin

        return urljoin(w.fetched.state.url, base_url.rstrip("/") + "/")
    return f"{w.source.url}/{w.platform}/"


def _download(work: list[Work], downloader: Downloader, output: Output,
              report: SyncReport, target: Target, shards: bool) -> None:
    jobs: list[DownloadJob] = []
    owners: list[Work] = []
    for w in work:
        if not w.usable or w.quiet is not None or not w.plan.download:
            continue
        base, records = _packages_url(w), w.upstream.records
        folder = os.path.join(w.folder, "")  # text: no Path made per file (~8 ms / 1,800)
        for fn in w.plan.download:
            record = records[fn]
            jobs.append(DownloadJob(url=base + fn, dest=folder + fn,
                                    size=record.size, sha256=record.sha256, md5=record.md5))
            owners.append(w)
    if not jobs:
        return
    results = target.download(downloader, jobs, output.progress("conda"),
                              prepare_ahead(work, shards))
    for w, result in zip(owners, results, strict=True):
        if result.ok:
            w.got.add(os.path.basename(result.job.dest))
            w.report.downloaded += 1
            w.report.bytes += result.received
            report.changed_files.append(result.job.dest)
        else:
            w.report.failed.append((result.job.url, result.error or "failed"))
    if downloader.stop_reason:
        _stop(report, output, downloader.stop_reason)


def _write_diff_file(config: Config, report: SyncReport, output: Output,
                     target: Target) -> None:
    from ..diff_file import write_diff_file

    if config.diff_file:
        try:
            report.diff_file = write_diff_file(
                config.diff_file, config.diff_append_epoch,
                [target.published_name(p) for p in report.changed_files])
        except DiskFullError as exc:
            _stop(report, output, str(exc))
