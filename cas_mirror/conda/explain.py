"""`cas-sync --explain NAME`: every record matching NAME (a name, glob or spec), per
configured channel and platform, with the pipeline's decision, the step that decided, and
every step that matched it (a record both license- and name-blacklisted shows both).

Records that exist only on platforms not configured are shown too ("dropped: platform
osx-64 not configured"). Finding them costs one request per channel: the upstream
`channeldata.json` lists, per package name, the platforms that have it (no other
platform's repodata is fetched, so those rows name the package, not each file, and a
version in NAME cannot be checked against them). A channel without channeldata.json gets
a note instead. Reads upstream like a sync (conditionally) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ..config import Config
from ..errors import EXIT_PARTIAL, ConfigError
from ..net import Downloader, HttpError
from ..output import Output
from .depends import DEPENDENCY
from .entries import EntryError, parse_entry
from .fetch import ChannelSource, fetch_channeldata, valid_subdirs
from .filter import PLATFORMS, Decision, matched_steps
from .gather import channel_sources, filter_spec, gather, network_settings
from .repodata import RepodataError
from .results import SyncReport
from .wishes import LOCKFILE, SOLVE

ADDED_BY = (DEPENDENCY, LOCKFILE, SOLVE)


@dataclass(frozen=True)
class ExplainRow:
    channel: str
    platform: str
    filename: str  # for a platform not configured: the package name
    decision: Decision
    matched: tuple[tuple[str, str], ...] = ()  # every (step, why) that matched


@dataclass
class ExplainResult:
    report: SyncReport
    rows: list[ExplainRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if not self.rows else self.report.exit_code


def explain(config: Config, name: str, output: Output
            ) -> tuple[list[ExplainRow], ExplainResult]:
    try:
        wanted = parse_entry(name)
    except EntryError as exc:
        raise ConfigError(f"--explain: {exc}") from None
    sources = channel_sources(config)
    spec = filter_spec(config)
    result = ExplainResult(SyncReport(dry_run=True))
    with Downloader(network_settings(config)) as downloader:
        work = gather(config, sources, lambda: spec, Path(config.mirror_dir), downloader, output,
                      result.report)
        for w in work:
            if w.upstream is None:
                continue
            for fn in sorted(w.decisions):
                record = w.upstream.records[fn]
                if wanted.matches(record):
                    decision = w.decisions[fn]
                    steps = matched_steps(record, w.platform, spec)
                    if decision.step in ADDED_BY:  # the closure, a lockfile, a solution
                        steps.append((decision.step, decision.reason))
                    result.rows.append(ExplainRow(
                        w.source.path, w.platform, fn, decision, tuple(steps)))
        if config.platforms is not None:
            for source in sources:
                _other_platforms(downloader, source, wanted.name_glob, config, result)
    for note in result.notes:
        output.info(note)
    return result.rows, result


def _other_platforms(downloader: Downloader, source: ChannelSource, name_glob: str,
                     config: Config, result: ExplainResult) -> None:
    """Rows for packages matching `name_glob` on platforms upstream has but we do not
    mirror, from the channel's channeldata.json."""
    try:
        document = fetch_channeldata(downloader, source, config.max_repodata_size)
    except (HttpError, RepodataError) as exc:
        result.notes.append(f"{source.path}: other platforms not checked ({exc})")
        return
    if document is None:
        result.notes.append(f"{source.path}: upstream has no channeldata.json; platforms "
                            "not configured were not checked")
        return
    packages = document.get("packages")
    if not isinstance(packages, dict):
        return
    configured = set(config.platforms)
    for package in sorted(p for p in packages if isinstance(p, str)):
        if not fnmatchcase(package.lower(), name_glob):
            continue
        entry = packages[package]
        for platform in sorted(valid_subdirs(entry.get("subdirs") if isinstance(entry, dict)
                                             else None)):
            if platform not in configured:
                why = f"platform {platform} not configured"
                result.rows.append(ExplainRow(source.path, platform, package,
                                              Decision(False, PLATFORMS, why),
                                              ((PLATFORMS, why),)))
