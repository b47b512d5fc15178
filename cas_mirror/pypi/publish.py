"""Publishing: a project's pages (HTML and PEP 691 JSON), its JSON API copy, and the
project list, each written atomically (a temporary file beside it, renamed into place,
removed again when the write fails), only after the files they link to are in place.

A write that fails raises `WriteFailed` naming the path and the problem; the caller decides
what it means (one project failed, or the disk is full and the run stops). Either way the
page a reader sees is the previous one or the new one, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import is_disk_full, os_problem
from . import pages, target
from .model import Listing
from .results import PROVENANCE_SUFFIX, ProjectWork, SyncReport
from .settings import PypiSettings
from .state import ProjectState, TreeState
from .target import Target, page_folder

log = logging.getLogger(__name__)

PAGE_NAMES, ALL_PAGE_NAMES = target.PAGE_NAMES, target.ALL_PAGE_NAMES


class WriteFailed(Exception):
    """Writing `path` failed (permission denied, read-only file system, disk full...)."""

    def __init__(self, path: Path, exc: OSError):
        super().__init__(f"cannot write {path}: {os_problem(exc)}")
        self.path = path
        self.disk_full = is_disk_full(exc)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into WriteFailed."""
    try:
        yield
    except OSError as exc:
        raise WriteFailed(path, exc) from None


def _provenance_href(s: PypiSettings, f, present: set[str]) -> str | None:
    """PEP 740: our copy of the provenance object, else upstream's when we keep no files."""
    if not f.provenance:
        return None
    if not s.release_files:
        return f.provenance
    mirrored = f"{f.relpath}{PROVENANCE_SUFFIX}"
    return _href(s, mirrored, f.provenance) if mirrored in present else None


def _href(s: PypiSettings, relpath: str, upstream_url: str) -> str:
    if s.root_uri:
        return f"{s.root_uri.rstrip('/')}/packages/{relpath}"
    if not s.release_files:
        return upstream_url
    return f"../../packages/{relpath}"


def _page_files(w: ProjectWork, s: PypiSettings, out_to: Target) -> list[pages.PageFile]:
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
                core = {"sha256": out_to.digest(meta)}
        out.append(pages.PageFile(f.filename, _href(s, f.relpath, f.url), f.hashes, size,
                                  f.requires_python, f.yanked, core, f.upload_time,
                                  _provenance_href(s, f, present)))
    return out


def publish_project(w: ProjectWork, s: PypiSettings, state: TreeState,
                    report: SyncReport, out_to: Target) -> None:
    """Write the project's pages to `out_to` and record it in `state` (its serial only
    when all went well, so that a failed file is tried again next run)."""
    files = _page_files(w, s, out_to)
    listed = {p.filename for p in files}
    versions = list(dict.fromkeys(f.version for f in w.selection.kept
                                  if f.version and f.filename in listed))
    serial = w.page.serial if w.page.serial is not None else w.want_serial
    outputs = {}
    page = w.page
    markers = pages.ProjectMarkers(page.status, page.status_reason, tuple(page.tracks),
                                   tuple(page.alternate_locations))
    if s.simple_format in ("ALL", "HTML"):
        body = pages.project_html(w.name, files, s.digest_name, markers)
        outputs["index.html"] = outputs["index.v1_html"] = body
    if s.simple_format in ("ALL", "JSON"):
        outputs["index.v1_json"] = pages.project_json(w.name, files, versions, serial,
                                                      markers)
    folder = page_folder(s, w.name)
    versioned = outputs.pop("index.html", None) if s.keep_index_versions else None
    out_to.write_pages(folder, outputs, report, fsync=False,
                       keep=("index.html",) if versioned is not None else ())
    if versioned is not None:
        out_to.write_versioned(folder, versioned, serial, s.keep_index_versions, report)
    out_to.remove_other_layout(w.name)
    if w.json_api is not None:
        out_to.write_json_api(w.name, w.json_api, report)
    w.published = True
    log.debug("published the pages of %s (serial %s, %d files)", w.name, serial, len(files))
    entries = dict(w.checked)
    if s.keep_removed and w.previous and w.plan is not None:
        for relpath in w.plan.delete:
            entries.setdefault(relpath, w.previous.files[relpath])
    ok = w.report.ok
    # A failed project forgets its page's validators, so the next run fetches it whole.
    state.projects[w.name] = ProjectState(
        w.display, serial if ok else (w.previous.serial if w.previous else None), entries,
        w.page.validators if ok else {})


def keep_unpublished(w: ProjectWork, state: TreeState) -> None:
    """A project whose pages could not be written: it keeps its previous serial (so the
    next run tries again), and owns both its previous files and those it got now. A new
    one stays out of the state, so that the project list does not name it; the next run
    examines it again and finds the files it got in place."""
    if w.previous is not None:
        state.projects[w.name] = ProjectState(w.previous.name, w.previous.serial,
                                              {**w.previous.files, **w.checked}, {})


def publish_root(s: PypiSettings, state: TreeState, listing: Listing,
                 report: SyncReport, out_to: Target) -> None:
    names = sorted(state.projects)
    outputs = {}
    if s.simple_format in ("ALL", "HTML"):
        body = pages.root_html([(n, state.projects[n].name) for n in names])
        outputs["index.html"] = outputs["index.v1_html"] = body
    if s.simple_format in ("ALL", "JSON"):
        last = listing.last_serial if listing.last_serial is not None else state.last_serial
        outputs["index.v1_json"] = pages.root_json(
            [(state.projects[n].name, state.projects[n].serial) for n in names], last)
    out_to.write_pages("simple", outputs, report, fsync=True)
    log.debug("published the project list (%d projects)", len(names))
