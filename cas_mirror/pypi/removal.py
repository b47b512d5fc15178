"""Deleting, always after the pages that stopped naming a thing are published: projects
upstream's list dropped (or the filters no longer select), files a project's page no
longer lists, `.part` files of downloads no longer planned (a killed run leaves them), and
with `--verify` whatever no project owns. Unless `keep_removed`, files go too.

A delete that fails (a read-only or foreign folder) fails that project alone; the run goes
on and the next one tries again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cas_index.atomic import TEMP_PREFIX

from ..errors import os_problem
from ..net import PART_SUFFIX, part_path
from .results import ProjectReport, ProjectWork, SyncReport
from .settings import PypiSettings

if TYPE_CHECKING:
    from .target import Target

log = logging.getLogger(__name__)


def remove_project(r: ProjectReport, s: PypiSettings, files: Iterable[str],
                   out_to: Target) -> None:
    """After the project list dropped it: its pages, JSON copies and (unless keep_removed)
    its files."""
    log.info("removing project %s (%s)", r.name, r.why)
    try:
        out_to.remove_pages(r.name)
        if s.keep_removed:
            return
        for relpath in files:
            if out_to.delete_file(relpath):
                r.count_deleted(relpath)
    except OSError as exc:
        r.error = f"cannot remove {exc.filename or s.web}: {os_problem(exc)}"


def delete_dropped(w: ProjectWork, s: PypiSettings, out_to: Target) -> None:
    """The files a project's new pages no longer list."""
    if not w.published or w.plan is None or s.keep_removed:
        return
    for relpath in w.plan.delete:
        try:
            if out_to.delete_file(relpath):
                w.report.count_deleted(relpath)
                log.debug("deleted %s (%s no longer lists it)", relpath, w.name)
        except OSError as exc:
            w.report.failed.append((relpath, f"cannot delete: {os_problem(exc)}"))


def delete_file(s: PypiSettings, relpath: str) -> bool:
    root = s.web / "packages"
    path = root / relpath
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    prune_folders(path.parent, root)
    return True


def prune_folders(parent: Path, root: Path) -> None:
    while parent != root:  # PyPI's hashed layout leaves empty folders behind
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def remove_stale_parts(s: PypiSettings, relpaths: Iterable[str]) -> int:
    """Delete the `.part` files of `relpaths` (downloads planned by this run or by a run
    that was killed): after the downloads, none of them is worth resuming. Returns how
    many were found."""
    root = s.web / "packages"
    removed = 0
    for relpath in relpaths:
        part = part_path(root / relpath)
        try:
            part.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot delete %s: %s", part, os_problem(exc))
            continue
        removed += 1
        log.info("deleted %s, left by an interrupted download", part)
        prune_folders(part.parent, root)
    return removed


def remove_strays(s: PypiSettings, owned: set[str], report: SyncReport) -> None:
    """--verify: delete what no project owns under web/packages/ (unless keep_removed), and
    temporary files a killed run left anywhere in the tree."""
    root = s.web / "packages"
    for dirpath, _, filenames in os.walk(s.web):
        for filename in filenames:
            path = Path(dirpath) / filename
            temporary = filename.startswith(".") and (filename.endswith(PART_SUFFIX)
                                                      or filename.startswith(TEMP_PREFIX))
            stray = Path(dirpath).is_relative_to(root) and not s.keep_removed and \
                path.relative_to(root).as_posix() not in owned
            if not (temporary or stray):
                continue
            why = "a temporary file of an interrupted run" if temporary else \
                "no project owns it"
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                why = f"{why}; cannot delete: {os_problem(exc)}"
            else:
                why = f"{why}: deleted"
            report.strays.append((path.relative_to(s.web).as_posix(), why))
            log.info("--verify: %s: %s", path, why)
