"""Choosing what to mirror: which projects, which versions, which files. Pure functions.

Projects are chosen by name before any page is fetched (`project_decision`, here); files
are chosen from a fetched page (`select_files`, selection.py), in this order:

1. `whitelist` (when non-empty, only matching projects; an entry with a PEP 440
   specifier, `requests>=2.30`, limits the versions of that project) and `blacklist`
   (a bare name or glob drops the project; with a specifier, only those versions);
   `exclude_project_regex` drops projects by name; `max_project_size` drops a project
   whose files total more than it, unless the whitelist names the project;
2. `exclude_prereleases`: drop pre-, dev- and release-candidate versions;
   `exclude_release_regex`: versions matching one of its expressions;
3. file filters: `packagetypes` (wheel, sdist, ...), `platforms` and `python_versions`
   (wheels built for other targets, and files whose Requires-Python excludes every
   listed version), `exclude_platforms` (bandersnatch's exclude_platform: wheels whose
   every tag is excluded, Windows installers, eggs for an excluded pyX.Y);
4. `keep_latest: N` / `latest_only` (N = 1): the N newest versions that still have files,
   non-yanked versions ranked above yanked ones.

Entries are PEP 503 normalized before matching, so `Django`, `django` and `DJANGO` are one
project, and globs (`django-*`) match normalized names. This module holds the entries, the
checks of their values (config/keys.py), the `FilterSpec` and the decision by name: all
that a run where no serial moved needs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import parse_items
from .model import normalize

PACKAGETYPES = ("wheel", "sdist", "bdist_egg", "bdist_wininst", "bdist_msi")
PLATFORM_NAMES = {
    "linux": ("linux_*", "manylinux*", "musllinux*"),
    "macos": ("macosx_*",),
    "windows": ("win32", "win_*"),
    "freebsd": ("freebsd_*",),
}
_ENTRY = re.compile(r"^\s*([A-Za-z0-9*?\[\]._-]+)\s*(.*?)\s*$")
_TAG_LIKE = re.compile(r"^[a-z0-9_.*?\[\]]+$")
_PY_VERSION = re.compile(r"^(\d)\.(\d{1,2})$")


# `packaging` (PEP 440) is imported on first use: a run where no serial moved only matches
# names, and should not pay for compiling its regexes.


def _specifier_set(text: str):
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(text)


class EntryError(ValueError):
    """A filter entry that cannot be understood; the message says what is allowed."""


# --------------------------------------------------------------------------- entries


class ProjectEntry(NamedTuple):  # not a dataclass: start-up (net/types.py)
    text: str
    pattern: str  # normalized name or glob
    specifier: Any  # a packaging SpecifierSet, or None

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


def parse_entry(text: Any) -> ProjectEntry:
    if not isinstance(text, str) or not text.strip():
        raise EntryError(f"expected a project name, glob or 'name>=version', got {text!r}")
    match = _ENTRY.match(text)
    if not match:
        raise EntryError(f"{text!r} is not a project name or glob, optionally followed by a "
                         "PEP 440 specifier such as 'requests>=2.30'")
    name, rest = match.groups()
    specifier = None
    if rest:
        from packaging.specifiers import InvalidSpecifier

        try:
            specifier = _specifier_set(rest)
        except InvalidSpecifier:
            raise EntryError(f"{text!r}: {rest!r} is not a PEP 440 version specifier "
                             "(e.g. '>=2.30', '==1.*', '>=1,<2')") from None
    return ProjectEntry(text.strip(), normalize(name), specifier)


def parse_entries(values: Iterable[Any]) -> list[ProjectEntry]:
    return parse_items(values, parse_entry, EntryError)


def check_platform(value: str) -> str:
    """A platform entry: a name from PLATFORM_NAMES, or a wheel platform tag or glob."""
    if value in PLATFORM_NAMES or value == "any":
        return value
    if ("_" in value or any(c in value for c in "*?[")) and _TAG_LIKE.match(value):
        return value
    from ..errors import did_you_mean

    raise EntryError(f"unknown platform {value!r}{did_you_mean(value, PLATFORM_NAMES)}; "
                     f"use one of {', '.join(PLATFORM_NAMES)} or a wheel platform tag or glob "
                     "such as manylinux*_x86_64, win_amd64, macosx_*_arm64")


_EXCLUDED_PYTHON = re.compile(r"^py(\d)\.(\d{1,2})$")


def check_excluded_platform(value: str) -> str:
    """An exclude_platforms entry: what `platforms` takes, or a Python version as pyX.Y
    (bandersnatch's exclude_platform spelling, e.g. py2.7)."""
    if _EXCLUDED_PYTHON.match(value):
        return value
    return check_platform(value)


def check_python_version(value: Any) -> str:
    if isinstance(value, float):
        raise EntryError(f"{value!r}: write Python versions as quoted strings ('3.10'): YAML "
                         "reads 3.10 as the number 3.1")
    if not isinstance(value, str) or not _PY_VERSION.match(value.strip()):
        raise EntryError(f"expected a Python version such as '3.12', got {value!r}")
    return value.strip()


# --------------------------------------------------------------------------- the spec


class FilterSpec(NamedTuple):  # not a dataclass: start-up (model.py)
    whitelist: tuple[ProjectEntry, ...] = ()
    blacklist: tuple[ProjectEntry, ...] = ()
    keep_latest: int = 0  # 0: every version
    exclude_prereleases: bool = False
    platforms: tuple[str, ...] = ()  # tag globs; empty: every platform
    python_versions: tuple[tuple[int, int], ...] = ()
    packagetypes: frozenset[str] = frozenset()
    # bandersnatch's exclude_platform, regex and size filters
    exclude_platforms: tuple[str, ...] = ()  # tag globs
    exclude_pythons: tuple[tuple[int, int], ...] = ()
    exclude_project_regex: tuple[re.Pattern, ...] = ()
    exclude_release_regex: tuple[re.Pattern, ...] = ()
    max_project_size: int | None = None
    # normalized project -> its lockfile pins (locked.py decides those projects' files)
    pins: Mapping[str, tuple[Any, ...]] = MappingProxyType({})

    @classmethod
    def from_settings(cls, s: dict[str, Any]) -> FilterSpec:
        keep = s.get("keep_latest") or 0
        if s.get("latest_only"):
            keep = 1
        globs: list[str] = []
        for p in s.get("platforms") or ():
            globs.extend(PLATFORM_NAMES.get(p, (p,)))
        versions = []
        for v in s.get("python_versions") or ():
            major, minor = _PY_VERSION.match(v).groups()
            versions.append((int(major), int(minor)))
        excluded_globs: list[str] = []
        excluded_pythons = []
        for p in s.get("exclude_platforms") or ():
            match = _EXCLUDED_PYTHON.match(p)
            if match:
                excluded_pythons.append((int(match.group(1)), int(match.group(2))))
            else:
                excluded_globs.extend(PLATFORM_NAMES.get(p, (p,)))
        return cls(tuple(parse_entries(s.get("whitelist") or ())),
                   tuple(parse_entries(s.get("blacklist") or ())), keep,
                   bool(s.get("exclude_prereleases")), tuple(globs), tuple(versions),
                   frozenset(s.get("packagetypes") or ()), tuple(excluded_globs),
                   tuple(excluded_pythons),
                   tuple(re.compile(r) for r in s.get("exclude_project_regex") or ()),
                   tuple(re.compile(r) for r in s.get("exclude_release_regex") or ()),
                   s.get("max_project_size"))

    @property
    def exact_names(self) -> tuple[str, ...] | None:
        """The projects a whitelist of plain names (no globs) selects, or None."""
        if not self.whitelist or any(any(c in e.pattern for c in "*?[")
                                     for e in self.whitelist):
            return None
        return tuple(dict.fromkeys(e.pattern for e in self.whitelist))


class Decision(NamedTuple):  # not a dataclass: start-up (net/types.py)
    kept: bool
    reason: str


def project_decision(spec: FilterSpec, name: str) -> Decision:
    """Whether project `name` (normalized) is mirrored at all."""
    if spec.whitelist and not any(e.matches(name) for e in spec.whitelist):
        return Decision(False, "not in whitelist")
    for entry in spec.blacklist:
        if entry.specifier is None and entry.matches(name):
            return Decision(False, f"blacklist: {entry.text}")
    for pattern in spec.exclude_project_regex:
        if pattern.search(name):
            return Decision(False, f"exclude_project_regex: {pattern.pattern}")
    return Decision(True, "")
