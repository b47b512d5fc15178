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
from typing import NamedTuple

from .filters import FilterSpec, project_decision
from .model import Listing


class ProjectsPlan(NamedTuple):  # not a dataclass: start-up (model.py)
    fetch: dict[str, int | None]  # name -> serial wanted
    unchanged: list[str]
    remove: dict[str, str]  # name -> why
    skipped: int  # listed upstream, not selected by the filters


def plan_projects(listing: Listing, mirrored: Mapping[str, int | None], spec: FilterSpec,
                  refetch_all: bool) -> ProjectsPlan:
    """`mirrored`: normalized name -> the serial its pages reflect."""
    fetch: dict[str, int | None] = {}
    unchanged: list[str] = []
    remove: dict[str, str] = {}
    skipped = 0
    for name, listed in sorted(listing.projects.items()):
        if not project_decision(spec, name).kept:
            skipped += 1
            if name in mirrored:
                remove[name] = project_decision(spec, name).reason
            continue
        have = mirrored.get(name, -1)
        if refetch_all or name not in mirrored or listed.serial is None or have is None \
                or listed.serial > have:
            fetch[name] = listed.serial
        else:
            unchanged.append(name)
    for name in sorted(mirrored):
        if name in fetch or name in remove or name in listing.projects:
            continue
        decision = project_decision(spec, name)
        if not decision.kept:
            remove[name] = decision.reason
        elif listing.complete or name in listing.dropped:
            remove[name] = "removed upstream"
        elif refetch_all:
            fetch[name] = None
        else:
            unchanged.append(name)
    return ProjectsPlan(fetch, sorted(unchanged), remove, skipped)


class WantedFile(NamedTuple):  # not a dataclass: start-up (model.py)
    relpath: str  # under web/packages/
    url: str
    size: int | None
    sha256: str | None
    md5: str | None
    metadata_of: str | None = None  # for a .metadata file: the relpath of its release file


class FilesPlan(NamedTuple):  # not a dataclass: start-up (model.py)
    download: list[WantedFile]
    up_to_date: list[WantedFile]
    delete: list[str]
    download_bytes: int


def plan_files(wanted: Iterable[WantedFile], in_place: set[str],
               previous: Iterable[str]) -> FilesPlan:
    """`in_place`: relpaths already present and verified; `previous`: relpaths the project
    owned after the last run."""
    download: list[WantedFile] = []
    up_to_date: list[WantedFile] = []
    keep = set()
    for w in wanted:
        keep.add(w.relpath)
        if w.relpath in in_place:
            up_to_date.append(w)
        else:
            download.append(w)
    return FilesPlan(download, up_to_date, sorted(set(previous) - keep),
                     sum(w.size or 0 for w in download))
