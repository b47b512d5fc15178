"""Preparing the projects whose serial moved, in parallel: fetch each page (and the JSON
API document with `json: true`), filter its files, see which are already in place, and plan
what to download and delete. Nothing is written here.

A page that cannot be fetched, a 404 included, fails its project: its mirrored copy is
kept. Only upstream's project list removes a project (plan.py).
"""

from __future__ import annotations

import logging
import threading
import time

from ..net import Downloader, HttpError
from ..output import Output
from ..text import safe
from .client import PageGone, UpstreamError, fetch_json_api, fetch_project
from .filters import FilterSpec
from .plan import WantedFile, plan_files
from .results import PROVENANCE_SUFFIX, PlannedFile, ProjectWork, SyncReport
from .settings import PypiSettings
from .target import Target

log = logging.getLogger(__name__)


class StopFlag:
    """stop_on_error: the first failure stops the run (pages not fetched, files not
    downloaded); reported once."""

    def __init__(self, downloader: Downloader, report: SyncReport, enabled: bool):
        self.downloader, self.report, self.enabled = downloader, report, enabled
        self.lock = threading.Lock()

    def error(self, what: str) -> None:
        if not self.enabled:
            return
        with self.lock:
            if self.report.stopped_on_error is None:
                self.report.stopped_on_error = (f"stopped after the first error "
                                                f"({safe(what)}): stop_on_error is true")
                self.downloader.stop(self.report.stopped_on_error, cause="stop_on_error")

    @property
    def stopped(self) -> bool:
        return self.report.stopped_on_error is not None


def prepare_all(work: list[ProjectWork], s: PypiSettings, spec: FilterSpec,
                downloader: Downloader, verify: bool, report: SyncReport,
                output: Output, out_to: Target) -> None:
    stop = StopFlag(downloader, report, s.stop_on_error)

    def prepare(w: ProjectWork) -> None:
        try:
            if stop.stopped:
                w.report.error = f"not fetched: {report.stopped_on_error}"
                return
            _prepare(w, s, spec, downloader, verify, out_to)
        except PageGone as exc:
            if w.gone_is_removal:
                w.gone = True
                log.info("%s", exc)
            else:
                w.report.error = str(exc)
        except (HttpError, UpstreamError) as exc:
            w.report.error = str(exc)
        finally:
            if w.report.error and not stop.stopped:
                output.failure(w.name, w.report.error)
            if w.report.error or w.report.failed:
                stop.error(w.name)
            w.report.seconds += time.monotonic() - w.started

    if len(work) == 1:
        prepare(work[0])
    elif work:
        from concurrent.futures import ThreadPoolExecutor  # (a no-op examines no project)

        with ThreadPoolExecutor(max_workers=min(s.workers, len(work)),
                                thread_name_prefix="pypi-page") as pool:
            list(pool.map(prepare, work))
    output.end_failures()


def _prepare(w: ProjectWork, s: PypiSettings, spec: FilterSpec, downloader: Downloader,
             verify: bool, out_to: Target) -> None:
    page = fetch_project(downloader, s.simple_url, w.name, w.want_serial, w.conditional)
    if page is None:
        w.not_modified = True
        log.debug("%s: not modified upstream", w.name)
        return
    w.page = page
    w.report.failed.extend(page.refused)
    # (imported with the first page examined: a run where no serial moved needs neither)
    from .locked import apply_pins
    from .selection import Selection, select_files

    if s.json:
        try:
            w.json_api = fetch_json_api(downloader, s.json_api_url, w.name)
        except (HttpError, UpstreamError) as exc:
            w.report.failed.append((f"{s.json_api_url}/{w.name}/json", str(exc)))
    w.selection = select_files(spec, w.name, page.files)
    if spec.pins:
        w.selection = apply_pins(w.selection, page.files, spec.pins, w.name)
    if page.status == "quarantined":  # PEP 792: an index must not offer its files
        w.selection = Selection([], {f.filename: "project-status: quarantined"
                                     for f in page.files})
        log.info("%s: quarantined upstream%s; its page lists no files", w.name,
                 f" ({page.status_reason})" if page.status_reason else "")
    wanted = _wanted_files(w) if s.release_files else []
    previous = w.previous.files if w.previous else {}
    in_place = set()
    for want in wanted:
        entry, problem = out_to.check_file(want, previous.get(want.relpath), verify)
        if entry is not None:
            in_place.add(want.relpath)
            w.checked[want.relpath] = entry
        elif want.relpath in previous or problem != "missing":
            w.bad[want.relpath] = problem
            log.info("%s: %s: %s; downloading it again", w.name, want.relpath, problem)
    w.plan = plan_files(wanted, in_place, previous)
    r = w.report
    r.selected, r.dropped = len(w.selection.kept), len(w.selection.dropped)
    r.up_to_date = len(w.plan.up_to_date)
    r.planned_download = [PlannedFile(want.relpath, want.size) for want in w.plan.download]
    if not s.keep_removed:
        r.planned_delete = [PlannedFile(relpath, previous[relpath][0])
                            for relpath in w.plan.delete]
    log.debug("%s: %d files selected, %d to download, %d to delete", w.name, r.selected,
              len(r.planned_download), len(r.planned_delete))


def _wanted_files(w: ProjectWork) -> list[WantedFile]:
    wanted = []
    for f in w.selection.kept:
        wanted.append(WantedFile(f.relpath, f.url, f.size, f.sha256, f.hashes.get("md5")))
        if f.core_metadata:
            hashes = f.core_metadata if isinstance(f.core_metadata, dict) else {}
            wanted.append(WantedFile(f"{f.relpath}.metadata", f"{f.url}.metadata", None,
                                     hashes.get("sha256"), hashes.get("md5"),
                                     metadata_of=f.relpath))
        if f.provenance:  # PEP 740: no digest is published for it; TLS vouches
            wanted.append(WantedFile(f"{f.relpath}{PROVENANCE_SUFFIX}", f.provenance, None,
                                     None, None, metadata_of=f.relpath))
    return wanted
