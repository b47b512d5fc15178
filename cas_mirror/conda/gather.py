"""The first half of a conda sync, shared by a sync, a dry run and `--explain`: for every
configured channel and platform, fetch upstream repodata (from its shards when upstream
offers them and `upstream_shards` is on: upstream_shards.py), filter it, look at the local
folder and plan what to download, keep and delete. Changes nothing on disk but the shard
cache, and that only when `writable` (a sync, not a dry run or `--explain`).

Between filtering and planning, wishes.py completes each channel's selection: the files
lockfiles name, the solutions of `environments`, the dependency closure (which, for a
sharded upstream, reads more shards in rounds through `_read_more`).

Errors stay with their platform (its report says what went wrong); the other platforms
go on. After planning, each channel's kept records are checked for dependencies nothing
kept provides (a warning in the report).

A sync passes `quiet_digest` (quiet.py): a platform whose upstream answers 304 and whose
recorded fingerprint still holds is not parsed, filtered or planned at all, as long as
every platform of its channel is in the same case.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, os_problem
from ..net import Downloader, HttpError, NetworkSettings
from ..output import Output
from ..text import safe
from . import quiet
from .errors import RepodataError
from .fetch import (
    VARIANTS,
    ChannelSource,
    Fetched,
    NotOffered,
    discover_platforms,
    fetch_platform,
    fetch_sharded,
    platform_url,
    resolve_channel,
)
from .results import PlannedFile, PlannedFiles, PlatformReport, SyncReport
from .run_exports import upstream_run_exports
from .state import STATE_ROOT, load_state, state_dir
from .target import LOCAL, Target
from .unsatisfied import check_dependencies
from .work import Work

# A platform found quiet is neither parsed, filtered nor planned: the modules that do it
# (repodata, filter, plan, upstream_shards, and msgspec beneath them) are imported where
# they are used, so that a run with nothing to do does not load them at all.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .filter import FilterSpec

log = logging.getLogger(__name__)


def network_settings(config: Config) -> NetworkSettings:
    return NetworkSettings(workers=config.workers, timeout=config.timeout,
                           retries=config.retries, backoff=config.retry_backoff,
                           proxy=config.proxy, ssl_verify=config.ssl_verify)


def filter_spec(config: Config) -> FilterSpec:
    from .filter import FilterSpec

    # Given conda lockfiles, only what they name (and the whitelist) is mirrored: a bare
    # "*" blacklist entry, "nothing unless asked for" (wishes.py asks for the locked
    # files). Lockfiles with PyPI entries only leave the conda selection alone.
    blacklist = config.blacklist
    if config.lockfiles:
        from ..lockfiles import read_lockfiles  # not needed by a run without lockfiles

        contents = read_lockfiles(config.lockfiles)
        if contents.conda or contents.environments:
            blacklist = [*blacklist, "*"]
    return FilterSpec.from_config(config.platforms, config.license_blacklist,
                                  blacklist, config.whitelist)


def channel_sources(config: Config) -> list[ChannelSource]:
    sources = [resolve_channel(c, config.remote_url) for c in config.channels]
    seen: dict[str, str] = {}
    for source in sources:
        if source.path in seen or source.path.split("/")[0] == STATE_ROOT:
            raise ConfigError(f"key 'channels': {source.name!r} and {seen.get(source.path)!r} "
                              f"would both be mirrored to {source.path!r}")
        seen[source.path] = source.name
    return sources


def gather(config: Config, sources: list[ChannelSource], spec: Callable[[], FilterSpec],
           mirror_dir: Path, downloader: Downloader, output: Output, report: SyncReport,
           verify: bool = False, writable: bool = False,
           quiet_digest: str | None = None, target: Target = LOCAL) -> list[Work]:
    """Fetch, filter and plan every channel/platform (in parallel: mostly waiting).
    `spec()`: the filters, asked for when a platform is first filtered."""
    with collector_paused():
        return _gather(config, sources, spec, mirror_dir, downloader, output, report,
                       verify, writable, quiet_digest, target)


@contextmanager
def collector_paused():
    """The cyclic garbage collector waits while the pipeline runs: a big platform is
    hundreds of thousands of records, plans and decisions alive at once, which its passes
    would walk again and again (the pipeline makes no reference cycles worth collecting
    early; reference counting frees the rest as usual)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _gather(config: Config, sources: list[ChannelSource], spec: Callable[[], FilterSpec],
            mirror_dir: Path, downloader: Downloader, output: Output, report: SyncReport,
            verify: bool, writable: bool, quiet_digest: str | None, target: Target) -> list[Work]:
    work = _platform_work(config, sources, mirror_dir, downloader, output, report)
    for w in work:
        w.target = target
    wishes = _Wishes(config, spec, sources)
    in_threads(lambda w: _prepare(w, downloader, spec, config, writable, wishes.names_of(w),
                                  quiet_digest), work)
    in_threads(lambda w: _read(w, downloader, spec, config, writable, wishes.names_of(w)),
               _demote(work))
    busy = [w for w in work if w.quiet is None]
    if busy and (asked := wishes.get()) is not None:
        from .wishes import complete
        complete(busy, asked, lambda w, names: _read_more(w, names, downloader,
                                                          spec, config, writable))
    in_threads(lambda w: _plan(w, config, verify), busy)
    work = [w for w in work if not (w.probed and w.report.error == "not offered")]
    report.platforms.extend(w.report for w in work)
    for w in work:
        if w.report.error:
            output.failure(f"{w.source.path}/{w.platform}", w.report.error)
    output.end_failures()
    check_dependencies(work)
    return work


_END = object()


def in_threads(task: Callable[[Work], None], work: list[Work], workers: int = 4) -> None:
    """`task(w)` for every platform, in up to `workers` threads (mostly waiting on the
    network), all finished on return; an exception a task raised (a bug: platform errors
    stay in their reports) is raised here after the others finished. Plain threads, not
    concurrent.futures: a no-op run should not import an executor for four requests."""
    if len(work) <= 1:
        for w in work:
            task(w)
        return
    items, lock, raised = iter(work), threading.Lock(), []

    def worker() -> None:
        while True:
            with lock:
                w = next(items, _END)
            if w is _END:
                return
            try:
                task(w)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                raised.append(exc)

    threads = [threading.Thread(target=worker, name=f"gather-{i}")
               for i in range(min(workers, len(work)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if raised:
        raise raised[0]


class _Wishes:
    """`Wishes.of` (wishes.py), worked out when a platform first needs it. A platform
    found quiet needs none: its fingerprint (quiet.py) covers everything `Wishes.of` reads
    (the configuration, the lockfiles it names and their stat), so a no-op does not
    import wishes/lockfile/solve code at all; nor does a run whose configuration asks
    for nothing `Wishes.of` would read (`get` is None)."""

    def __init__(self, config: Config, spec: Callable[[], FilterSpec],
                 sources: list[ChannelSource]):
        self._args = (config, spec, sources)
        self._lock = threading.Lock()
        self._wishes = None
        self._asked: bool | None = None

    def get(self):
        with self._lock:
            config, spec, sources = self._args
            if self._asked is None:
                # What Wishes.of reads: lockfiles, environments to solve, and the closure
                # switches (top level, or a whitelist mapping's own).
                self._asked = bool(config.lockfiles or config.closure == "solve"
                                   or config.include_dependencies
                                   or any(e.include_dependencies for e in spec().whitelist))
            if self._asked and self._wishes is None:
                from .wishes import Wishes
                self._wishes = Wishes.of(config, spec(), sources)
            return self._wishes

    def names_of(self, w: Work) -> Callable[[], frozenset[str]]:
        """The names a sharded upstream must read for `w` whatever the filters say."""
        def names() -> frozenset[str]:
            wishes = self.get()
            return frozenset() if wishes is None else wishes.names(w.source, w.platform)

        return names


def _platform_work(config: Config, sources: list[ChannelSource], mirror_dir: Path,
                   downloader: Downloader, output: Output, report: SyncReport) -> list[Work]:
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
            work.append(Work(
                source, platform, source.local_dir(mirror_dir) / platform,
                state_dir(mirror_dir, source.path, platform),
                PlatformReport(source.path, platform), probed=probed and platform != "noarch"))
    return work


def _demote(work: list[Work]) -> list[Work]:
    """The quiet platforms of channels where some platform is not quiet, made ready to be
    prepared again in full: a channel is published as a whole or not at all."""
    busy = {w.source.path for w in work if w.quiet is None
            and not (w.probed and w.report.error == "not offered")}
    demoted = [w for w in work if w.quiet is not None and w.source.path in busy]
    for w in demoted:  # what was fetched stays: it is read now
        w.quiet = w.plan = None
        w.report = PlatformReport(w.source.path, w.platform)
        w.started = time.monotonic()
    return demoted


def _prepare(w: Work, downloader: Downloader, spec: Callable[[], FilterSpec],
             config: Config, writable: bool, also: Callable[[], frozenset[str]],
             quiet_digest: str | None = None) -> None:
    """Fetch, parse and filter one platform; errors stay with the platform. A sync first
    checks whether there is anything to do at all (quiet.py)."""
    try:
        if not _fetch_or_quiet(w, downloader, spec, config, writable, also, quiet_digest):
            _read(w, downloader, spec, config, writable, also)
    except (HttpError, RepodataError) as exc:
        w.report.error = str(exc)
    finally:
        w.report.seconds += time.monotonic() - w.started


def _read(w: Work, downloader: Downloader, spec: Callable[[], FilterSpec], config: Config,
          writable: bool, also: Callable[[], frozenset[str]]) -> None:
    """Parse and filter what was fetched (also for a platform `_demote` gave back)."""
    if w.fetched is None or w.report.error is not None:
        return
    try:
        w.report.upstream_changed = w.fetched.changed
        if w.fetched.index_only:  # found quiet, then not: read its shards now
            from .upstream_shards import read_sharded

            w.fetched = read_sharded(downloader, platform_url(w.source, w.platform),
                                     w.platform, w.fetched.index_only, w.state_folder,
                                     config.max_repodata_size, spec(), writable=writable,
                                     also=also())
        reparse(w, spec)
    except (HttpError, RepodataError) as exc:
        w.report.error = str(exc)


def reparse(w: Work, spec: Callable[[], FilterSpec]) -> None:
    """Parse and filter the platform's fetched document (again, after more shards)."""
    from .filter import select
    from .repodata import parse_repodata

    w.upstream = parse_repodata(w.fetched.document, w.fetched.state.url or "", w.platform)
    if w.fetched.sharded is not None:
        w.upstream.refused.update(w.fetched.sharded.refused)
    w.decisions = select(w.upstream.records, w.platform, spec())


def _plan(w: Work, config: Config, verify: bool) -> None:
    """Look at the local folder and plan what to download, keep and delete."""
    if w.report.error is not None:
        return
    started = time.monotonic()
    try:
        if w.upstream is not None:
            for fn, why in w.upstream.refused.items():
                w.report.failed.append((fn, f"refused: {why}"))
        selected = w.kept()
        try:
            w.local = w.target.scan(w, verify)
        except OSError as exc:
            w.report.error = f"cannot use {w.folder}: {os_problem(exc)}"
            return
        from .plan import plan_platform
        from .repodata import published_records

        local = w.local.packages
        published = published_records(w.folder / "repodata.json")
        # Files present but not in what we published (a run killed before publishing, or
        # files put there by hand) are hashed once; --verify hashes everything.
        to_hash = selected if verify else {fn: selected[fn] for fn in local
                                           if fn in selected and fn not in published}
        bad = w.target.bad_hashes(w, to_hash, local, config.workers) if to_hash \
            else frozenset()
        w.plan = plan_platform(selected, local, bad, published, w.local.partials,
                               config.keep_removed)
        _fill_plan(w, selected, bad if verify else frozenset())
    finally:
        w.report.seconds += time.monotonic() - started


def _fetch_or_quiet(w: Work, downloader: Downloader, spec: Callable[[], FilterSpec],
                    config: Config, writable: bool, also: Callable[[], frozenset[str]],
                    quiet_digest: str | None) -> bool:
    """Fetch the platform's upstream metadata (and run_exports.json for a sync); True
    when that shows there is nothing to do (quiet.py) or the platform is not offered."""
    previous = load_state(w.state_folder)
    last = quiet.recorded(w.state_folder) if quiet_digest else None
    if last is not None and not last.still_quiet(time.time()):
        last = None

    def unchanged(state) -> bool:
        return last is not None and \
            quiet.fingerprint(quiet_digest, state, w.folder) == last.fingerprint

    try:
        w.fetched = _fetch(w, downloader, previous, spec, config, writable, also,
                           unchanged if last else None)
    except NotOffered as exc:
        if w.probed:
            w.report.error = "not offered"
            return True
        if w.platform != "noarch":
            raise RepodataError(str(exc)) from None
        w.fetched = None  # conda needs noarch: publish an empty one
        if last is not None and unchanged(previous):
            _be_quiet(w, last)
            return True
        return False
    log.debug("%s/%s: upstream %s", w.source.path, w.platform,
              "changed" if w.fetched.changed else "unchanged (cached copy)")
    if writable:
        _read_run_exports(w, downloader, config)
    if last is not None and not w.fetched.changed and not w.run_exports_fetched \
            and w.run_exports_error is None and unchanged(w.fetched.state):
        _be_quiet(w, last)
        return True
    return False


def _be_quiet(w: Work, last: quiet.Recorded) -> None:
    """Nothing to do: report what the last run published."""
    log.info("%s/%s: upstream and mirror unchanged since the last run; nothing to do",
             w.source.path, w.platform)
    w.quiet = last
    r = w.report
    r.upstream_changed = False
    r.selected, r.dropped, r.up_to_date = last.selected, last.dropped, last.up_to_date
    r.unsatisfied, r.shards = last.unsatisfied, last.shards


def _fetch(w: Work, downloader: Downloader, previous, spec: Callable[[], FilterSpec],
           config: Config, writable: bool, also: Callable[[], frozenset[str]],
           unchanged=None) -> Fetched:
    """The platform's upstream metadata: from its shards when upstream offers them (and
    `upstream_shards`), else its whole repodata.json. A platform read whole last time is
    asked for repodata.json first (an unchanged upstream stays one 304) and looked at for
    a shard index only when that changed. `unchanged(state)`: whether an unchanged
    shard index leaves nothing to do (then no shard is read)."""
    base = platform_url(w.source, w.platform)

    def sharded() -> Fetched | None:
        return fetch_sharded(downloader, base, w.platform, previous, w.state_folder,
                             config.max_repodata_size, spec, writable=writable, also=also,
                             unchanged=unchanged)

    def whole() -> Fetched:
        return fetch_platform(downloader, w.source, w.platform, previous, w.state_folder,
                              config.max_repodata_size)

    if not config.upstream_shards:
        return whole()
    if previous.url and previous.url.startswith(base) and previous.url[len(base):] in VARIANTS:
        try:
            fetched = whole()
        except NotOffered:  # repodata.json gone: perhaps shards only now
            if (found := sharded()) is None:
                raise
            return found
        return (sharded() or fetched) if fetched.changed else fetched
    return sharded() or whole()


def _read_more(w: Work, names: set[str], downloader: Downloader,
               spec: Callable[[], FilterSpec], config: Config, writable: bool) -> bool:
    """For the closure's rounds: read the shards of `names` too (a sharded upstream) and
    filter the platform again; False when there was nothing more to read."""
    if w.fetched is None or w.fetched.sharded is None or w.report.error is not None:
        return False
    from .upstream_shards import read_more_shards

    try:
        if not read_more_shards(downloader, w.fetched, names, w.platform, w.state_folder,
                                config.max_repodata_size, writable=writable):
            return False
        reparse(w, spec)
    except (HttpError, RepodataError) as exc:
        w.report.error = str(exc)
        return False
    return True


def _read_run_exports(w: Work, downloader: Downloader, config: Config) -> None:
    """Upstream's run_exports.json, to publish beside the repodata; a problem with it is
    a warning (the published one stays), never the platform's failure."""
    try:
        w.run_exports, w.run_exports_fetched = upstream_run_exports(
            downloader, platform_url(w.source, w.platform), w.fetched.state, w.state_folder,
            w.fetched.changed, config.max_repodata_size)
    except (HttpError, RepodataError) as exc:
        w.run_exports_error = str(exc)


def _fill_plan(w: Work, selected: dict, verified_bad: frozenset[str]) -> None:
    r, plan = w.report, w.plan
    r.selected, r.dropped = len(selected), len(w.decisions) - len(selected)
    r.to_download, r.to_download_bytes = len(plan.download), plan.download_bytes
    r.up_to_date = len(plan.up_to_date)
    r.to_delete = len(plan.delete) + len(plan.stale_partials)
    r.to_delete_bytes = plan.delete_bytes
    from .plan import record_size  # (imported by _plan before this runs)

    # Downloads come in `selected`'s order (plan_platform): all of them, as in a new
    # folder, are its records as they are, without a look-up per file.
    records = selected.values() if len(plan.download) == len(selected) else \
        map(selected.__getitem__, plan.download)
    r.planned_download = PlannedFiles(plan.download, list(map(record_size, records)))
    r.planned_delete = [PlannedFile(fn, w.local.packages[fn]) for fn in plan.delete]
    r.planned_delete += [PlannedFile(f"{fn} (partial download)", w.local.partials[fn])
                         for fn in plan.stale_partials]
    r.verified_bad = dict.fromkeys(sorted(verified_bad), "to be downloaded again")
    for fn in verified_bad:
        log.info("%s/%s: %s does not match upstream's hash", w.source.path, w.platform,
                 safe(fn))
