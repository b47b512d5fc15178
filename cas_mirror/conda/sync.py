"""The conda sync, end to end, for every configured channel and platform:

config -> fetch upstream repodata -> filter -> plan -> download -> publish repodata
atomically -> delete stale files -> remember upstream state -> report.

Metadata is published only after the files it names are in place, and stale files are
deleted only after the metadata that dropped them is published, so a client reading at
any moment sees a consistent channel. A platform whose upstream metadata cannot be used
is reported and its previous mirror left untouched. A file that failed to download is
left out of the published repodata (the mirror stays installable) and reported.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from cas_index.atomic import write_if_changed
from cas_index.repodata import publish_repodata

from ..config import Config
from ..download import Downloader, DownloadJob, FreeSpaceGuard, HttpError, NetworkSettings
from ..errors import ConfigError
from ..lock import TreeLock
from ..output import Output
from .fetch import (
    ChannelSource,
    Fetched,
    NotOffered,
    discover_platforms,
    fetch_platform,
    resolve_channel,
)
from .filter import Decision, FilterSpec, select
from .plan import PlatformPlan, is_package_file, plan_platform
from .repodata import (
    RepodataError,
    UpstreamRepodata,
    empty_document,
    parse_repodata,
    published_records,
    restricted_document,
)
from .state import STATE_ROOT, load_state, save_state, state_dir


@dataclass
class PlatformReport:
    channel: str
    platform: str
    selected: int = 0
    dropped: int = 0
    downloaded: int = 0
    bytes: int = 0
    deleted: int = 0
    to_download: int = 0
    to_download_bytes: int = 0
    up_to_date: int = 0
    to_delete: int = 0
    to_delete_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or URL, why)
    seconds: float = 0.0
    upstream_changed: bool = True
    error: str | None = None  # the platform as a whole could not be synced

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


@dataclass
class SyncReport:
    platforms: list[PlatformReport] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    stopped: str | None = None  # why the run stopped early (disk space)
    diff_file: Path | None = None
    changed_files: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        from ..errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL

        if self.stopped:
            return EXIT_ABORTED
        return EXIT_OK if all(p.ok for p in self.platforms) else EXIT_PARTIAL


@dataclass
class _Work:
    """One channel/platform as it moves through the pipeline."""

    source: ChannelSource
    platform: str
    folder: Path
    state_folder: Path
    report: PlatformReport
    probed: bool = False
    fetched: Fetched | None = None
    upstream: UpstreamRepodata | None = None
    decisions: dict[str, Decision] = field(default_factory=dict)
    plan: PlatformPlan | None = None
    got: set[str] = field(default_factory=set)  # files downloaded in this run
    started: float = field(default_factory=time.monotonic)


def network_settings(config: Config) -> NetworkSettings:
    return NetworkSettings(workers=config.workers, timeout=config.timeout,
                           retries=config.retries, backoff=config.retry_backoff,
                           proxy=config.proxy, ssl_verify=config.ssl_verify)


def channel_sources(config: Config) -> list[ChannelSource]:
    sources = [resolve_channel(c, config.remote_url) for c in config.channels]
    seen: dict[str, str] = {}
    for source in sources:
        if source.path in seen or source.path.split("/")[0] == STATE_ROOT:
            raise ConfigError(f"key 'channels': {source.name!r} and {seen.get(source.path)!r} "
                              f"would both be mirrored to {source.path!r}")
        seen[source.path] = source.name
    return sources


def run_sync(config: Config, *, output: Output, dry_run: bool = False,
             verify: bool = False) -> SyncReport:
    """Mirror every configured channel; see the module docstring for the order of work."""
    started = time.monotonic()
    sources = channel_sources(config)
    spec = FilterSpec.from_config(config.platforms, config.license_blacklist,
                                  config.blacklist, config.whitelist)
    mirror_dir = Path(config.mirror_dir)
    report = SyncReport(dry_run=dry_run)
    if dry_run:
        _run(config, sources, spec, mirror_dir, output, report, dry_run, verify)
    else:
        try:
            mirror_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"key 'mirror_dir': cannot create {mirror_dir} ({exc.strerror})") \
                from None
        with TreeLock(mirror_dir / STATE_ROOT / "lock"):
            _run(config, sources, spec, mirror_dir, output, report, dry_run, verify)
            _write_diff_file(config, report)
    report.seconds = time.monotonic() - started
    return report


def _run(config: Config, sources: list[ChannelSource], spec: FilterSpec, mirror_dir: Path,
         output: Output, report: SyncReport, dry_run: bool, verify: bool) -> None:
    guard = FreeSpaceGuard(mirror_dir if mirror_dir.exists() else mirror_dir.parent,
                           config.minimum_free_space)
    with Downloader(network_settings(config), free_space=guard) as downloader:
        work = _gather(config, sources, spec, mirror_dir, downloader, output, report, verify)
        if dry_run:
            return
        _download(work, downloader, output, report)
        for w in work:
            _publish(w, config, report)
        _publish_channeldata(work, mirror_dir, report)


def _gather(config: Config, sources: list[ChannelSource], spec: FilterSpec, mirror_dir: Path,
            downloader: Downloader, output: Output, report: SyncReport,
            verify: bool = False) -> list[_Work]:
    """Fetch, filter and plan every channel/platform (in parallel: mostly waiting)."""
    work = _platform_work(config, sources, mirror_dir, downloader, output, report)
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(work)))) as pool:
        list(pool.map(lambda w: _prepare(w, downloader, spec, config, verify), work))
    work = [w for w in work if not (w.probed and w.report.error == "not offered")]
    report.platforms.extend(w.report for w in work)
    for w in work:
        if w.report.error:
            output.error(f"{w.source.path}/{w.platform}: {w.report.error}")
    return work


@dataclass(frozen=True)
class ExplainRow:
    channel: str
    platform: str
    filename: str
    decision: Decision


def explain(config: Config, name: str, output: Output) -> tuple[list[ExplainRow], SyncReport]:
    """Every record matching `name` (a name, glob or spec), with the pipeline's decision.
    Reads upstream (conditionally, like a sync) and changes nothing."""
    from .entries import EntryError, parse_entry

    try:
        wanted = parse_entry(name)
    except EntryError as exc:
        raise ConfigError(f"--explain: {exc}") from None
    sources = channel_sources(config)
    spec = FilterSpec.from_config(config.platforms, config.license_blacklist,
                                  config.blacklist, config.whitelist)
    report = SyncReport(dry_run=True)
    with Downloader(network_settings(config)) as downloader:
        work = _gather(config, sources, spec, Path(config.mirror_dir), downloader, output,
                       report)
    rows = []
    for w in work:
        if w.upstream is None:
            continue
        for fn in sorted(w.decisions):
            if wanted.matches(w.upstream.records[fn]):
                rows.append(ExplainRow(w.source.path, w.platform, fn, w.decisions[fn]))
    return rows, report


def _platform_work(config: Config, sources: list[ChannelSource], mirror_dir: Path,
                   downloader: Downloader, output: Output, report: SyncReport) -> list[_Work]:
    work = []
    for source in sources:
        probed = False
        if config.platforms is not None:
            platforms = list(config.platforms)
        else:
            try:
                platforms, probed = discover_platforms(downloader, source,
                                                       config.max_repodata_size)
            except (HttpError, RepodataError) as exc:
                failed = PlatformReport(source.path, "*", error=f"cannot list platforms: {exc}")
                report.platforms.append(failed)
                output.error(f"{source.path}: {failed.error}")
                continue
        for platform in platforms:
            work.append(_Work(
                source, platform, source.local_dir(mirror_dir) / platform,
                state_dir(mirror_dir, source.path, platform),
                PlatformReport(source.path, platform), probed=probed and platform != "noarch"))
    return work


def _prepare(w: _Work, downloader: Downloader, spec: FilterSpec, config: Config,
             verify: bool) -> None:
    """Fetch, parse, filter and plan one platform; errors stay with the platform."""
    try:
        previous = load_state(w.state_folder)
        try:
            w.fetched = fetch_platform(downloader, w.source, w.platform, previous,
                                       w.state_folder, config.max_repodata_size)
        except NotOffered as exc:
            if w.probed:
                w.report.error = "not offered"
                return
            if w.platform != "noarch":
                raise RepodataError(str(exc)) from None
            w.fetched = None  # conda needs noarch: publish an empty one
        if w.fetched is not None:
            w.report.upstream_changed = w.fetched.changed
            w.upstream = parse_repodata(w.fetched.document, w.fetched.state.url or "",
                                        w.platform)
            for fn, why in w.upstream.refused.items():
                w.report.failed.append((fn, f"refused: {why}"))
            w.decisions = select(w.upstream.records, w.platform, spec)
        selected = {fn: w.upstream.records[fn] for fn, d in w.decisions.items() if d.kept} \
            if w.upstream else {}
        local = _local_packages(w.folder)
        published = published_records(w.folder / "repodata.json")
        # Files present but not in what we published (a run killed before publishing, or
        # files put there by hand) are hashed once; --verify hashes everything.
        to_hash = selected if verify else {fn: r for fn, r in selected.items()
                                           if fn in local and fn not in published}
        bad = _verify(w.folder, to_hash, local, config.workers) if to_hash else frozenset()
        w.plan = plan_platform(selected, local, bad, published)
        r = w.report
        r.selected, r.dropped = len(selected), len(w.decisions) - len(selected)
        r.to_download, r.to_download_bytes = len(w.plan.download), w.plan.download_bytes
        r.up_to_date = len(w.plan.up_to_date)
        r.to_delete, r.to_delete_bytes = len(w.plan.delete), w.plan.delete_bytes
    except (HttpError, RepodataError) as exc:
        w.report.error = str(exc)
    finally:
        w.report.seconds += time.monotonic() - w.started


def _local_packages(folder: Path) -> dict[str, int]:
    try:
        with os.scandir(folder) as entries:
            return {e.name: e.stat().st_size for e in entries
                    if is_package_file(e.name) and e.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        return {}


def _verify(folder: Path, selected: dict[str, Any], local: dict[str, int],
            workers: int) -> frozenset[str]:
    """Local files (of the right size) whose sha256 (else md5) does not match upstream's."""

    def bad(fn: str) -> bool:
        record = selected[fn]
        expected, algorithm = record.get("sha256"), "sha256"
        if not expected:
            expected, algorithm = record.get("md5"), "md5"
        if not expected:
            return False
        digest = hashlib.new(algorithm)
        with open(folder / fn, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest() != expected.lower()

    candidates = [fn for fn in selected if fn in local]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        verdicts = zip(candidates, pool.map(bad, candidates), strict=True)
        return frozenset(fn for fn, is_bad in verdicts if is_bad)


def _package_url(w: _Work, fn: str) -> str:
    base_url = w.upstream.info.get("base_url") if w.upstream else None
    if isinstance(base_url, str) and base_url:
        from urllib.parse import urljoin

        return urljoin(urljoin(w.fetched.state.url, base_url.rstrip("/") + "/"), fn)
    return f"{w.source.url}/{w.platform}/{fn}"


def _download(work: list[_Work], downloader: Downloader, output: Output,
              report: SyncReport) -> None:
    jobs: list[DownloadJob] = []
    owners: list[_Work] = []
    for w in work:
        if w.report.error or w.plan is None:
            continue
        for fn in w.plan.download:
            record = w.upstream.records[fn]
            jobs.append(DownloadJob(url=_package_url(w, fn), dest=w.folder / fn,
                                    size=record.size, sha256=record.sha256, md5=record.md5))
            owners.append(w)
    if not jobs:
        return
    results = downloader.download(jobs, output.progress("conda"))
    for w, result in zip(owners, results, strict=True):
        if result.ok:
            w.got.add(result.job.dest.name)
            w.report.downloaded += 1
            w.report.bytes += result.received
            report.changed_files.append(result.job.dest)
        else:
            w.report.failed.append((result.job.url, result.error or "failed"))
    report.stopped = downloader.stop_reason
    if report.stopped:
        output.error(f"stopped: {report.stopped}")


def _publish(w: _Work, config: Config, report: SyncReport) -> None:
    """Publish the platform's repodata, then delete what it no longer names."""
    if w.report.error or w.plan is None:
        return
    started = time.monotonic()
    w.folder.mkdir(parents=True, exist_ok=True)
    if w.upstream is None:
        document = empty_document(w.platform)
    else:
        document = restricted_document(w.upstream, set(w.plan.up_to_date) | w.got)
    report.changed_files.extend(publish_repodata(
        w.folder, document, shards=config.shards, shard_grace_seconds=config.shard_grace_period,
        shard_state_dir=w.state_folder).paths)
    if not config.keep_removed:
        for fn in w.plan.delete:
            try:
                (w.folder / fn).unlink()
                w.report.deleted += 1
            except FileNotFoundError:
                pass
    if w.fetched is not None and w.fetched.changed:
        save_state(w.state_folder, w.fetched.state, w.fetched.document)
    w.report.seconds += time.monotonic() - started


def _publish_channeldata(work: list[_Work], mirror_dir: Path, report: SyncReport) -> None:
    """channeldata.json per channel: its platforms and, per package, where it is mirrored,
    so another mirror (or a client) can discover the channel's platforms. A channel with a
    platform that failed keeps its previous channeldata.json."""
    channels: dict[str, dict[str, Any]] = {}
    broken = {w.source.path for w in work if w.report.error or w.plan is None}
    for w in work:
        if w.source.path in broken:
            continue
        doc = channels.setdefault(w.source.path, {"channeldata_version": 1, "packages": {},
                                                  "subdirs": []})
        doc["subdirs"].append(w.platform)
        for fn in (*w.plan.up_to_date, *sorted(w.got)):
            subdirs = doc["packages"].setdefault(w.upstream.records[fn].name,
                                                 {"subdirs": []})["subdirs"]
            if w.platform not in subdirs:
                subdirs.append(w.platform)
    for path, doc in channels.items():
        doc["subdirs"].sort()
        for package in doc["packages"].values():
            package["subdirs"].sort()
        doc["packages"] = dict(sorted(doc["packages"].items()))
        target = mirror_dir / path / "channeldata.json"
        if write_if_changed(target, msgspec.json.format(msgspec.json.encode(doc), indent=2)):
            report.changed_files.append(target)


def _write_diff_file(config: Config, report: SyncReport) -> None:
    from ..diff_file import write_diff_file

    if config.diff_file:
        report.diff_file = write_diff_file(config.diff_file, config.diff_append_epoch,
                                           report.changed_files)
