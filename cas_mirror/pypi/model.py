"""The plain data the PyPI sync passes from stage to stage: what upstream lists, one
project's files, and the name rules every stage agrees on (PEP 503 normalization).

No I/O and no imports beyond the standard library, so every stage (and the config check)
can use these types without paying for the network or `packaging`. The immutable records
are NamedTuples, not frozen dataclasses: a dataclass compiles its methods at import
(about 1 ms each, net/types.py), which every run pays, a no-op included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

_NORMALIZE = re.compile(r"[-_.]+")
# PEP 508 / core metadata: a project name is letters, digits, '.', '_', '-', starting and
# ending with a letter or digit.
_VALID_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")


def normalize(name: str) -> str:
    """PEP 503 normalized form: runs of '-', '_', '.' become one '-', lower case."""
    return _NORMALIZE.sub("-", name).lower()


def is_valid_name(name: str) -> bool:
    return bool(_VALID_NAME.match(name))


class ListedProject(NamedTuple):  # not a dataclass: start-up (net/types.py)
    name: str  # as upstream spells it
    serial: int | None  # upstream's _last-serial for the project, when it says


@dataclass
class Listing:
    """All projects upstream offers (normalized name -> project), or only the changed ones
    when it came from an XML-RPC changelog (`complete` False), whose removals are then in
    `dropped` (normalized name -> name)."""

    projects: dict[str, ListedProject]
    last_serial: int | None
    complete: bool = True
    source: str = "simple"  # "simple", "xmlrpc-list" or "xmlrpc-changelog"
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    dropped: dict[str, str] = field(default_factory=dict)


class UpstreamFile(NamedTuple):
    filename: str
    url: str  # absolute upstream URL
    relpath: str  # where it lives under web/packages/ (validated: stays inside)
    hashes: dict[str, str]
    size: int | None = None
    requires_python: str | None = None
    yanked: bool | str = False  # a non-empty string is the reason
    core_metadata: dict[str, str] | bool = False  # PEP 658/714: hashes, True, or absent
    upload_time: str | None = None
    version: str | None = None  # from the file name; None when it cannot be parsed
    provenance: str | None = None  # PEP 740: upstream's URL of the provenance object

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


@dataclass
class ProjectPage:
    name: str  # normalized
    serial: int | None
    files: list[UpstreamFile]
    versions: list[str]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file or URL, why)
    json_api: bytes | None = None  # /pypi/<name>/json as upstream sent it (json: true)
    # PEP 792 project status ("active" when upstream says none) and its reason
    status: str = "active"
    status_reason: str | None = None
    tracks: list[str] = field(default_factory=list)  # PEP 708
    alternate_locations: list[str] = field(default_factory=list)  # PEP 708
    # ETag / Last-Modified / sha256 of the body: what the next run asks with (state.py)
    validators: dict[str, str] = field(default_factory=dict)
