"""The dependency closure of `include_dependencies`: after the filter pipeline, which
dropped records must be added so that the dependencies of the kept ones can be met.

Pure functions over one channel: its platforms' records and the pipeline's decisions in,
the records to add (each with the reason that names who pulled it) and the dependencies
that cannot be met out. The caller applies them.

- Roots: with `include_dependencies: true` at the top level, every kept record; else the
  records kept by whitelist mappings that say `include_dependencies: true`. Pulled
  records are followed in turn (transitively).
- Each `depends` entry is a MatchSpec and means what it means to rattler (matchspec.py);
  `constrains` is not read; virtual packages (`__glibc`, `__osx`, ...) come from the
  client's system and are skipped.
- A platform's record is satisfied from that platform and `noarch`; a `noarch` record
  from `noarch` and every mirrored platform of the channel (it installs on all of them).
- Every record that matches the spec is added (all builds the solver may choose), as
  long as the only thing that dropped it is a bare `*` blacklist entry ("nothing unless
  asked for"). `license_blacklist` and every other blacklist entry still hold: a spec
  that nothing kept or pullable matches, while upstream has records of that name, is
  reported with the entry that blocked it (a name upstream does not offer at all is
  upstream's business, as in closure.py).

The work is per distinct `depends` list and per distinct (platform, entry), not per
record: a round of 300,000 pulled records is grouped by the bytes of their `depends` in
C-level passes, each distinct list is decoded once, and each entry is matched against
its name's records once (matchspec.selection), its pulls applied in bulk. The records
are taken in the order the rounds reach them, so "pulled by" names the first record (in
that order) that asked, as it would record by record.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, count, repeat, tee
from operator import attrgetter, gt
from typing import Any

import msgspec

from .closure import NOARCH, dependency_name
from .entries import Entry
from .filter import BLACKLIST, LICENSE, Decision, FilterSpec, license_match
from .matchspec import Spec, parsed

DEPENDENCY = "dependency"
log = logging.getLogger(__name__)
_DEPENDS = msgspec.json.Decoder(list[Any])
_DEPENDS_BATCH = msgspec.json.Decoder(list[list[str]])
_NAME, _VERSION = attrgetter("name"), attrgetter("version")
_DEPENDS_OF = attrgetter("depends")
_KEPT, _STEP = attrgetter("kept"), attrgetter("step")
_DROPPABLE = frozenset((BLACKLIST, LICENSE))  # the steps whose drops the closure may undo


@dataclass(frozen=True)
class Blocked:
    """A dependency no kept or pullable record meets."""

    platform: str
    needed_by: str  # file name of the first record that asked for it
    spec: str
    why: str  # the entry that blocked it, or that no upstream version matches
    count: int = 1  # records asking for the same spec


@dataclass
class Closure:
    # platform -> the file names the closure adds, in the document's order
    pulled: dict[str, list[str]] = field(default_factory=dict)
    # platform -> file name -> decision of every record, the added ones changed (for the
    # platforms in `pulled`: the caller's decisions are left as they were)
    decisions: dict[str, dict[str, Decision]] = field(default_factory=dict)
    blocked: list[Blocked] = field(default_factory=list)
    # platform -> names a spec asked for that are not among the records (for a sharded
    # upstream: the shards to read next)
    wanted: dict[str, set[str]] = field(default_factory=dict)


def is_catch_all(entry: Entry) -> bool:
    """The bare `*` blacklist entry: nothing unless asked for."""
    return entry.name_glob == "*" and entry.version_spec is None and not entry.field_globs


def roots(records: Mapping[str, Any], decisions: Mapping[str, Decision], spec: FilterSpec,
          everything: bool) -> list[str]:
    """The kept records whose dependencies are followed (sorted file names)."""
    kept = compress(decisions, map(_KEPT, decisions.values()))  # a C-level pass
    if everything:
        return sorted(kept)
    entries = [e for e in spec.whitelist if e.include_dependencies]
    if not entries:
        return []
    return sorted(fn for fn in kept if any(e.matches(records[fn]) for e in entries))


def close(channel: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decision]]],
          spec: FilterSpec, starts: Mapping[str, Iterable[str]]) -> Closure:
    """The closure of one channel: `channel` is platform -> (records, decisions),
    `starts` platform -> root file names. Records are repodata.RecordView (attributes)."""
    # The closure allocates lists and keys by the hundred thousand and creates no
    # reference cycles; with 320,000 records alive, the collector's passes over them
    # cost more than the work, so it waits until the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _Walk(channel, spec).run(starts)
    finally:
        if enabled:
            gc.enable()


class _Pool:
    """One platform's records as the closure reads them: parallel lists in the
    document's order (file names, records, decisions, and each record's version and
    `depends` bytes as one object shared by every record with the same), and the
    positions of each lower-case name. Built in C-level passes that read the records in
    the order the parse made them: the walk then jumps between names, and reads these
    compact lists rather than the records."""

    __slots__ = (
        "decisions",
        "depends_of",
        "entries",
        "fns",
        "followed",
        "groups",
        "pulled",
        "records",
        "version_of",
    )

    def __init__(self, records: Mapping[str, Any], decisions: Mapping[str, Decision]) -> None:
        self.fns, self.records = list(records), list(records.values())
        self.decisions = list(decisions.values()) if list(decisions) == self.fns else \
            list(map(decisions.__getitem__, self.fns))
        names = list(map(_NAME, self.records))
        if not all(type(name) is str for name in dict.fromkeys(names)):
            names = list(map(str, names))
        # Each version and each depends list as one shared object: the first record's
        # (interned in C; the closure then compares and hashes objects whose hashes are
        # already known, and decodes each distinct list once).
        versions = list(map(_VERSION, self.records))
        one_version: dict[Any, Any] = {}
        self.version_of = list(map(one_version.setdefault, versions, versions))
        one_depends: dict[bytes, bytes] = {}
        self.depends_of = list(map(one_depends.setdefault, *tee(_depends_keys(self.records))))
        self.groups = _groups(names)
        self.entries: dict[bytes, list[str]] = {}  # a depends list -> its string entries
        self.pulled = bytearray(len(self.fns))  # 1 where the closure added the record
        self.followed: set[bytes] = set()  # depends lists whose entries were all asked

    def selected(self, spec: Spec, positions: list[int]) -> list[int]:
        """The positions whose records the entry selects."""
        if spec.everything:
            return positions
        if spec.version_text is None:
            records = self.records
            return [p for p in positions if spec.test(records[p])]
        answers = spec.answers
        versions = list(map(self.version_of.__getitem__, positions))
        try:
            hits = list(map(answers.__getitem__, versions))
        except KeyError:  # a version not asked of this version spec before: ask once
            for version in set(versions).difference(answers):
                spec.version_matches(version)
            hits = list(map(answers.__getitem__, versions))
        return list(compress(positions, hits))

    def decode(self, keys: Iterable[bytes]) -> None:
        """Have `entries` hold the string entries of these depends lists (each decoded
        once; the new ones in one call)."""
        new = [k for k in keys if k not in self.entries]
        self.entries.update(zip(new, _decoded(new), strict=True))

    def pull(self, positions: list[int], decision: Decision) -> None:
        deque(map(self.decisions.__setitem__, positions, repeat(decision)), maxlen=0)
        deque(map(self.pulled.__setitem__, positions, repeat(1)), maxlen=0)


def _groups(names: list[str]) -> dict[str, list[int]]:
    """Lower-case name -> positions of its records, in the document's order (one list
    append per record, in C)."""
    distinct = dict.fromkeys(names)
    by_exact: dict[str, list[int]] = {name: [] for name in distinct}
    deque(map(list.append, map(by_exact.__getitem__, names), count()), maxlen=0)
    out: dict[str, list[int]] = {}
    merged = False
    for name, positions in by_exact.items():
        key = name.lower()
        if key in out:
            out[key] = out[key] + positions
            merged = True
        else:
            out[key] = positions
    if merged:  # names differing in case only: back to document order
        for positions in out.values():
            positions.sort()
    return out


class _Walk:
    """One closure: the state the rounds share."""

    def __init__(self, channel: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decision]]],
                 spec: FilterSpec) -> None:
        self.channel, self.spec = channel, spec
        # Only a license_blacklist or a blacklist entry other than "*" can block a record
        # the filters dropped; without them every such record may be pulled (the common
        # case, decided in bulk).
        self.strict = bool(spec.license_blacklist) or \
            any(not is_catch_all(e) for e in spec.blacklist)
        self.pools: dict[str, _Pool] = {}  # built when first looked at
        self.pullable: dict[tuple[str, int], str | None] = {}  # strict: why not pullable
        self.names: dict[str, str | None] = {}  # depends entry -> the name it needs
        # per asking platform (noarch for noarch records): depends entries handled
        self.done: dict[str, set[str]] = {p: set() for p in channel}
        self.blocked: dict[tuple[str, str], Blocked] = {}
        self.blocked_texts: dict[str, set[str]] = {p: set() for p in channel}
        self.wanted: dict[str, set[str]] = {}
        # the next round: (platform, positions) batches, in the order pulled
        self.next: list[tuple[str, list[int]]] = []

    def pool(self, platform: str) -> _Pool:
        pool = self.pools.get(platform)
        if pool is None:
            pool = self.pools[platform] = _Pool(*self.channel[platform])
        return pool

    def run(self, starts: Mapping[str, Iterable[str]]) -> Closure:
        for platform in sorted(starts):
            order = dict(zip(starts[platform], count()))  # root -> its place in `starts`
            if platform in self.channel and order:
                fns = self.pool(platform).fns
                found = {fns[at]: at for at in compress(count(), map(order.__contains__, fns))}
                self.next.append((platform, [found[fn] for fn in order if fn in found]))
        while self.next:
            batches, self.next = self.next, []
            # each platform's records of the round, in the order they were pulled
            rounds: dict[str, list[int]] = {}
            for platform, positions in batches:
                rounds.setdefault(platform, []).extend(positions)
            for platform, positions in rounds.items():
                self._follow(platform, positions)
        out = Closure(wanted=self.wanted)
        for platform, pool in self.pools.items():
            if 1 in pool.pulled:
                out.pulled[platform] = list(compress(pool.fns, pool.pulled))
                out.decisions[platform] = dict(zip(pool.fns, pool.decisions, strict=True))
        out.blocked = sorted(self.blocked.values(),
                             key=lambda b: (b.platform, b.needed_by, b.spec))
        for b in out.blocked:
            log.info("%s: %s needs %s: %s", b.platform, b.needed_by, b.spec, b.why)
        return out

    def _follow(self, platform: str, positions: list[int]) -> None:
        """Follow the depends of these records of `platform` (a round's, in order): the
        first record of each distinct `depends` asks for its entries; the others, and
        lists asked for in an earlier round, only count towards entries found blocked."""
        pool = self.pools[platform]
        keys = list(map(pool.depends_of.__getitem__, positions))
        first: dict[bytes, int] = {}  # a depends list -> the first record with it here
        deque(map(first.setdefault, keys, positions), maxlen=0)
        followed, texts = pool.followed, self.blocked_texts[platform]
        pool.decode(k for k in first if k not in followed)
        many: Counter[bytes] | None = None  # records per depends list, counted if needed
        seen = self.done[platform]
        for key, at in first.items():
            entries = pool.entries[key]
            if texts and not texts.isdisjoint(entries):
                many = many or Counter(keys)
                for text in texts.intersection(entries):
                    self._count(platform, text, many[key])
            if key in followed:
                continue
            followed.add(key)
            if seen.issuperset(entries):  # the common case, tested in C
                continue
            for text in entries:
                if text in seen:  # listed twice in one record
                    continue
                seen.add(text)
                if self._ask(platform, at, text):  # blocked: count its other records
                    texts.add(text)
                    many = many or Counter(keys)
                    self._count(platform, text, many[key] - 1)

    def _count(self, platform: str, text: str, more: int) -> None:
        if more:
            b = self.blocked[(platform, text)]
            self.blocked[(platform, text)] = Blocked(b.platform, b.needed_by, b.spec, b.why,
                                                     b.count + more)

    def _ask(self, platform: str, at: int, text: str) -> bool:
        """Meet one entry of the record at `at` of `platform`: pull what matches it; True
        when nothing can (then it is blocked)."""
        names = self.names
        name = names[text] if text in names else \
            names.setdefault(text, dependency_name(text))
        if name is None:
            return False
        spec = parsed(text)
        if spec is None:
            return False
        met, block, offered, decision = False, None, False, None
        for pool_name in (sorted(self.channel) if platform == NOARCH
                          else (platform, NOARCH)):
            if pool_name not in self.channel:
                continue
            pool = self.pool(pool_name)
            positions = pool.groups.get(name)
            if not positions:
                self.wanted.setdefault(pool_name, set()).add(name)
                continue
            offered = True
            chosen = pool.selected(spec, positions)
            if not chosen:
                continue
            decisions = list(map(pool.decisions.__getitem__, chosen))
            kept = list(map(_KEPT, decisions))
            # dropped by a blacklist or license_blacklist entry (and not kept since)
            may = list(map(gt, map(_DROPPABLE.__contains__, map(_STEP, decisions)), kept))
            met = met or any(kept)
            if not any(may):
                continue
            chosen = list(compress(chosen, may))
            if self.strict:
                chosen, why = self._allowed(pool_name, pool, chosen)
                block = block or why
                if not chosen:
                    continue
            if decision is None:  # one per (puller, spec): shared by its pulls
                asking = self.pool(platform)
                record = asking.records[at]
                decision = Decision(True, DEPENDENCY,
                                    f"pulled by {record.name} {record.version}: {text}")
            pool.pull(chosen, decision)
            self.next.append((pool_name, chosen))
            met = True
        if met or not offered:
            return False
        self.blocked[(platform, text)] = Blocked(platform, self.pool(platform).fns[at], text,
                                                 block or "no upstream record matches it")
        return True

    def _allowed(self, pool_name: str, pool: _Pool, chosen: list[int]):
        """With entries that can block: the candidates no entry blocks, and the first
        entry that blocked one."""
        allowed, block = [], None
        for at in chosen:
            key = (pool_name, at)
            if key not in self.pullable:
                self.pullable[key] = blocked_by(pool.records[at], pool.decisions[at],
                                                self.spec)
            why = self.pullable[key]
            if why is None:
                allowed.append(at)
            else:
                block = block or why
        return allowed, block


def _depends_keys(records: list[Any]) -> Iterable[bytes]:
    """The JSON bytes of each record's `depends`, to group records by it: the raw slice
    the parse kept (repodata.RecordView), else the value encoded. Made one at a time."""
    raws = list(map(_DEPENDS_OF, records))
    return map(bytes, raws) if set(map(type, raws)) <= {msgspec.Raw} else map(_key, raws)


def _key(raw: Any) -> bytes:
    if type(raw) is msgspec.Raw:
        return bytes(raw)
    try:
        return msgspec.json.encode(raw)
    except (TypeError, msgspec.EncodeError):
        return b"[]"


def _decoded(keys: list[bytes]) -> list[list[str]]:
    """The string entries of each distinct `depends`, decoded in one call (a round can
    hold tens of thousands of them); one by one when one of them is odd (not a list,
    or a number in it)."""
    try:
        return _DEPENDS_BATCH.decode(b"[" + b",".join(keys) + b"]")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [_strings(key) for key in keys]


def _strings(key: bytes) -> list[str]:
    try:
        raw = _DEPENDS.decode(key)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    return [d for d in raw if isinstance(d, str)] if isinstance(raw, list) else []


def depends_list(record: Any) -> list[str]:
    raw = getattr(record, "depends", None)
    if isinstance(raw, msgspec.Raw):
        try:
            raw = _DEPENDS.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []
    elif raw is None and hasattr(record, "get"):
        raw = record.get("depends")
    return [d for d in raw if isinstance(d, str)] if isinstance(raw, list) else []


def blocked_by(record: Any, decision: Decision, spec: FilterSpec) -> str | None:
    """Why the closure may not add this dropped record (None: only a bare `*` dropped it)."""
    if decision.step not in (BLACKLIST, LICENSE):
        return decision.reason  # another platform's record, a refused one ...
    hit = license_match(record.get("license"), record.get("license_family"),
                        spec.license_blacklist)
    if hit:
        return f"license_blacklist entry {hit!r}"
    for entry in spec.blacklist:
        if not is_catch_all(entry) and entry.matches(record):
            return f"blacklist entry {entry.text!r}"
    return None
