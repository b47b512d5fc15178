"""Plain data passed between the steps of a run: the options it was given and the reports
it hands back to the command line (or to a caller using cas_index as a library).

Plain slotted records (plain.py) rather than dataclasses: these are on the path of a run
where nothing changed, and `dataclasses` (with the `inspect` it pulls in) costs about as
much to import as such a run spends indexing.
"""

from __future__ import annotations

from .errors import EXIT_OK, EXIT_SKIPPED
from .plain import Frozen, Plain

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import ClassVar

    from .patch import PatchSource


class Options(Frozen):
    """How to index (the CLI's flags)."""

    _fields = ("bz2", "zst", "current_repodata", "patch", "force", "threads",
                 "lock_timeout", "shards", "shard_grace_seconds", "run_exports", "now")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "bz2": True,
        "zst": True,
        "current_repodata": False,
        "patch": None,
        "force": False,
        "threads": None,  # worker processes reading packages; None: one per CPU
        "lock_timeout": 600.0,
        "shards": True,  # CEP-16 sharded repodata beside repodata.json
        "shard_grace_seconds": 7 * 24 * 3600.0,  # how long an unnamed shard stays
        "run_exports": True,  # CEP-12 run_exports.json
        "now": None,  # the time the run counts grace periods from; None: the clock
    }
    if TYPE_CHECKING:
        bz2: bool
        zst: bool
        current_repodata: bool
        patch: PatchSource | None
        force: bool
        threads: int | None
        lock_timeout: float
        shards: bool
        shard_grace_seconds: float
        run_exports: bool
        now: float | None

    def signature(self) -> list:
        return [self.bz2, self.zst, self.current_repodata, self.shards, self.run_exports]


class Skipped(Frozen):
    _fields = ("file", "reason")
    __slots__ = _fields
    if TYPE_CHECKING:
        file: str  # "<subdir>/<file name>", relative to the channel
        reason: str


class SubdirReport(Plain):
    _fields = ("subdir", "indexed", "added", "replaced", "removed", "skipped", "warnings",
                 "written", "deleted", "read", "seconds", "unchanged", "shards")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"indexed": 0, "added": list, "replaced": list, "removed": list,
                 "skipped": list, "warnings": list, "written": list, "deleted": list,
                 "read": 0, "seconds": 0.0, "unchanged": False, "shards": None}
    _factories: ClassVar[frozenset] = frozenset({
        "added", "replaced", "removed", "skipped", "warnings", "written", "deleted"})
    if TYPE_CHECKING:
        subdir: str
        indexed: int
        added: list[str]
        replaced: list[str]
        removed: list[str]
        skipped: list[Skipped]
        warnings: list[str]  # applied anyway (unknown patch keys)
        written: list[str]
        deleted: list[str]
        read: int  # files opened this run
        seconds: float
        unchanged: bool
        shards: dict[str, int | bool] | None  # ShardCounts.as_dict(); None: shards off


class ChannelReport(Plain):
    _fields = ("root", "subdirs", "written", "skipped", "seconds")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"subdirs": list, "written": list, "skipped": list, "seconds": 0.0}
    _factories: ClassVar[frozenset] = frozenset({"subdirs", "written", "skipped"})
    if TYPE_CHECKING:
        root: str  # the channel folder, as index_channel was given it
        subdirs: list[SubdirReport]
        written: list[str]
        skipped: list[Skipped]  # package files outside any folder
        seconds: float

    @property
    def all_skipped(self) -> list[Skipped]:
        return self.skipped + [s for r in self.subdirs for s in r.skipped]

    @property
    def all_warnings(self) -> list[str]:
        return [w for r in self.subdirs for w in r.warnings]

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.all_skipped else EXIT_OK
