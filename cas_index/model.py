"""Plain data passed between the steps of a run: the options it was given and the reports
it hands back to the command line (or to a caller using cas_index as a library).

Plain slotted classes rather than dataclasses: these are on the path of a run where
nothing changed, and `dataclasses` (with the `inspect` it pulls in) costs about as much
to import as such a run spends indexing.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EXIT_OK, EXIT_SKIPPED

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import ClassVar

    from .patch import PatchSource


class _Plain:
    """Fields in `_fields` order (also the slots); `_defaults` maps a field to its default,
    or to a factory (`list`) for mutable ones listed in `_factories`. Positional or keyword
    construction, equality by fields and a readable repr, as a dataclass would give."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict] = {}
    _factories: ClassVar[frozenset] = frozenset()
    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __init__(self, *args, **kwargs):
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes at most {len(names)} arguments")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword "
                                f"argument {key!r}")
            if key in values:
                raise TypeError(f"{type(self).__name__}() got multiple values for {key!r}")
            values[key] = value
        for name in names:
            if name in values:
                value = values[name]
            elif name in self._factories:
                value = self._defaults[name]()
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            object.__setattr__(self, name, value)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


class _Frozen(_Plain):
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values())


class Options(_Frozen):
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


class Skipped(_Frozen):
    _fields = ("file", "reason")
    __slots__ = _fields
    if TYPE_CHECKING:
        file: str  # "<subdir>/<file name>", relative to the channel
        reason: str


class SubdirReport(_Plain):
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


class ChannelReport(_Plain):
    _fields = ("root", "subdirs", "written", "skipped", "seconds")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"subdirs": list, "written": list, "skipped": list, "seconds": 0.0}
    _factories: ClassVar[frozenset] = frozenset({"subdirs", "written", "skipped"})
    if TYPE_CHECKING:
        root: Path
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
