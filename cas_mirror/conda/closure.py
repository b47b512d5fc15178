"""Dependencies the filters left unsatisfiable: after filtering, which kept records depend
on a package that upstream offers but that no kept record provides any more (`numpy`
kept while `zlib` is blacklisted).

Pure functions. Only names are compared (the first word of each `depends` entry): a
version the mirror lacks is not detected, but a package the filters removed entirely is.
Virtual packages (`__glibc`, `__osx`, ...) come from the client's system, never from a
channel. A name upstream does not offer at all (in that platform or noarch) is upstream's
business and not reported.

A record of a platform may be satisfied by that platform or by `noarch`; a `noarch`
record by `noarch` or any mirrored platform of the channel (it is installed on all of
them, and its `python` usually comes from a platform folder).

The check runs on every sync over every kept record (hundreds of thousands), so it is
cheap when nothing is missing (no `depends` is even decoded: `missing_names` is empty),
and otherwise works per distinct `depends` entry, testing records with set operations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NOARCH = "noarch"
_DEPENDENCY_NAME = re.compile(r"[^\s=<>!~,|\[]+")


def dependency_name(entry: str) -> str | None:
    """The package name a `depends` entry names, lower-case; None for a virtual package."""
    match = _DEPENDENCY_NAME.match(entry.strip())
    name = match.group().lower() if match else None
    return None if name is None or name.startswith("__") else name


def missing_names(kept: Mapping[str, set[str]], dropped: Mapping[str, set[str]]
                  ) -> dict[str, set[str]]:
    """For one channel: platform -> the names upstream offers to that platform that no kept
    record provides, from platform -> names kept and platform -> names of records the
    filters dropped. Platforms with nothing missing are left out."""
    everywhere = set().union(*kept.values()) if kept else set()
    all_dropped = set().union(*dropped.values()) if dropped else set()
    noarch_kept, noarch_dropped = kept.get(NOARCH, set()), dropped.get(NOARCH, set())
    out = {}
    for platform, names in kept.items():
        if platform == NOARCH:
            missing = all_dropped - everywhere
        else:
            missing = (dropped.get(platform, set()) | noarch_dropped) - names - noarch_kept
        if missing:
            out[platform] = missing
    return out


def unsatisfied(depends: Mapping[str, Any], missing: set[str]) -> dict[str, list[str]]:
    """File name -> the sorted names in `missing` that record depends on, from file name ->
    its `depends` list."""
    if not missing:
        return {}
    lists = {fn: d for fn, d in depends.items() if isinstance(d, list) and d}
    # Records often share one list object (repodata.depends_of): each is looked at once.
    distinct = list({id(d): d for d in lists.values()}.values())
    try:
        entries = set().union(*distinct)
    except TypeError:  # an unhashable entry (malformed upstream): keep only the strings
        entries = {e for d in distinct for e in d if isinstance(e, str)}
    bad: dict[str, str] = {}  # entry -> the missing name it names
    for entry in entries:
        if isinstance(entry, str) and (name := dependency_name(entry)) in missing:
            bad[entry] = name
    if not bad:
        return {}
    keys = bad.keys()
    needs: dict[int, list[str] | None] = {}  # id of a list -> what it misses (None: nothing)
    for d in distinct:
        try:
            hit = not keys.isdisjoint(d)
        except TypeError:
            hit = not keys.isdisjoint([e for e in d if isinstance(e, str)])
        needs[id(d)] = sorted({bad[e] for e in d if isinstance(e, str) and e in bad}) \
            if hit else None
    out = {}
    for fn, entries_of in lists.items():
        if (missed := needs[id(entries_of)]) is not None:
            out[fn] = list(missed)
    return out
