"""Dependencies the mirrored set cannot satisfy: after filtering, which kept records name
a dependency that no kept record provides (`numpy` kept while `zlib` is blacklisted).

Pure functions over records (anything with `.get("name")` / `.get("depends")`). Only
names are compared (the first word of each `depends` entry): a version the mirror lacks
is not detected, but a package the filters removed entirely is. Virtual packages
(`__glibc`, `__osx`, ...) are provided by the client's system, never by a channel.

A record of a platform may be satisfied by that platform or by `noarch`; a `noarch`
record by `noarch` or any mirrored platform of the channel (it is installed on all of
them, and its `python` usually comes from a platform folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

NOARCH = "noarch"
_DEPENDENCY_NAME = re.compile(r"[^\s=<>!~,|\[]+")


def dependency_names(depends: Any) -> set[str]:
    """The package names a `depends` list names, lower-case, virtual packages left out."""
    names = set()
    if not isinstance(depends, (list, tuple)):
        return names
    for entry in depends:
        if not isinstance(entry, str):
            continue
        match = _DEPENDENCY_NAME.match(entry.strip())
        if match and not match.group().startswith("__"):
            names.add(match.group().lower())
    return names


def provided_names(records: Iterable[Any]) -> set[str]:
    return {str(r.get("name", "")).lower() for r in records}


def unsatisfied(kept: Mapping[str, Any], provided: set[str]) -> dict[str, list[str]]:
    """File name -> the sorted dependency names of that kept record nothing provides."""
    out = {}
    for fn, record in kept.items():
        missing = dependency_names(record.get("depends")) - provided
        if missing:
            out[fn] = sorted(missing)
    return out


def unsatisfied_by_platform(kept: Mapping[str, Mapping[str, Any]]
                            ) -> dict[str, dict[str, list[str]]]:
    """For one channel: platform -> (file name -> missing names), from platform -> (file
    name -> kept record). Platforms with nothing missing are left out."""
    names = {platform: provided_names(records.values()) for platform, records in kept.items()}
    noarch = names.get(NOARCH, set())
    everywhere = set().union(*names.values()) if names else set()
    out = {}
    for platform, records in kept.items():
        provided = everywhere if platform == NOARCH else names[platform] | noarch
        missing = unsatisfied(records, provided)
        if missing:
            out[platform] = missing
    return out
