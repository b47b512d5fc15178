"""Plain data passed between the steps of a run: the options it was given and the reports
it hands back to the command line (or to a caller using cas_index as a library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EXIT_OK, EXIT_SKIPPED

if TYPE_CHECKING:
    from .patch import PatchSource


@dataclass(frozen=True)
class Options:
    """How to index (the CLI's flags)."""

    bz2: bool = True
    zst: bool = True
    current_repodata: bool = False
    patch: PatchSource | None = None
    force: bool = False
    threads: int | None = None  # worker processes reading packages; None: one per CPU
    lock_timeout: float = 600.0
    shards: bool = True  # CEP-16 sharded repodata beside repodata.json
    shard_grace_seconds: float = 7 * 24 * 3600.0  # how long an unnamed shard stays
    run_exports: bool = True  # CEP-12 run_exports.json
    now: float | None = None  # the time the run counts grace periods from; None: the clock

    def signature(self) -> list:
        return [self.bz2, self.zst, self.current_repodata, self.shards, self.run_exports]


@dataclass(frozen=True)
class Skipped:
    file: str  # "<subdir>/<file name>", relative to the channel
    reason: str


@dataclass
class SubdirReport:
    subdir: str
    indexed: int = 0
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # applied anyway (unknown patch keys)
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    read: int = 0  # files opened this run
    seconds: float = 0.0
    unchanged: bool = False
    shards: dict[str, int | bool] | None = None  # ShardCounts.as_dict(); None: shards off


@dataclass
class ChannelReport:
    root: Path
    subdirs: list[SubdirReport] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # package files outside any folder
    seconds: float = 0.0

    @property
    def all_skipped(self) -> list[Skipped]:
        return self.skipped + [s for r in self.subdirs for s in r.skipped]

    @property
    def all_warnings(self) -> list[str]:
        return [w for r in self.subdirs for w in r.warnings]

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.all_skipped else EXIT_OK
