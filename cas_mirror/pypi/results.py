"""What a PyPI sync found and did, as plain data: per project (`ProjectReport`), for the
run (`SyncReport`, whose `exit_code` is the documented exit status), and `ProjectWork`, one
project as it moves through the stages (prepare, download, publish, remove).

Imported by every stage and by report.py, so the report never imports the orchestration.
Counts keep release files and their PEP 658 `.metadata` (and PEP 740 `.provenance`) apart:
`downloaded` counts release files, `metadata_downloaded` the others; `bytes` is both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL

if TYPE_CHECKING:  # (the stages' types, for ProjectWork's annotations only)
    from .model import ProjectPage
    from .plan import FilesPlan, WantedFile
    from .selection import Selection
    from .state import ProjectState

METADATA_SUFFIX = ".metadata"
PROVENANCE_SUFFIX = ".provenance"  # PEP 740 provenance objects, beside their file


class PlannedFile(NamedTuple):  # not a dataclass: start-up (net/types.py)
    """A file a run downloads or deletes, as the dry run lists it."""

    relpath: str  # under web/packages/
    size: int | None  # None: not known before it arrives (PEP 658 .metadata)

    @property
    def filename(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def is_metadata(self) -> bool:
        return self.relpath.endswith((METADATA_SUFFIX, PROVENANCE_SUFFIX))


@dataclass
class ProjectReport:
    name: str
    action: str = "sync"  # "sync" or "remove"
    why: str = ""  # for a removal
    selected: int = 0  # release files the filters kept
    dropped: int = 0
    downloaded: int = 0  # release files
    metadata_downloaded: int = 0  # their .metadata
    bytes: int = 0  # both
    deleted: int = 0  # release files
    metadata_deleted: int = 0
    up_to_date: int = 0  # files and .metadata already in place
    planned_download: list[PlannedFile] = field(default_factory=list)
    planned_delete: list[PlannedFile] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)  # (file, problem: action)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or URL, why)
    error: str | None = None  # the project as a whole could not be synced
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    @property
    def to_download(self) -> int:
        return sum(1 for f in self.planned_download if not f.is_metadata)

    @property
    def to_download_metadata(self) -> int:
        return sum(1 for f in self.planned_download if f.is_metadata)

    @property
    def to_download_bytes(self) -> int:
        return sum(f.size or 0 for f in self.planned_download)

    @property
    def to_delete(self) -> int:
        return sum(1 for f in self.planned_delete if not f.is_metadata)

    @property
    def to_delete_metadata(self) -> int:
        return sum(1 for f in self.planned_delete if f.is_metadata)

    def count_deleted(self, relpath: str) -> None:
        if relpath.endswith((METADATA_SUFFIX, PROVENANCE_SUFFIX)):
            self.metadata_deleted += 1
        else:
            self.deleted += 1


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
    write_errors: list[str] = field(default_factory=list)  # the project list, state, diff file
    notices: list[str] = field(default_factory=list)
    stopped: str | None = None  # disk space: exit 4
    stopped_on_error: str | None = None  # stop_on_error: exit 1
    diff_file: Path | None = None
    changed_files: list[Path | str] = field(default_factory=list)  # str: s3:// URLs
    strays: list[tuple[str, str]] = field(default_factory=list)  # --verify: (path, why)
    stale_parts_removed: int = 0

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_ABORTED
        if self.error or self.refused or self.write_errors or self.stopped_on_error \
                or not all(p.ok for p in self.projects):
            return EXIT_PARTIAL
        return EXIT_OK


@dataclass
class ProjectWork:
    """One project as it moves through the pipeline."""

    name: str
    display: str
    want_serial: int | None
    previous: ProjectState | None
    report: ProjectReport
    page: ProjectPage | None = None
    json_api: bytes | None = None
    selection: Selection | None = None
    plan: FilesPlan | None = None
    checked: dict[str, list] = field(default_factory=dict)  # relpath -> state entry
    bad: dict[str, str] = field(default_factory=dict)  # relpath -> what was wrong on disk
    got: set[str] = field(default_factory=set)  # downloaded in this run
    published: bool = False  # its pages were written in this run
    # the previous page's validators, when no serial says whether it changed
    conditional: dict[str, str] | None = None
    not_modified: bool = False  # upstream answered 304 or the same page: nothing to do
    gone_is_removal: bool = False  # exact-name whitelist: a 404/410 page means removed
    gone: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def downloads(self) -> list[WantedFile]:
        return self.plan.download if self.plan is not None and not self.report.error else []
