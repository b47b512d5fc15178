"""The PyPI sync, end to end:

config -> list upstream projects (Simple API JSON, or XML-RPC with fallback) -> choose
projects by name and serial -> fetch their pages (in parallel) -> filter files -> plan ->
download files and PEP 658 metadata -> publish project pages atomically -> publish the
project list -> delete removed projects and files -> remember state -> report.

Pages are published only after the files they link to are in place; files and projects
are deleted only after the pages that dropped them are published. A project whose page
could not be fetched keeps its previous pages; a file that failed is left out of its
project's page and the project is fetched again next run. One run per tree (a lock).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cas_index.atomic import write_if_changed

from ..config import Config
from ..errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL, ConfigError
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
from . import pages
from .client import (
    UpstreamError,
    XmlRpcUnavailable,
    fetch_json_api,
    fetch_listing,
    fetch_listing_xmlrpc,
    fetch_project,
)
from .filters import FilterSpec, Selection, select_files
from .model import Listing, ProjectPage
from .plan import FilesPlan, WantedFile, plan_files, plan_projects
from .settings import PypiSettings
from .state import ProjectState, TreeState, load_state, save_state

PAGE_NAMES = {"HTML": ("index.html", "index.v1_html"), "JSON": ("index.v1_json",),
              "ALL": ("index.html", "index.v1_html", "index.v1_json")}
ALL_PAGE_NAMES = PAGE_NAMES["ALL"]


@dataclass
class ProjectReport:
    name: str
    action: str = "sync"  # "sync" or "remove"
    why: str = ""  # for a removal
    selected: int = 0
    dropped: int = 0
    downloaded: int = 0
    bytes: int = 0
    deleted: int = 0
    to_download: int = 0
    to_download_bytes: int = 0
    up_to_date: int = 0
    to_delete: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or URL, why)
    error: str | None = None  # the project as a whole could not be synced
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


@dataclass
class SyncReport:
    projects: list[ProjectReport] = field(default_factory=list)
    source: str | None = None  # where the project list came from
    last_serial: int | None = None
    listed: int = 0
    unchanged: int = 0
    skipped: int = 0  # listed upstream, not selected
    seconds: float = 0.0
    dry_run: bool = False
    error: str | None = None  # the run could not list upstream
    refused: list[tuple[str, str]] = field(default_factory=list)  # from the project list
    notices: list[str] = field(default_factory=list)
    stopped: str | None = None  # disk space: exit 4
    stopped_on_error: str | None = None  # stop_on_error: exit 1
    diff_file: Path | None = None
    changed_files: list[Path] = field(default_factory=list)
    strays_removed: int = 0  # --verify: files no project owns, temporary leftovers

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_ABORTED
        if self.error or self.refused or self.stopped_on_error \
                or not all(p.ok for p in self.projects):
            return EXIT_PARTIAL
        return EXIT_OK


@dataclass
class _Project:
    """One project as it moves through the pipeline."""

    name: str
    display: str
    want_serial: int | None
    previous: ProjectState | None
    report: ProjectReport
    page: ProjectPage | None = None
    gone: bool = False
    json_api: bytes | None = None
    selection: Selection | None = None
    plan: FilesPlan | None = None
    checked: dict[str, list] = field(default_factory=dict)  # relpath -> state entry
    got: set[str] = field(default_factory=set)  # downloaded in this run
    started: float = field(default_factory=time.monotonic)


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
    if dry_run:
        _run(settings, spec, output, report, dry_run, verify)
    else:
        try:
            settings.web.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"key 'mirror_dir': cannot create {settings.web} "
                              f"({exc.strerror})") from None
        with TreeLock(settings.state_dir / "lock", what="cas-sync pypi"):
            _run(settings, spec, output, report, dry_run, verify)
            if settings.diff_file:
                from ..diff_file import write_diff_file

                report.diff_file = write_diff_file(settings.diff_file,
                                                   settings.diff_append_epoch,
                                                   report.changed_files, key="pypi.diff_file")
    report.seconds = time.monotonic() - started
    return report


def _run(s: PypiSettings, spec: FilterSpec, output: Output, report: SyncReport,
         dry_run: bool, verify: bool) -> None:
    state = load_state(s.state_dir)
    refetch_all = verify or not s.use_serial or (
        bool(state.projects) and state.fingerprint != s.fingerprint)
    folder = s.web if s.web.exists() else s.mirror_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    guard = FreeSpaceGuard(folder, s.minimum_free_space)
    with Downloader(s.network, free_space=guard) as downloader:
        listing = _list_upstream(s, downloader, state, refetch_all, output, report)
        if listing is None:
            return
        mirrored = {name: p.serial for name, p in state.projects.items()}
        projects_plan = plan_projects(listing, mirrored, spec, refetch_all)
        report.unchanged, report.skipped = len(projects_plan.unchanged), projects_plan.skipped
        work = [_Project(name, _display(name, listing, state), serial,
                         state.projects.get(name), ProjectReport(name))
                for name, serial in projects_plan.fetch.items()]
        if work:
            output.info(f"pypi: {len(work)} projects to examine, "
                        f"{len(projects_plan.unchanged)} unchanged")
        _prepare_all(work, s, spec, downloader, verify, report, output)
        removals = [ProjectReport(name, "remove", why)
                    for name, why in projects_plan.remove.items()]
        # A page that vanished since the listing: the project is gone upstream.
        removals += [ProjectReport(w.name, "remove", "removed upstream") for w in work
                     if w.gone and w.name in state.projects]
        report.projects.extend(w.report for w in work if not w.gone)
        report.projects.extend(removals)
        for r in removals:
            r.to_delete = len(state.projects[r.name].files)
        if dry_run:
            return
        _download(work, s, downloader, output, report)
        for w in work:
            _publish_project(w, s, state, report)
        removed_files = {r.name: state.projects.pop(r.name).files for r in removals}
        _publish_root(s, state, listing, report)
        for r in removals:
            _remove_project(r, s, removed_files[r.name])
        for w in work:
            _delete_dropped(w, s)
        if verify:
            _remove_strays(s, state, report)
        failed = any(not p.ok for p in report.projects) or report.stopped \
            or report.stopped_on_error
        if not failed:  # else the next XML-RPC changelog starts from the old serial again
            state.last_serial = listing.last_serial
        state.fingerprint = s.fingerprint
        save_state(s.state_dir, state)


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
                output.warn(note)
        if listing is None:
            listing = fetch_listing(downloader, s.simple_url)
    except (HttpError, UpstreamError) as exc:
        report.error = f"cannot list upstream projects: {exc}"
        output.error(report.error)
        return None
    report.source, report.last_serial = listing.source, listing.last_serial
    report.listed = len(listing.projects)
    report.refused.extend(listing.refused)
    for what, why in listing.refused:
        output.error(f"{what}: {why}")
    if listing.complete and not listing.projects and state.projects:
        report.error = ("upstream listed no projects at all; refusing to remove the whole "
                        "mirror (a broken upstream?)")
        output.error(report.error)
        return None
    return listing


# --------------------------------------------------------------------------- prepare


class _StopFlag:
    def __init__(self, downloader: Downloader, report: SyncReport, enabled: bool):
        self.downloader, self.report, self.enabled = downloader, report, enabled
        self.lock = threading.Lock()

    def error(self, what: str) -> None:
        if not self.enabled:
            return
        with self.lock:
            if self.report.stopped_on_error is None:
                self.report.stopped_on_error = (f"stopped after the first error ({what}): "
                                                "stop_on_error is true")
                self.downloader.stop(self.report.stopped_on_error)

    @property
    def stopped(self) -> bool:
        return self.report.stopped_on_error is not None


def _prepare_all(work: list[_Project], s: PypiSettings, spec: FilterSpec,
                 downloader: Downloader, verify: bool, report: SyncReport,
                 output: Output) -> None:
    stop = _StopFlag(downloader, report, s.stop_on_error)

    def prepare(w: _Project) -> None:
        try:
            if stop.stopped:
                w.report.error = f"not fetched: {report.stopped_on_error}"
                return
            _prepare(w, s, spec, downloader, verify)
        except (HttpError, UpstreamError) as exc:
            w.report.error = str(exc)
        finally:
            if w.report.error and not stop.stopped:
                output.error(f"{w.name}: {w.report.error}")
            if w.report.error or w.report.failed:
                stop.error(w.name)
            w.report.seconds += time.monotonic() - w.started

    if len(work) == 1:
        prepare(work[0])
    elif work:
        with ThreadPoolExecutor(max_workers=min(s.workers, len(work)),
                                thread_name_prefix="pypi-page") as pool:
            list(pool.map(prepare, work))


def _prepare(w: _Project, s: PypiSettings, spec: FilterSpec, downloader: Downloader,
             verify: bool) -> None:
    page = fetch_project(downloader, s.simple_url, w.name, w.want_serial)
    if page is None:
        w.gone = True
        return
    w.page = page
    w.report.failed.extend(page.refused)
    if s.json:
        try:
            w.json_api = fetch_json_api(downloader, s.json_api_url, w.name)
        except (HttpError, UpstreamError) as exc:
            w.report.failed.append((f"{s.json_api_url}/{w.name}/json", str(exc)))
    w.selection = select_files(spec, w.name, page.files)
    wanted = _wanted_files(w, s) if s.release_files else []
    previous = w.previous.files if w.previous else {}
    in_place = set()
    for want in wanted:
        entry = _check_local(s, want, previous.get(want.relpath), verify)
        if entry is not None:
            in_place.add(want.relpath)
            w.checked[want.relpath] = entry
    w.plan = plan_files(wanted, in_place, previous)
    r = w.report
    r.selected, r.dropped = len(w.selection.kept), len(w.selection.dropped)
    r.to_download, r.to_download_bytes = len(w.plan.download), w.plan.download_bytes
    r.up_to_date, r.to_delete = len(w.plan.up_to_date), len(w.plan.delete)


def _wanted_files(w: _Project, s: PypiSettings) -> list[WantedFile]:
    wanted = []
    for f in w.selection.kept:
        wanted.append(WantedFile(f.relpath, f.url, f.size, f.sha256, f.hashes.get("md5")))
        if f.core_metadata:
            hashes = f.core_metadata if isinstance(f.core_metadata, dict) else {}
            wanted.append(WantedFile(f"{f.relpath}.metadata", f"{f.url}.metadata", None,
                                     hashes.get("sha256"), hashes.get("md5"),
                                     metadata_of=f.relpath))
    return wanted


def _digest_for(s: PypiSettings, want: WantedFile) -> tuple[str | None, str | None]:
    """(algorithm, expected hex digest) to compare a local file with."""
    if s.digest_name == "md5" and want.md5:
        return "md5", want.md5
    if want.sha256:
        return "sha256", want.sha256
    if want.md5:
        return "md5", want.md5
    return None, None


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_local(s: PypiSettings, want: WantedFile, cached: list | None,
                 verify: bool) -> list | None:
    """The state entry of a local file that is in place and verified, else None."""
    path = s.web / "packages" / want.relpath
    try:
        st = path.stat()
    except OSError:
        return None
    if want.size is not None and st.st_size != want.size:
        return None
    algorithm, expected = _digest_for(s, want)
    if s.compare_method == "stat" and not verify:
        return [st.st_size, st.st_mtime_ns, algorithm, expected]
    if expected is None:
        return [st.st_size, st.st_mtime_ns, None, None]
    if not verify and cached and cached[:4] == [st.st_size, st.st_mtime_ns, algorithm, expected]:
        return cached
    if _hash_file(path, algorithm) != expected:
        return None
    return [st.st_size, st.st_mtime_ns, algorithm, expected]


# --------------------------------------------------------------------------- download


class _Progress(ProgressReporter):
    """The output's progress, plus stop_on_error's reaction to a failed file."""

    def __init__(self, inner: ProgressReporter, stop: _StopFlag):
        self.inner, self.stop = inner, stop

    def start(self, files: int, total_bytes: int) -> None:
        self.inner.start(files, total_bytes)

    def advance(self, nbytes: int) -> None:
        self.inner.advance(nbytes)

    def file_done(self, result: DownloadResult) -> None:
        self.inner.file_done(result)
        if not result.ok and not self.stop.stopped:
            self.stop.error(result.job.url)

    def finish(self) -> None:
        self.inner.finish()


def _download(work: list[_Project], s: PypiSettings, downloader: Downloader, output: Output,
              report: SyncReport) -> None:
    jobs: list[DownloadJob] = []
    owners: list[tuple[_Project, WantedFile]] = []
    for w in work:
        if w.plan is None or w.report.error:
            continue
        for want in w.plan.download:
            url, fallbacks = want.url, ()
            if s.download_mirror:
                url = f"{s.download_mirror.rstrip('/')}/packages/{want.relpath}"
                fallbacks = () if s.download_mirror_no_fallback else (want.url,)
            jobs.append(DownloadJob(url=url, dest=s.web / "packages" / want.relpath,
                                    size=want.size, sha256=want.sha256, md5=want.md5,
                                    fallback_urls=fallbacks))
            owners.append((w, want))
    if not jobs:
        return
    stop = _StopFlag(downloader, report, s.stop_on_error)
    results = downloader.download(jobs, _Progress(output.progress("pypi"), stop))
    for (w, want), result in zip(owners, results, strict=True):
        if result.ok:
            w.got.add(want.relpath)
            try:
                st = result.job.dest.stat()
            except OSError:
                continue
            algorithm, expected = _digest_for(s, want)
            if algorithm == "md5" and not want.sha256 and not want.md5:
                expected = None
            w.checked[want.relpath] = [st.st_size, st.st_mtime_ns, algorithm, expected]
            w.report.downloaded += 1
            w.report.bytes += result.received
            report.changed_files.append(result.job.dest)
        else:
            w.report.failed.append((result.job.url, result.error or "failed"))
    if downloader.stop_reason and not report.stopped_on_error:
        report.stopped = downloader.stop_reason
        output.error(f"stopped: {report.stopped}")


# --------------------------------------------------------------------------- publish


def _href(s: PypiSettings, relpath: str, upstream_url: str) -> str:
    if s.root_uri:
        return f"{s.root_uri.rstrip('/')}/packages/{relpath}"
    if not s.release_files:
        return upstream_url
    return f"../../packages/{relpath}"


def _page_files(w: _Project, s: PypiSettings) -> list[pages.PageFile]:
    present = set(w.checked)
    out = []
    for f in sorted(w.selection.kept, key=lambda f: f.filename):
        size = f.size
        core = f.core_metadata
        if s.release_files:
            if f.relpath not in present:
                continue
            size = w.checked[f.relpath][0] if size is None else size
            meta = f"{f.relpath}.metadata"
            if meta not in present:
                core = False
            elif core is True or (isinstance(core, dict) and "sha256" not in core):
                core = {"sha256": _hash_file(s.web / "packages" / meta, "sha256")}
        out.append(pages.PageFile(f.filename, _href(s, f.relpath, f.url), f.hashes, size,
                                  f.requires_python, f.yanked, core, f.upload_time))
    return out


def _publish_project(w: _Project, s: PypiSettings, state: TreeState,
                     report: SyncReport) -> None:
    if w.page is None or w.report.error or w.selection is None:
        return
    started = time.monotonic()
    folder = s.web / "simple" / w.name
    folder.mkdir(parents=True, exist_ok=True)
    files = _page_files(w, s)
    listed = {p.filename for p in files}
    versions = list(dict.fromkeys(f.version for f in w.selection.kept
                                  if f.version and f.filename in listed))
    serial = w.page.serial if w.page.serial is not None else w.want_serial
    outputs = {}
    if s.simple_format in ("ALL", "HTML"):
        body = pages.project_html(w.name, files, s.digest_name)
        outputs["index.html"] = outputs["index.v1_html"] = body
    if s.simple_format in ("ALL", "JSON"):
        outputs["index.v1_json"] = pages.project_json(w.name, files, versions, serial)
    for filename, body in outputs.items():
        if write_if_changed(folder / filename, body, fsync=False):
            report.changed_files.append(folder / filename)
    for filename in ALL_PAGE_NAMES:
        if filename not in outputs:
            (folder / filename).unlink(missing_ok=True)
    if w.json_api is not None:
        _publish_json_api(s, w.name, w.json_api, report)
    ok = w.report.ok
    entries = dict(w.checked)
    if s.keep_removed and w.previous and w.plan is not None:
        for relpath in w.plan.delete:
            entries.setdefault(relpath, w.previous.files[relpath])
    state.projects[w.name] = ProjectState(
        w.display, serial if ok else (w.previous.serial if w.previous else None), entries)
    if not ok and w.previous is None:
        state.projects[w.name].serial = None
    w.report.seconds += time.monotonic() - started


def _publish_json_api(s: PypiSettings, name: str, data: bytes, report: SyncReport) -> None:
    target = s.web / "json" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if write_if_changed(target, data, fsync=False):
        report.changed_files.append(target)
    link = s.web / "pypi" / name / "json"
    link.parent.mkdir(parents=True, exist_ok=True)
    wanted = f"../../json/{name}"
    if not link.is_symlink() or os.readlink(link) != wanted:
        tmp = link.with_name(".json.tmp-link")
        tmp.unlink(missing_ok=True)
        os.symlink(wanted, tmp)
        os.replace(tmp, link)


def _publish_root(s: PypiSettings, state: TreeState, listing: Listing,
                  report: SyncReport) -> None:
    folder = s.web / "simple"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(state.projects)
    outputs = {}
    if s.simple_format in ("ALL", "HTML"):
        body = pages.root_html([(n, state.projects[n].name) for n in names])
        outputs["index.html"] = outputs["index.v1_html"] = body
    if s.simple_format in ("ALL", "JSON"):
        last = listing.last_serial if listing.last_serial is not None else state.last_serial
        outputs["index.v1_json"] = pages.root_json(
            [(state.projects[n].name, state.projects[n].serial) for n in names], last)
    for filename, body in outputs.items():
        if write_if_changed(folder / filename, body):
            report.changed_files.append(folder / filename)
    for filename in ALL_PAGE_NAMES:
        if filename not in outputs:
            (folder / filename).unlink(missing_ok=True)


def _remove_project(r: ProjectReport, s: PypiSettings, files: dict[str, list]) -> None:
    """After the project list dropped it: its pages, JSON copies and (unless keep_removed)
    its files."""
    shutil.rmtree(s.web / "simple" / r.name, ignore_errors=True)
    (s.web / "json" / r.name).unlink(missing_ok=True)
    shutil.rmtree(s.web / "pypi" / r.name, ignore_errors=True)
    if s.keep_removed:
        return
    for relpath in files:
        if _delete_file(s, relpath):
            r.deleted += 1


def _delete_dropped(w: _Project, s: PypiSettings) -> None:
    if w.plan is None or w.report.error or s.keep_removed:
        return
    for relpath in w.plan.delete:
        if _delete_file(s, relpath):
            w.report.deleted += 1


def _delete_file(s: PypiSettings, relpath: str) -> bool:
    root = s.web / "packages"
    path = root / relpath
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    parent = path.parent
    while parent != root:  # PyPI's hashed layout leaves empty folders behind
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return True


def _remove_strays(s: PypiSettings, state: TreeState, report: SyncReport) -> None:
    """--verify: delete what no project owns under web/packages/ (unless keep_removed), and
    temporary files a killed run left anywhere in the tree."""
    owned = {relpath for p in state.projects.values() for relpath in p.files}
    root = s.web / "packages"
    for dirpath, _, filenames in os.walk(s.web):
        for filename in filenames:
            path = Path(dirpath) / filename
            temporary = filename.startswith(".") and (filename.endswith(".part")
                                                      or filename.startswith(".tmp-"))
            stray = Path(dirpath).is_relative_to(root) and not s.keep_removed and \
                path.relative_to(root).as_posix() not in owned
            if temporary or stray:
                path.unlink(missing_ok=True)
                report.strays_removed += 1
