"""Planning: which projects to look at, and per project which files to download, keep and
delete. Pure functions over plain data; the caller gathers what is on disk.

`plan_projects` compares upstream's listing with what we mirrored: a project is fetched
when its serial moved (or always, without `use_serial`, after a configuration change, or
for `--verify`), and dropped only when upstream's list no longer names it (a complete list
without it, or a changelog whose last word on it is its removal) or the filters no longer
select it. `plan_files` compares the files a project's selection needs (release files and
their PEP 658 `.metadata`) with those already in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .filters import FilterSpec, project_decision
from .model import Listing


@dataclass
class ProjectsPlan:
    fetch: dict[str, int | None] = field(default_factory=dict)  # name -> serial wanted
    unchanged: list[str] = field(default_factory=list)
    remove: dict[str, str] = field(default_factory=dict)  # name -> why
    skipped: int = 0  # listed upstream, not selected by the filters


def plan_projects(listing: Listing, mirrored: Mapping[str, int | None], spec: FilterSpec,
                  refetch_all: bool) -> ProjectsPlan:
    """`mirrored`: normalized name -> the serial its pages reflect."""
    plan = ProjectsPlan()
    for name, listed in sorted(listing.projects.items()):
        if not project_decision(spec, name).kept:
            plan.skipped += 1
            if name in mirrored:
                plan.remove[name] = project_decision(spec, name).reason
            continue
        have = mirrored.get(name, -1)
        if refetch_all or name not in mirrored or listed.serial is None or have is None \
                or listed.serial > have:
            plan.fetch[name] = listed.serial
        else:
            plan.unchanged.append(name)
    for name in sorted(mirrored):
        if name in plan.fetch or name in plan.remove or name in listing.projects:
            continue
        decision = project_decision(spec, name)
        if not decision.kept:
            plan.remove[name] = decision.reason
        elif listing.complete or name in listing.dropped:
            plan.remove[name] = "removed upstream"
        elif refetch_all:
            plan.fetch[name] = None
        else:
            plan.unchanged.append(name)
    plan.unchanged.sort()
    return plan


class WantedFile(NamedTuple):  # not a dataclass: start-up (model.py)
    relpath: str  # under web/packages/
    url: str
    size: int | None
    sha256: str | None
    md5: str | None
    metadata_of: str | None = None  # for a .metadata file: the relpath of its release file


@dataclass
class FilesPlan:
    download: list[WantedFile] = field(default_factory=list)
    up_to_date: list[WantedFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    download_bytes: int = 0


def plan_files(wanted: Iterable[WantedFile], in_place: set[str],
               previous: Iterable[str]) -> FilesPlan:
    """`in_place`: relpaths already present and verified; `previous`: relpaths the project
    owned after the last run."""
    plan = FilesPlan()
    keep = set()
    for w in wanted:
        keep.add(w.relpath)
        if w.relpath in in_place:
            plan.up_to_date.append(w)
        else:
            plan.download.append(w)
            plan.download_bytes += w.size or 0
    plan.delete = sorted(set(previous) - keep)
    return plan
