"""The ordered filter pipeline: platforms -> license_blacklist -> blacklist -> whitelist.

Pure functions over records (anything with `.get(field)`), exactly as GUIDE section 1
states:

1. platforms: only records of the configured platforms (noarch always);
2. license_blacklist: drop records whose license matches (case-insensitive, against
   `license_family` and the SPDX ids in `license`; a family name such as GPL covers its
   versions - GPL2, GPL-3.0-only, GPLv3 - but not LGPL or AGPL);
3. blacklist: drop records matching any entry;
4. whitelist: add back every record of a configured platform matching any entry, even if
   step 2 or 3 dropped it.

Every record gets a `Decision` that says which step decided and why, for `--explain`.
Matching is organised per distinct package name, so a 320,000-record platform costs one
pass over the records plus one glob test per (name, entry).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from itertools import compress, count, repeat
from operator import attrgetter, is_
from typing import Any

from .entries import Entry, parse_entries

PLATFORMS, LICENSE, BLACKLIST, WHITELIST, DEFAULT = (
    "platforms", "license_blacklist", "blacklist", "whitelist", "default")


@dataclass(frozen=True)
class Decision:
    kept: bool
    step: str
    reason: str


KEPT = Decision(True, DEFAULT, "no filter dropped it")


@dataclass(frozen=True)
class FilterSpec:
    """What the pipeline needs from the configuration, parsed."""

    platforms: tuple[str, ...] | None  # None: every platform upstream offers
    license_blacklist: tuple[str, ...]
    blacklist: tuple[Entry, ...]
    whitelist: tuple[Entry, ...]

    @classmethod
    def from_config(cls, platforms: list[str] | None, license_blacklist: list[str],
                    blacklist: list[Any], whitelist: list[Any]) -> FilterSpec:
        return cls(
            tuple(platforms) if platforms is not None else None,
            tuple(license_blacklist),
            tuple(parse_entries(blacklist)),
            tuple(parse_entries(whitelist)),
        )


def select(records: Mapping[str, Any], platform: str, spec: FilterSpec) -> dict[str, Decision]:
    """A decision for every record (file name -> Decision) of one platform.

    A record of a name whose entries test the name alone (most configurations) is decided
    by its name's class (`_Pipeline.name_classes`: which entries always match the name)
    and its own (subdir, license, license_family), the fields the pipeline reads: the
    first record of each distinct pair of the two is decided, and every other record
    takes the decision of its pair, found in C-level passes (`map`, dicts of the distinct
    keys, both small: a few classes, a few licences). A record costs no Python code of its
    own. Records of names with entries that test versions or other fields are decided
    record by record."""
    if spec.platforms is not None and platform not in spec.platforms:
        dropped = Decision(False, PLATFORMS, f"{platform} is not a configured platform")
        return dict.fromkeys(records, dropped)
    fields = _KEY_FIELDS if spec.license_blacklist else _KEY_FIELDS[:1]
    name_of, rest_of = _getter(records, ("name",)), _getter(records, fields)
    values = list(records.values())
    try:
        names_of = list(map(name_of, values))
        names = set(names_of)
    except (AttributeError, TypeError):  # a record of another kind, unhashable names
        return _select_one_by_one(records, platform, spec, fields)
    if not all(type(name) is str for name in names):
        return _select_one_by_one(records, platform, spec, fields)
    pipeline = _pipeline(platform, spec, names if spec.blacklist or spec.whitelist else set())
    classes = pipeline.name_classes(names)
    first_rest: dict[Any, int] = {}  # (subdir, licence fields) -> its first record
    first: dict[tuple[int, int], int] = {}  # (name class, first_rest's) -> its first record
    try:  # at[i]: where the first record with record i's key is
        at = list(map(first.setdefault, zip(
            map(classes.__getitem__, names_of),
            map(first_rest.setdefault, map(rest_of, values), count()), strict=True), count()))
    except (AttributeError, TypeError):  # a record of another kind, unhashable values
        return _select_one_by_one(records, platform, spec, fields)
    decided: list[Decision | None] = [None] * len(values)  # by the position of a first
    for (name_class, _), i in first.items():
        if name_class != _PER_RECORD:
            decided[i] = pipeline.decide(values[i])
    decisions = list(map(decided.__getitem__, at))
    # The records left: those of names decided record by record.
    for i in compress(count(), map(is_, decisions, repeat(None))):
        decisions[i] = pipeline.decide(values[i])
    return dict(zip(records, decisions, strict=True))


def _pipeline(platform: str, spec: FilterSpec, names: set[str]) -> _Pipeline:
    return _Pipeline(platform, spec, _ByName(names, spec.blacklist),
                     _ByName(names, spec.whitelist))


def _select_one_by_one(records: Mapping[str, Any], platform: str, spec: FilterSpec,
                       fields: tuple[str, ...]) -> dict[str, Decision]:
    """`select` for records some of which are not plain (not all of one kind, unhashable
    or non-string values): each is looked at, and decisions are shared where the record's
    key (its name and `fields`) can be."""
    key_of = _getter(records, ("name", *fields))
    names = _names(records) if spec.blacklist or spec.whitelist else set()
    pipeline = _pipeline(platform, spec, names)
    per_record = pipeline.black.tried.keys() | pipeline.white.tried.keys()
    memo: dict[tuple, Decision] = {}
    decisions: dict[str, Decision] = {}
    for fn, record in records.items():
        try:
            key = key_of(record)
            decision = memo.get(key)
        except (AttributeError, TypeError):  # a record of another kind, unhashable values
            key = decision = None
        if decision is None:
            decision = pipeline.decide(record)
            if key is not None and type(key[0]) is str and key[0] not in per_record:
                memo[key] = decision
        decisions[fn] = decision
    return decisions


_KEY_FIELDS = ("subdir", "license", "license_family")  # what decides, besides the name
_PER_RECORD = -1  # the class of a name whose records are decided one by one


def _getter(records: Mapping[str, Any], fields: tuple[str, ...]) -> Callable[[Any], Any]:
    """A reader of `fields` of a record (one value for one field, else a tuple), in one
    call for records with attributes (repodata.RecordView), else through `.get`."""
    first = next(iter(records.values()), None)
    if first is not None and not isinstance(first, Mapping) and \
            all(hasattr(first, f) for f in fields):
        return attrgetter(*fields)
    defaults = {"name": ""}
    if len(fields) == 1:
        field, default = fields[0], defaults.get(fields[0])
        return lambda r: r.get(field, default)
    return lambda r: tuple(r.get(f, defaults.get(f)) for f in fields)


def _names(records: Mapping[str, Any]) -> set[str]:
    """The distinct names of `records` (as strings), in one C-level pass for records with
    attributes (repodata.RecordView)."""
    first = next(iter(records.values()), None)
    if first is not None and not isinstance(first, Mapping) and hasattr(first, "name"):
        try:
            names = set(map(attrgetter("name"), records.values()))
        except (AttributeError, TypeError):  # records of another kind, unhashable names
            pass
        else:
            if all(type(n) is str for n in names):
                return names
    out: set[str] = set()
    for r in records.values():
        name = r.get("name", "")
        out.add(name if type(name) is str else str(name))
    return out


class _Pipeline:
    """The pipeline on one record of one platform. Decisions are shared by every record
    they describe (few distinct ones), licenses decided once per distinct pair."""

    def __init__(self, platform: str, spec: FilterSpec, black: _ByName, white: _ByName):
        self.platform, self.spec, self.black, self.white = platform, spec, black, white
        self.licenses: dict[tuple[Any, Any], Decision | None] = {}
        self.blacklisted: dict[str, Decision] = {}
        self.overridden: dict[tuple[str, Decision], Decision] = {}

    def name_classes(self, names: set[str]) -> dict[str, int]:
        """Each name's class: names of one class meet the same entries (those that always
        match them, `_ByName.always`, or none), so that the pipeline decides a record of
        such a name from its other fields alone; `_PER_RECORD` for a name with entries
        that test a record's version or other fields."""
        per_record = self.black.tried.keys() | self.white.tried.keys()
        black, white = self.black.always.get, self.white.always.get
        ids: dict[tuple[int, int], int] = {}
        return {name: _PER_RECORD if name in per_record else
                ids.setdefault((id(black(name)), id(white(name))), len(ids))
                for name in names}

    def decide(self, record: Any) -> Decision:
        get, platform = record.get, self.platform
        record_subdir = get("subdir")
        if record_subdir is not None and record_subdir != platform:
            return Decision(False, PLATFORMS, f"record says subdir {record_subdir}, not "
                                              f"{platform}")
        dropped: Decision | None = None
        if self.spec.license_blacklist:
            key = (get("license"), get("license_family"))
            try:
                dropped = self.licenses[key]
            except KeyError:
                hit = license_match(key[0], key[1], self.spec.license_blacklist)
                dropped = self.licenses[key] = \
                    Decision(False, LICENSE, f"license matches {hit!r}") if hit else None
            except TypeError:  # unhashable license fields
                hit = license_match(key[0], key[1], self.spec.license_blacklist)
                dropped = Decision(False, LICENSE, f"license matches {hit!r}") if hit else None
        if dropped is None and self.black:
            entry = self.black.first_match(record)
            if entry is not None:
                dropped = self.blacklisted.get(entry.text)
                if dropped is None:
                    dropped = self.blacklisted[entry.text] = Decision(
                        False, BLACKLIST, f"matches {entry.text!r}")
        if dropped is None:
            return KEPT
        entry = self.white.first_match(record) if self.white else None
        if entry is None:
            return dropped
        decision = self.overridden.get((entry.text, dropped))
        if decision is None:
            decision = self.overridden[(entry.text, dropped)] = Decision(
                True, WHITELIST, f"matches {entry.text!r} (overrides {dropped.step}: "
                                 f"{dropped.reason})")
        return decision


def names_that_may_pass(names: Iterable[str], platform: str, spec: FilterSpec) -> set[str]:
    """The names among `names` of which some record could be kept, decided without any
    record (a sharded upstream then needs only their shards). Exact and conservative: a
    name is left out only when every record of it is certainly dropped, i.e. the platform
    is not configured, or a blacklist entry that tests the name alone (no version, build
    or other field) matches it and no whitelist entry's name glob does. License filters
    and entries with versions or other fields need the records, so their names stay in."""
    if spec.platforms is not None and platform not in spec.platforms:
        return set()
    by_name = [e.name_glob for e in spec.blacklist
               if e.version_spec is None and not e.field_globs]
    if not by_name:
        return set(names)
    white, black = _any_glob([e.name_glob for e in spec.whitelist]), _any_glob(by_name)
    return {name for name in names
            if white(lower := name.lower()) or not black(lower)}


def _any_glob(globs: list[str]) -> Callable[[str], bool]:
    """A test of whether a name matches any of `globs` (fnmatchcase's meaning), as one
    regular expression: thousands of names times dozens of globs stay cheap."""
    if not globs:
        return lambda name: False
    if "*" in globs:
        return lambda name: True
    pattern = re.compile("|".join(f"(?:{translate(glob)})" for glob in globs))
    return lambda name: pattern.match(name) is not None


def decide(record: Any, platform: str, spec: FilterSpec) -> Decision:
    """The decision for one record (the pipeline on a single record)."""
    return select({"_": record}, platform, spec)["_"]


def matched_steps(record: Any, platform: str, spec: FilterSpec) -> list[tuple[str, str]]:
    """Every (step, why) of the pipeline that matches `record`, in pipeline order, whether
    or not it decided (for `--explain`: a record both license- and name-blacklisted shows
    both; `select` stops at the first)."""
    steps: list[tuple[str, str]] = []
    if spec.platforms is not None and platform not in spec.platforms:
        steps.append((PLATFORMS, f"{platform} is not a configured platform"))
    subdir = record.get("subdir")
    if subdir is not None and subdir != platform:
        steps.append((PLATFORMS, f"record says subdir {subdir}, not {platform}"))
    hit = license_match(record.get("license"), record.get("license_family"),
                        spec.license_blacklist)
    if hit:
        steps.append((LICENSE, f"license matches {hit!r}"))
    steps.extend((BLACKLIST, f"matches {e.text!r}") for e in spec.blacklist if e.matches(record))
    steps.extend((WHITELIST, f"matches {e.text!r}") for e in spec.whitelist if e.matches(record))
    return steps


_GLOB_CHARS = frozenset("*?[")


class _ByName:
    """The entries of one list that may match each distinct package name (`names`),
    so that a record costs one dictionary look-up: a name none matches, or whose first
    candidate tests the name alone (it matches every record of that name), is decided
    without looking at the record; only entries with a version or other fields are
    tried on it (in configured order, up to the first name-only entry)."""

    def __init__(self, names: set[str], entries: tuple[Entry, ...]):
        self.always: dict[str, Entry] = {}  # record name -> the entry matching it
        self.tried: dict[str, tuple[Entry, ...]] = {}  # record name -> entries to try
        if not entries:
            return
        # An entry naming one package (no glob characters) is found by a look-up, not
        # tried on every name: 8,000 names against a whitelist of 50 names is 8,000
        # look-ups and no fnmatch at all.
        exact: dict[str, list[int]] = {}  # name -> places of the entries naming it
        globs: list[int] = []  # places of the entries with a glob
        for i, e in enumerate(entries):
            if _GLOB_CHARS.isdisjoint(e.name_glob):
                exact.setdefault(e.name_glob, []).append(i)
            else:
                globs.append(i)
        everything = {i for i in globs if entries[i].name_glob == "*"}
        for name in names:
            lower = name.lower()
            places = exact.get(lower, [])
            if globs:
                places = sorted(places + [i for i in globs if i in everything or
                                          fnmatchcase(lower, entries[i].name_glob)])
            candidates: list[Entry] = []
            for i in places:
                e = entries[i]
                candidates.append(e)
                if e.version_spec is None and not e.field_globs:
                    break  # matches every record of the name: no later entry is reached
            if len(candidates) == 1 and candidates[0].version_spec is None \
                    and not candidates[0].field_globs:
                self.always[name] = candidates[0]
            elif candidates:
                self.tried[name] = tuple(candidates)

    def __bool__(self) -> bool:
        return bool(self.always or self.tried)

    def first_match(self, record: Any) -> Entry | None:
        """The first entry (in configured order) matching `record`, or None."""
        name = record.get("name", "")
        if type(name) is not str:
            name = str(name)
        entry = self.always.get(name)
        if entry is not None:
            return entry
        for entry in self.tried.get(name, ()):
            if entry.matches(record, name_checked=True):
                return entry
        return None


# ----------------------------------------------------------------------------- licenses

_TOKEN_SPLIT = re.compile(r"[\s(),;/]+")
_OPERATORS = frozenset({"AND", "OR", "WITH"})
# A license token's family and major version: GPL-3.0-only -> (GPL, 3), GPLv2 -> (GPL, 2),
# LGPL-2.1 -> (LGPL, 2), BSD-3-Clause -> (BSD, 3), MIT -> (MIT, None).
_FAMILY = re.compile(r"^([A-Z]+?)[-_ ]?V?(\d+)?(?:[.\-+_].*)?$")


@lru_cache(maxsize=4096)
def _family(token: str) -> tuple[str, str | None]:
    match = _FAMILY.match(token)
    if not match:
        return token, None
    return match.group(1), match.group(2)


@lru_cache(maxsize=4096)
def _license_terms(license: str | None, license_family: str | None
                   ) -> tuple[frozenset[str], frozenset[tuple[str, str | None]]]:
    """The exact tokens and (family, major) pairs a record's license fields name."""
    tokens = set()
    for text in (license, license_family):
        if isinstance(text, str):
            tokens.update(t for t in _TOKEN_SPLIT.split(text.upper()) if t and t not in _OPERATORS)
    return frozenset(tokens), frozenset(_family(t) for t in tokens)


@lru_cache(maxsize=4096)
def _match_cached(license: str | None, license_family: str | None,
                  blacklist: tuple[str, ...]) -> str | None:
    tokens, families = _license_terms(license, license_family)
    if not tokens:
        return None
    for wanted in blacklist:
        upper = wanted.upper().strip()
        if upper in tokens:
            return wanted
        family, major = _family(upper)
        for have_family, have_major in families:
            if have_family == family and (major is None or major == have_major):
                return wanted
    return None


def license_match(license: Any, license_family: Any, blacklist: Iterable[str]) -> str | None:
    """The blacklist entry a record's license matches, or None."""
    return _match_cached(license if isinstance(license, str) else None,
                         license_family if isinstance(license_family, str) else None,
                         tuple(blacklist))
