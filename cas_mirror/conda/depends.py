"""The dependency closure of `include_dependencies`: after the filter pipeline, which
dropped records must be added so that the dependencies of the kept ones can be met.

Pure functions over one channel: its platforms' records and the pipeline's decisions in,
the records to add (each with the reason that names who pulled it) and the dependencies
that cannot be met out. The caller applies them.

- Roots: with `include_dependencies: true` at the top level, every kept record; else the
  records kept by whitelist mappings that say `include_dependencies: true`. Pulled
  records are followed in turn (transitively).
- Each `depends` entry is a MatchSpec and means what it means to rattler (name, version
  and build, build number, hashes); `constrains` is not read; virtual packages
  (`__glibc`, `__osx`, ...) come from the client's system and are skipped.
- A platform's record is satisfied from that platform and `noarch`; a `noarch` record
  from `noarch` and every mirrored platform of the channel (it installs on all of them).
- Every record that matches the spec is added (all builds the solver may choose), as
  long as the only thing that dropped it is a bare `*` blacklist entry ("nothing unless
  asked for"). `license_blacklist` and every other blacklist entry still hold: a spec
  that nothing kept or pullable matches, while upstream has records of that name, is
  reported with the entry that blocked it (a name upstream does not offer at all is
  upstream's business, as in closure.py).

The work is per distinct (pool, spec) pair, not per record: 300,000 records that share
a few thousand dependency strings cost a few thousand matches.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

import msgspec

from .closure import NOARCH, dependency_name
from .entries import Entry, _parse_version
from .filter import BLACKLIST, LICENSE, Decision, FilterSpec, license_match

DEPENDENCY = "dependency"
log = logging.getLogger(__name__)
_DEPENDS = msgspec.json.Decoder(list[Any])
_DEPENDS_BATCH = msgspec.json.Decoder(list[list[str]])
_ANSWERS: dict[str, dict[Any, bool]] = {}
DECODE_CHUNK = 20_000  # version spec -> record version -> matches


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
    pulled: dict[str, dict[str, Decision]] = field(default_factory=dict)  # platform -> fn ->
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
    if everything:
        return sorted(fn for fn, d in decisions.items() if d.kept)
    entries = [e for e in spec.whitelist if e.include_dependencies]
    if not entries:
        return []
    return sorted(fn for fn, d in decisions.items()
                  if d.kept and any(e.matches(records[fn]) for e in entries))


def close(channel: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decision]]],
          spec: FilterSpec, starts: Mapping[str, Iterable[str]]) -> Closure:
    """The closure of one channel: `channel` is platform -> (records, decisions),
    `starts` platform -> root file names. Records are repodata.RecordView (attributes)."""
    # The closure allocates a list per record and creates no reference cycles; with
    # 320,000 records alive, the collector's passes over them cost more than the work
    # (measured: 16.8 s against 7.3 s on a loaded machine), so it waits until the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _close(channel, spec, starts)
    finally:
        if enabled:
            gc.enable()


def _close(channel: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decision]]],
           spec: FilterSpec, starts: Mapping[str, Iterable[str]]) -> Closure:
    index = {p: _by_name(records) for p, (records, _) in channel.items()}
    # Only a license_blacklist or a blacklist entry other than "*" can block a record the
    # filters dropped; without them every such record may be pulled (the common case).
    strict = bool(spec.license_blacklist) or any(not is_catch_all(e) for e in spec.blacklist)
    pullable: dict[tuple[str, str], str | None] = {}
    result = Closure()
    state = {p: dict(decisions) for p, (_, decisions) in channel.items()}
    names: dict[str, str | None] = {}  # depends entry -> the name it needs
    # per pool key (a platform, or noarch for noarch records): depends entries handled
    done: dict[str, set[str]] = {p: set() for p in channel}
    # (platform, file name, record): the record travels with its name (no look-ups)
    queue = [(p, fn, channel[p][0][fn]) for p in sorted(starts) for fn in starts[p]
             if p in channel]
    blocked: dict[tuple[str, str], Blocked] = {}
    blocked_texts: dict[str, set[str]] = {p: set() for p in channel}
    droppable = (BLACKLIST, LICENSE)
    while queue:
        following, queue = queue, []
        for (platform, fn, record), entries in _each_depends(following):
            seen = done[platform]
            if not blocked and seen.issuperset(entries):  # the common case, tested in C
                continue
            if blocked and not blocked_texts[platform].isdisjoint(entries):
                for text in blocked_texts[platform].intersection(entries):
                    b = blocked[(platform, text)]
                    if b.needed_by != fn:
                        blocked[(platform, text)] = Blocked(b.platform, b.needed_by, b.spec,
                                                            b.why, b.count + 1)
            if seen.issuperset(entries):  # the common case, tested in C
                continue
            pools = sorted(channel) if platform == NOARCH else (platform, NOARCH)
            for text in entries:
                if text in seen:  # listed twice in one record
                    continue
                key = (platform, text)
                seen.add(text)
                name = names[text] if text in names else \
                    names.setdefault(text, dependency_name(text))
                if name is None:
                    continue
                matcher = _matcher(text)
                if matcher is None:
                    continue
                met, block, offered, decision = False, None, False, None
                for pool in pools:
                    if pool not in channel:
                        continue
                    fns = index[pool].get(name)
                    if not fns:
                        result.wanted.setdefault(pool, set()).add(name)
                        continue
                    offered = True
                    decided = state[pool]
                    pulled = result.pulled.setdefault(pool, {})
                    for candidate, r in [item for item in fns if matcher(item[1])]:
                        d = decided[candidate]
                        if d.kept:
                            met = True
                            continue
                        if d.step not in droppable:
                            continue
                        if strict:
                            if (pool, candidate) not in pullable:
                                pullable[(pool, candidate)] = blocked_by(r, d, spec)
                            if (why := pullable[(pool, candidate)]) is not None:
                                block = block or why
                                continue
                        if decision is None:  # one per (puller, spec): shared by its pulls
                            decision = Decision(True, DEPENDENCY, f"pulled by {record.name} "
                                                                  f"{record.version}: {text}")
                        decided[candidate] = pulled[candidate] = decision
                        queue.append((pool, candidate, r))
                        met = True
                if not met and offered:
                    blocked[key] = Blocked(platform, fn, text,
                                           block or "no upstream record matches it")
                    blocked_texts[platform].add(text)
    result.pulled = {p: pulled for p, pulled in result.pulled.items() if pulled}
    result.blocked = sorted(blocked.values(), key=lambda b: (b.platform, b.needed_by, b.spec))
    for b in result.blocked:
        log.info("%s: %s needs %s: %s", b.platform, b.needed_by, b.spec, b.why)
    return result


def _by_name(records: Mapping[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """Lower-case name -> (file name, record), in the document's order."""
    by_name: dict[Any, list[tuple[str, Any]]] = {}  # by the record's own name first
    for item in records.items():
        name = item[1].name
        if type(name) is not str:
            name = str(name)
        group = by_name.get(name)
        if group is None:
            by_name[name] = [item]
        else:
            group.append(item)
    out: dict[str, list[tuple[str, Any]]] = {}
    for name, group in by_name.items():  # then per lower-case name, in document order
        key = name.lower()
        if key in out:
            out[key].extend(group)
        else:
            out[key] = group
    if len(out) != len(by_name):  # names differing in case only: back to document order
        order = {fn: i for i, fn in enumerate(records)}
        for group in out.values():
            group.sort(key=lambda item: order[item[0]])
    return out


def _each_depends(following: list[tuple[str, str, Any]]):
    """(record, its depends) for each record of `following`, decoded a chunk at a time
    (a whole round of 300,000 records decoded at once would hold all their strings)."""
    for start in range(0, len(following), DECODE_CHUNK):
        part = following[start:start + DECODE_CHUNK]
        yield from zip(part, _depends_lists([r for _, _, r in part]), strict=True)


def _depends_lists(following: list[Any]) -> list[list[str]]:
    """The `depends` of each record of `following`, decoded in one call (a round can
    hold 100,000 records: one decode per record would cost more than the rest)."""
    try:  # encoding a list of Raw slices joins them in C
        return _DEPENDS_BATCH.decode(msgspec.json.encode(
            [r.depends for r in following]))
    except (AttributeError, TypeError, msgspec.EncodeError, msgspec.DecodeError,
            msgspec.ValidationError):
        # a record built by hand (a list, not raw JSON), or an odd one (null, a number in
        # the list): one by one
        return [depends_list(r) for r in following]


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


@lru_cache(maxsize=65536)
def _matcher(text: str):
    """A test of a record against the MatchSpec `text` (None when it is not one)."""
    from rattler import MatchSpec, VersionSpec
    from rattler.exceptions import InvalidMatchSpecError, InvalidVersionSpecError

    try:
        match = MatchSpec(text)
        version = VersionSpec(match.version) if match.version else None
    except (InvalidMatchSpecError, InvalidVersionSpecError, ValueError) as exc:
        log.debug("dependency %r is not a MatchSpec (%s); not followed", text, exc)
        return None
    build, number = match.build, _number_test(match.build_number)
    fields = [(f, str(getattr(match, f)).lower()) for f in ("sha256", "md5", "subdir")
              if getattr(match, f, None)]
    if build is None and number is None and not fields:
        if version is None:
            return lambda record: True
        contains = version.matches
        # Many specs share a version spec (">=1.0") and records share versions: remember
        # each (spec, version) answer rather than asking rattler again.
        answers = _ANSWERS.setdefault(match.version, {})

        def version_only(record: Any) -> bool:
            have = record.version
            hit = answers.get(have)
            if hit is None:
                parsed = _parse_version(have) if type(have) is str else None
                hit = answers[have] = parsed is not None and contains(parsed)
            return hit

        return version_only

    def matches(record: Any) -> bool:
        if version is not None:
            parsed = _parse_version(str(record.version))
            if parsed is None or not version.matches(parsed):
                return False
        if build is not None and not _build_matches(build, str(record.build)):
            return False
        if number is not None and not number(record.build_number):
            return False
        return all(str(getattr(record, f, "")).lower() == v for f, v in fields)

    return matches


def _build_matches(pattern: str, build: str) -> bool:
    if pattern.startswith("^") and pattern.endswith("$"):
        import re

        return re.match(pattern, build) is not None
    return fnmatchcase(build, pattern)


def _number_test(text: str | None):
    if not text:
        return None
    for op in (">=", "<=", "!=", "==", ">", "<", "="):
        if text.startswith(op):
            value, operator = text[len(op):], op
            break
    else:
        value, operator = text, "=="
    try:
        wanted = int(value)
    except ValueError:
        return None
    compare = {">=": int.__ge__, "<=": int.__le__, "!=": int.__ne__, "==": int.__eq__,
               "=": int.__eq__, ">": int.__gt__, "<": int.__lt__}[operator]
    return lambda have: isinstance(have, int) and compare(have, wanted)
