"""What a conda sync found and did, as plain data: one `PlatformReport` per channel and
platform, gathered in a `SyncReport`. Filled by the sync, read by the report module (and
by monitoring through `--json`); no behaviour beyond the exit status they imply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL


class PlannedFile(NamedTuple):  # a tuple: a dry run of a big platform makes 300,000
    name: str
    size: int | None  # None: upstream did not say


@dataclass
class PlatformReport:
    channel: str
    platform: str
    selected: int = 0
    dropped: int = 0
    downloaded: int = 0
    bytes: int = 0
    deleted: int = 0
    to_download: int = 0
    to_download_bytes: int = 0
    up_to_date: int = 0
    to_delete: int = 0
    to_delete_bytes: int = 0
    planned_download: list[PlannedFile] = field(default_factory=list)
    planned_delete: list[PlannedFile] = field(default_factory=list)  # stale .part files too
    # --verify: file -> what was done about its wrong hash ("re-downloaded", ...)
    verified_bad: dict[str, str] = field(default_factory=dict)
    # kept file -> dependency names no kept record of the platform (or noarch) provides
    unsatisfied: dict[str, list[str]] = field(default_factory=dict)
    # dependencies the closure could not meet, environments that did not solve
    # (depends.Blocked: platform, needed_by, spec, why, count)
    blocked: list = field(default_factory=list)
    # set for a platform folder that is no longer configured: "removed", "kept", or what a
    # dry run would do ("would be removed")
    unconfigured: str | None = None
    shards: dict | None = None  # what publishing the shards did (written, kept, ...)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or URL, why)
    seconds: float = 0.0
    upstream_changed: bool = True
    error: str | None = None  # the platform as a whole could not be synced

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


@dataclass
class SyncReport:
    platforms: list[PlatformReport] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    stopped: str | None = None  # why the run stopped early (disk space)
    diff_file: Path | None = None
    changed_files: list[Path] = field(default_factory=list)
    mirror_dir: str = ""
    mirror_dir_status: str = ""  # "exists, writable" / "does not exist; will be created"
    warnings: list[str] = field(default_factory=list)  # run-wide, printed once

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_ABORTED
        return EXIT_OK if all(p.ok for p in self.platforms) else EXIT_PARTIAL
