"""The PyPI sync, end to end:

config -> check the tree is usable -> list upstream projects (Simple API JSON or HTML, or
XML-RPC with fallback; nothing with an exact-name whitelist, whose names are the list) ->
choose projects by name and serial (without a serial, the page is asked for conditionally
with the ETag / Last-Modified it last came with) -> prepare them (prepare.py: pages,
filters, plan) -> download files and PEP 658 metadata -> publish project pages, then the
project list (publish.py) -> delete removed projects, dropped files and stale `.part`
files (removal.py) -> remember state -> report (results.py, report.py).

Pages are published only after the files they link to are in place; files and projects
are deleted only after the pages that dropped them are published. A project whose page
could not be fetched or written keeps its previous pages; a file that failed is left out
of its project's page and the project is fetched again next run. The disk filling up
stops the run (exit 4) with what was published intact. One run per tree (a lock).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ..config import Config
from ..errors import CasError, ConfigError, DiskFullError, is_disk_full, os_problem
from ..lock import TreeLock
from ..net import (
    Downloader,
    DownloadJob,
    DownloadResult,
    FreeSpaceGuard,
    HttpError,
    ProgressReporter,
)
from ..output import Output
from ..paths import nearest_existing, not_writable
from ..text import plural, safe
from .client import (
    WHITELIST_SOURCE,
    UpstreamError,
    XmlRpcUnavailable,
    fetch_listing,
    fetch_listing_xmlrpc,
    whitelist_listing,
)
from .filters import FilterSpec
from .model import Listing
from .plan import WantedFile, plan_projects
from .prepare import StopFlag, prepare_all
from .publish import WriteFailed, keep_unpublished, publish_project, publish_root, writing
from .removal import delete_dropped, remove_project, remove_stale_parts, remove_strays
from .results import PROVENANCE_SUFFIX, PlannedFile, ProjectReport, ProjectWork, SyncReport
from .settings import PypiSettings
from .state import TreeState, clear_pending, load_pending, load_state, save_pending, save_state
from .target import Target, open_target

log = logging.getLogger(__name__)


def run_sync(config: Config, *, output: Output, dry_run: bool = False,
             verify: bool = False) -> SyncReport:
    """Mirror the configured part of upstream; see the module docstring for the order."""
    started = time.monotonic()
    settings = PypiSettings.from_config(config)
    report = SyncReport(dry_run=dry_run)
    if settings.create_org:
        report.notices.append("create_org has no meaning for a file tree; ignored")
        output.info("notice: create_org has no meaning for a file tree; ignored")
    spec = FilterSpec.from_settings(settings.values)
    if config.lockfiles:  # (the lockfile readers are imported only when there are some)
        from ..lockfiles import read_lockfiles
        from .locked import pinned_spec

        spec = pinned_spec(spec, read_lockfiles(config.lockfiles).pypi)
    check_tree(settings, config, dry_run)
    out_to = open_target(settings, config)
    if dry_run:
        _run(settings, spec, output, report, dry_run, verify, out_to)
    else:
        with TreeLock(settings.state_dir / "lock", what="cas-sync pypi"):
            try:
                _run(settings, spec, output, report, dry_run, verify, out_to)
            finally:
                out_to.close()
            if settings.diff_file:
                _write_diff_file(settings, report, output)
    report.seconds = time.monotonic() - started
    return report


def check_tree(s: PypiSettings, config: Config, dry_run: bool) -> None:
    """The tree's folders exist (or can be made) and can be written; else a ConfigError
    naming where `mirror_dir` was set. A dry run creates nothing: the nearest existing
    folder must be writable. A bucket tree: its settings agree (bucket.py), and this
    machine's folder for its state and staging is checked like a tree's."""
    if s.bucket is not None or s.storage_backend != "filesystem":
        from .bucket import check_bucket_settings

        check_bucket_settings(s, config)
    where = s.where_target(config)
    for path in (s.mirror_dir, s.tree, s.web, s.state_dir):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{where}: {path} is a file, not a folder")
    if dry_run:
        folder = nearest_existing(s.web)
        if not folder.is_dir():
            raise ConfigError(f"{where}: {folder} is a file, not a folder")
        if problem := not_writable(folder):
            raise ConfigError(f"{where}: cannot write in {folder}: {problem}")
        return
    for folder in (s.web, s.state_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".tmp-probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot write in {folder}: {os_problem(exc)}") from None


def _run(s: PypiSettings, spec: FilterSpec, output: Output, report: SyncReport,
         dry_run: bool, verify: bool, out_to: Target) -> None:
    state = load_state(s.state_dir)
    if not dry_run:
        out_to.begin(verify)  # a bucket: --verify LISTs; a first run HEADs the project list
    # Pins and the closure decide a project's files from other projects: look at all.
    refetch_all = verify or not s.use_serial or bool(spec.pins) or s.include_dependencies \
        or (bool(state.projects) and state.fingerprint != s.fingerprint)
    # A bucket's staging folder holds a few files at a time, never the run's total: no
    # minimum_free_space to ask for (a full local disk still stops the run, exit 4).
    guard = None if out_to.is_bucket else FreeSpaceGuard(nearest_existing(s.web),
                                                         s.minimum_free_space)
    with Downloader(s.network, free_space=guard) as downloader:
        # (the closure needs the whole list: dependencies are found in it)
        if spec.exact_names is not None and not s.use_xml_rpc and not s.include_dependencies:
            listing = whitelist_listing(spec.exact_names, state)
            report.source, report.listed = listing.source, len(listing.projects)
        else:
            listing = _list_upstream(s, downloader, state, refetch_all, output, report)
        if listing is None:
            return
        mirrored = {name: p.serial for name, p in state.projects.items()}
        projects_plan = plan_projects(listing, mirrored, spec, refetch_all)
        report.unchanged, report.skipped = len(projects_plan.unchanged), projects_plan.skipped
        work = [ProjectWork(name, _display(name, listing, state), serial,
                            state.projects.get(name), ProjectReport(name))
                for name, serial in projects_plan.fetch.items()]
        for w in work:  # no serial to compare: ask whether the page changed (ETag, digest)
            if w.want_serial is None and w.previous is not None and not refetch_all:
                w.conditional = w.previous.validators or None
            w.gone_is_removal = listing.source == WHITELIST_SOURCE
        if work:
            output.info(f"pypi: {plural(len(work), 'project')} to examine, "
                        f"{len(projects_plan.unchanged)} unchanged")
        prepare_all(work, s, spec, downloader, verify, report, output, out_to)
        if listing.source == WHITELIST_SOURCE:
            _whitelist_gone(work, listing, state, report, projects_plan.remove)
            work = [w for w in work if not w.gone]
            report.listed = len(listing.projects)  # the names upstream has a page for
        report.unchanged += sum(1 for w in work if w.not_modified)
        work = [w for w in work if not w.not_modified]
        if s.include_dependencies:
            from .depends import Closure, pull_dependencies

            pulled = pull_dependencies(
                work, Closure(spec, s.values), downloader, listing,
                lambda n: ProjectWork(n, _display(n, listing, state),
                                      listing.projects[n].serial, state.projects.get(n),
                                      ProjectReport(n)),
                lambda more, dep_spec: prepare_all(more, s, dep_spec, downloader, verify,
                                                   report, output, out_to))
            for name in pulled:
                projects_plan.remove.pop(name, None)
        if problems := [p for w in work if w.selection for p in w.selection.problems]:
            from ..lockfiles import LockfileError  # (only pins have problems)

            raise LockfileError("\n".join(problems))
        removals = [ProjectReport(name, "remove", why)
                    for name, why in projects_plan.remove.items()]
        for r in removals:
            log.info("%s: to be removed (%s)", r.name, r.why)
            if not s.keep_removed:
                r.planned_delete = [PlannedFile(relpath, entry[0]) for relpath, entry
                                    in sorted(state.projects[r.name].files.items())]
        report.projects.extend(w.report for w in work)
        report.projects.extend(removals)
        if dry_run:
            return
        pending = load_pending(s.state_dir)
        planned = {want.relpath for w in work for want in w.downloads}
        _remember_pending(s, pending | planned)
        _download(work, s, downloader, output, report, out_to)
        _publish(work, removals, s, state, listing, report, output, out_to)
        report.stale_parts_removed = remove_stale_parts(s, pending | planned)
        if s.cleanup:
            _cleanup(s, report, output)
        if verify:
            owned = {relpath for p in state.projects.values() for relpath in p.files}
            if out_to.is_bucket:
                out_to.remove_strays(owned, report)
            else:
                remove_strays(s, owned, report)
        # A failure keeps the old serial, so the next XML-RPC changelog asks again for what
        # this run did not mirror (names the list refused stay refused: not a failure here).
        failed = report.stopped or report.stopped_on_error or report.write_errors \
            or not all(p.ok for p in report.projects)
        if not failed:
            state.last_serial = listing.last_serial
        state.fingerprint = s.fingerprint
        try:
            with writing(s.state_dir / "state.json"):
                save_state(s.state_dir, state)
                clear_pending(s.state_dir)
        except WriteFailed as exc:
            _write_failed(report, output, exc)


def _whitelist_gone(work: list[ProjectWork], listing: Listing, state: TreeState,
                    report: SyncReport, remove: dict[str, str]) -> None:
    """Exact-name whitelist (no project list fetched): a page that answers 404/410 is the
    only word on a project's removal. Mirrored: it is removed; never mirrored: skipped."""
    for w in work:
        if w.gone:
            if w.name in state.projects:
                remove[w.name] = "removed upstream (its page answers 404/410)"
            else:
                report.skipped += 1
            listing.projects.pop(w.name, None)


def _display(name: str, listing: Listing, state: TreeState) -> str:
    listed = listing.projects.get(name)
    if listed is not None:
        return listed.name
    previous = state.projects.get(name)
    return previous.name if previous else name


def _list_upstream(s: PypiSettings, downloader: Downloader, state: TreeState,
                   refetch_all: bool, output: Output, report: SyncReport) -> Listing | None:
    listing = None
    try:
        if s.use_xml_rpc:
            since = None if refetch_all or state.last_serial is None else state.last_serial
            try:
                listing = fetch_listing_xmlrpc(downloader, s.xmlrpc_url, since)
            except XmlRpcUnavailable as exc:
                note = f"{exc}; using the Simple API project list instead"
                report.notices.append(note)
                output.warn(safe(note))
        if listing is None:
            listing = fetch_listing(downloader, s.simple_url)
    except (HttpError, UpstreamError) as exc:
        report.error = f"cannot list upstream projects: {exc}"
        output.error(safe(report.error))
        return None
    log.info("upstream lists %d projects (%s, serial %s)", len(listing.projects),
             listing.source, listing.last_serial)
    report.source, report.last_serial = listing.source, listing.last_serial
    report.listed = len(listing.projects)
    report.refused.extend(listing.refused)
    for what, why in listing.refused:
        output.error(f"{safe(what)}: {safe(why)}")
    if listing.complete and not listing.projects and state.projects:
        report.error = ("upstream listed no projects at all; refusing to remove the whole "
                        "mirror (a broken upstream?)")
        output.error(report.error)
        return None
    return listing


def _remember_pending(s: PypiSettings, relpaths: set[str]) -> None:
    """Before downloading: which .part files a killed run may leave (see state.py)."""
    if not relpaths:
        return
    try:
        save_pending(s.state_dir, relpaths)
    except OSError as exc:  # only the clean-up after a killed run depends on it
        log.warning("cannot record the pending downloads in %s: %s", s.state_dir,
                    os_problem(exc))


def _stop(report: SyncReport, output: Output, reason: str) -> None:
    if report.stopped is None:
        report.stopped = reason
        output.error(f"stopped: {reason}")


def _write_failed(report: SyncReport, output: Output, exc: WriteFailed) -> None:
    """A write that is not one project's: the project list, the state, the diff file."""
    if exc.disk_full:
        _stop(report, output, f"the disk is full: {exc}")
    else:
        report.write_errors.append(str(exc))
        output.error(str(exc))


# --------------------------------------------------------------------------- download


class _Progress(ProgressReporter):
    """The output's progress, plus stop_on_error's reaction to a failed file. Files of
    unknown size (PEP 658 .metadata) grow the total as their bytes arrive, so the bytes
    done never pass the total."""

    def __init__(self, inner: ProgressReporter, stop: StopFlag, out_to: Target):
        self.inner, self.stop, self.out_to = inner, stop, out_to
        self.lock = threading.Lock()
        self.total = self.received = 0

    def start(self, files: int, total_bytes: int) -> None:
        self.total = total_bytes
        self.inner.start(files, total_bytes)

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.received += nbytes
            grown = max(0, self.received - self.total)
            self.total += grown
        grow = getattr(self.inner, "grow_total", None)
        if grown and grow is not None:
            grow(grown)
        self.inner.advance(nbytes)

    def file_done(self, result: DownloadResult) -> None:
        self.out_to.file_downloaded(result)
        self.inner.file_done(result)
        if not result.ok and not self.stop.stopped:
            self.stop.error(result.job.url)

    def finish(self) -> None:
        self.inner.finish()


def _download(work: list[ProjectWork], s: PypiSettings, downloader: Downloader,
              output: Output, report: SyncReport, out_to: Target) -> None:
    jobs: list[DownloadJob] = []
    owners: list[tuple[ProjectWork, WantedFile]] = []
    for w in work:
        for want in w.downloads:
            url, fallbacks = want.url, ()
            if s.download_mirror and not want.relpath.endswith(PROVENANCE_SUFFIX):
                # (provenance objects live on the index that issued them, not on mirrors)
                url = f"{s.download_mirror.rstrip('/')}/packages/{want.relpath}"
                fallbacks = () if s.download_mirror_no_fallback else (want.url,)
            jobs.append(DownloadJob(url=url, dest=s.web / "packages" / want.relpath,
                                    size=want.size, sha256=want.sha256, md5=want.md5,
                                    fallback_urls=fallbacks))
            owners.append((w, want))
    if not jobs:
        return
    stop = StopFlag(downloader, report, s.stop_on_error)
    try:
        try:
            results = downloader.download(jobs, _Progress(output.progress("pypi"), stop,
                                                          out_to))
        finally:
            out_to.downloads_done()
    except OSError as exc:  # a folder under web/packages/ could not be made
        problem = f"cannot write under {s.web / 'packages'}: {os_problem(exc)}"
        if is_disk_full(exc):
            _stop(report, output, f"the disk is full: {problem}")
        else:
            output.error(problem)
        for w, _ in owners:
            w.report.error = f"files not downloaded: {problem}"
        return
    for (w, want), result in zip(owners, results, strict=True):
        if result.ok:
            _downloaded(w, want, result, report, out_to)
        else:
            w.report.failed.append((result.job.url, result.error or "failed"))
    for w in work:
        for relpath, problem in w.bad.items():
            action = "downloaded again" if relpath in w.got else "not repaired (see failures)"
            w.report.repaired.append((relpath, f"{problem}; {action}"))
    if downloader.stop_reason and not report.stopped_on_error:
        _stop(report, output, downloader.stop_reason)


def _downloaded(w: ProjectWork, want: WantedFile, result: DownloadResult,
                report: SyncReport, out_to: Target) -> None:
    w.got.add(want.relpath)
    report.changed_files.append(out_to.changed(result.job.dest, want.relpath))
    if want.metadata_of:
        w.report.metadata_downloaded += 1
    else:
        w.report.downloaded += 1
    w.report.bytes += result.received
    entry = out_to.stored(want, result)
    if entry is not None:
        w.checked[want.relpath] = entry


# --------------------------------------------------------------------------- publish


def _publish(work: list[ProjectWork], removals: list[ProjectReport], s: PypiSettings,
             state: TreeState, listing: Listing, report: SyncReport, output: Output,
             out_to: Target) -> None:
    """Project pages, then the project list, then deletions; a full disk stops publishing
    (what was written stays consistent), another write problem fails its project."""
    for w in work:
        if w.page is None or w.report.error or w.selection is None:
            continue
        if report.stopped:
            keep_unpublished(w, state)
            continue
        started = time.monotonic()
        try:
            publish_project(w, s, state, report, out_to)
        except WriteFailed as exc:
            keep_unpublished(w, state)
            if exc.disk_full:
                _stop(report, output, f"the disk is full: {exc}")
            else:
                w.report.error = str(exc)
                output.error(f"{w.name}: {exc}")
        w.report.seconds += time.monotonic() - started
    removed = {}
    if not report.stopped:
        removed = {r.name: state.projects.pop(r.name) for r in removals}
        try:
            publish_root(s, state, listing, report, out_to)
        except WriteFailed as exc:
            state.projects.update(removed)  # still listed: not removed
            removed = {}
            _write_failed(report, output, exc)
    for r in removals:
        if r.name in removed:
            remove_project(r, s, removed[r.name].files, out_to)
            if r.error:
                output.error(f"{r.name}: {r.error}")
                state.projects[r.name] = removed[r.name]  # to be tried again
    for w in work:
        delete_dropped(w, s, out_to)


def _cleanup(s: PypiSettings, report: SyncReport, output: Output) -> None:
    """bandersnatch's cleanup: legacy project folders with non-normalized names."""
    from .hashindex import remove_legacy_folders

    try:
        removed = remove_legacy_folders(s.web / "simple", s.hash_index)
    except OSError as exc:
        report.write_errors.append(f"cleanup: {os_problem(exc)}")
        output.error(f"cleanup: {os_problem(exc)}")
        return
    if removed:
        note = (f"cleanup: removed {plural(len(removed), 'legacy project folder')} "
                f"({', '.join(removed[:5])}{', ...' if len(removed) > 5 else ''})")
        report.notices.append(note)
        output.info(note)


def _write_diff_file(s: PypiSettings, report: SyncReport, output: Output) -> None:
    from ..diff_file import write_diff_file

    try:
        report.diff_file = write_diff_file(s.diff_file, s.diff_append_epoch,
                                           report.changed_files, key="pypi.diff_file")
    except DiskFullError as exc:
        _stop(report, output, str(exc))
    except CasError as exc:
        report.write_errors.append(str(exc))
        output.error(str(exc))
