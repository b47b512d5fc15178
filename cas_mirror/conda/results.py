"""What a conda sync found and did, as plain data: one `PlatformReport` per channel and
platform, gathered in a `SyncReport`. Filled by the sync, read by the report module (and
by monitoring through `--json`); no behaviour beyond the exit status they imply."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from cas_index.plain import Plain

from ..errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL


class PlannedFile(NamedTuple):
    name: str
    size: int | None  # None: upstream did not say


class PlannedFiles:
    """A list of PlannedFile kept as two lists, names and sizes, each PlannedFile made
    when read: a dry run of a big platform plans 300,000 downloads, and as many tuples
    would each be walked by the collector's first pass after the pipeline (0.13 s)."""

    __slots__ = ("names", "sizes")
    __hash__ = None  # a list is not hashable either

    def __init__(self, names: list[str], sizes: list[int | None]) -> None:
        self.names, self.sizes = names, sizes

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return map(PlannedFile, self.names, self.sizes)

    def __getitem__(self, index: int) -> PlannedFile:
        return PlannedFile(self.names[index], self.sizes[index])

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, PlannedFiles)) \
            else NotImplemented

    def __repr__(self) -> str:
        return f"PlannedFiles({list(self)!r})"


class PlatformReport(Plain):
    _fields = ("channel", "platform", "selected", "dropped", "downloaded", "bytes", "deleted",
               "to_download", "to_download_bytes", "up_to_date", "to_delete",
               "to_delete_bytes", "planned_download", "planned_delete", "verified_bad",
               "unsatisfied", "blocked", "unconfigured", "shards", "failed", "seconds",
               "upstream_changed", "error")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "selected": 0, "dropped": 0, "downloaded": 0, "bytes": 0, "deleted": 0,
        "to_download": 0, "to_download_bytes": 0, "up_to_date": 0, "to_delete": 0,
        "to_delete_bytes": 0, "planned_download": list, "planned_delete": list,
        "verified_bad": dict, "unsatisfied": dict, "blocked": list, "unconfigured": None,
        "shards": None, "failed": list, "seconds": 0.0, "upstream_changed": True,
        "error": None}
    _factories: ClassVar[frozenset] = frozenset({
        "planned_download", "planned_delete", "verified_bad", "unsatisfied", "blocked",
        "failed"})
    if TYPE_CHECKING:
        channel: str
        platform: str
        selected: int
        dropped: int
        downloaded: int
        bytes: int
        deleted: int
        to_download: int
        to_download_bytes: int
        up_to_date: int
        to_delete: int
        to_delete_bytes: int
        planned_download: list[PlannedFile] | PlannedFiles
        planned_delete: list[PlannedFile]  # stale .part files too
        # --verify: file -> what was done about its wrong hash ("re-downloaded", ...)
        verified_bad: dict[str, str]
        # kept file -> dependency names no kept record of the platform (or noarch) provides
        unsatisfied: dict[str, list[str]]
        # dependencies the closure could not meet, environments that did not solve
        # (depends.Blocked: platform, needed_by, spec, why, count)
        blocked: list
        # set for a platform folder that is no longer configured: "removed", "kept", or
        # what a dry run would do ("would be removed")
        unconfigured: str | None
        shards: dict | None  # what publishing the shards did (written, kept, ...)
        failed: list[tuple[str, str]]  # (file or URL, why)
        seconds: float
        upstream_changed: bool
        error: str | None  # the platform as a whole could not be synced

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


class SyncReport(Plain):
    _fields = ("platforms", "seconds", "dry_run", "stopped", "diff_file", "changed_files",
               "mirror_dir", "mirror_dir_status", "warnings")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "platforms": list, "seconds": 0.0, "dry_run": False, "stopped": None,
        "diff_file": None, "changed_files": list, "mirror_dir": "", "mirror_dir_status": "",
        "warnings": list}
    _factories: ClassVar[frozenset] = frozenset({"platforms", "changed_files", "warnings"})
    if TYPE_CHECKING:
        platforms: list[PlatformReport]
        seconds: float
        dry_run: bool
        stopped: str | None  # why the run stopped early (disk space)
        diff_file: Path | None
        changed_files: list[Path | str]
        mirror_dir: str
        mirror_dir_status: str  # "exists, writable" / "does not exist; will be created"
        warnings: list[str]  # run-wide, printed once

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_ABORTED
        return EXIT_OK if all(p.ok for p in self.platforms) else EXIT_PARTIAL
