"""Choosing what to mirror: which projects, which versions, which files. Pure functions.

Projects are chosen by name before any page is fetched (`project_decision`); files are
chosen from a fetched page (`select_files`), in this order:

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
project, and globs (`django-*`) match normalized names.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import parse_items
from .model import UpstreamFile, normalize

PACKAGETYPES = ("wheel", "sdist", "bdist_egg", "bdist_wininst", "bdist_msi")
PLATFORM_NAMES = {
    "linux": ("linux_*", "manylinux*", "musllinux*"),
    "macos": ("macosx_*",),
    "windows": ("win32", "win_*"),
    "freebsd": ("freebsd_*",),
}
_SDIST_EXTENSIONS = (".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tbz", ".tar", ".tar.Z")
_ENTRY = re.compile(r"^\s*([A-Za-z0-9*?\[\]._-]+)\s*(.*?)\s*$")
_TAG_LIKE = re.compile(r"^[a-z0-9_.*?\[\]]+$")
_PY_VERSION = re.compile(r"^(\d)\.(\d{1,2})$")


# `packaging` (PEP 440 and file-name parsing) is imported on first use: a run where no
# serial moved only matches names, and should not pay for compiling its regexes.


def _specifier_set(text: str):
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(text)


def _version(text: str):
    from packaging.version import Version

    return Version(text)


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


# --------------------------------------------------------------------------- files


def parse_version(text: str | None):
    """A packaging Version, or None when absent or not PEP 440."""
    from packaging.version import InvalidVersion

    if text is None:
        return None
    try:
        return _version(text)
    except InvalidVersion:
        return None


def packagetype(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(".whl"):
        return "wheel"
    if lower.endswith(".egg"):
        return "bdist_egg"
    if lower.endswith(".exe"):
        return "bdist_wininst"
    if lower.endswith(".msi"):
        return "bdist_msi"
    if lower.endswith(tuple(e.lower() for e in _SDIST_EXTENSIONS)):
        return "sdist"
    return "other"


def file_project_and_version(filename: str, project: str) -> tuple[bool, str | None]:
    """(does the file name belong to `project`, its version when it can be read)."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    if filename.lower().endswith(".whl"):
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return False, None
        return normalize(name) == project, str(version)
    try:
        name, version = parse_sdist_filename(filename)
        return normalize(name) == project, str(version)
    except InvalidSdistFilename:
        pass
    # Legacy names (eggs, installers, odd sdists): the project name, '-', the version.
    for index, char in enumerate(filename):
        if char == "-" and normalize(filename[:index]) == project:
            rest = filename[index + 1:]
            for ext in (".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".egg", ".exe", ".msi",
                        ".tgz", ".tar"):
                if rest.lower().endswith(ext):
                    rest = rest[: -len(ext)]
                    break
            version = rest.split("-")[0]
            return True, (str(parse_version(version)) if parse_version(version) else version)
    return False, None


def _wheel_tags(filename: str):
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        return parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return frozenset()


def _platform_ok(spec: FilterSpec, tags) -> bool:
    for tag in tags:
        if tag.platform == "any":
            return True
        if any(fnmatch.fnmatchcase(tag.platform, g) for g in spec.platforms):
            return True
    return False


def _interpreter_version(interpreter: str) -> tuple[str, int, int | None] | None:
    match = re.match(r"^([a-z]+)(\d)(\d*)$", interpreter)
    if not match:
        return None
    impl, major, minor = match.groups()
    return impl, int(major), int(minor) if minor else None


def _python_ok(spec: FilterSpec, tags) -> bool:
    for tag in tags:
        parsed = _interpreter_version(tag.interpreter)
        if parsed is None:
            continue
        impl, major, minor = parsed
        if impl not in ("py", "cp"):
            continue
        for want_major, want_minor in spec.python_versions:
            if major != want_major:
                continue
            if minor is None or minor == want_minor:
                return True
            if impl == "cp" and tag.abi == "abi3" and minor <= want_minor:
                return True
    return False


def _requires_python_ok(spec: FilterSpec, requires_python: str | None) -> bool:
    if not requires_python or not spec.python_versions:
        return True
    from packaging.specifiers import InvalidSpecifier

    try:
        specifier = _specifier_set(requires_python)
    except InvalidSpecifier:
        return True  # upstream's mistake: let the installer judge
    return any(specifier.contains(f"{major}.{minor}.{patch}", prereleases=True)
               for major, minor in spec.python_versions for patch in (0, 99))


def _tag_excluded(spec: FilterSpec, tag) -> bool:
    if tag.platform != "any" and any(fnmatch.fnmatchcase(tag.platform, g)
                                     for g in spec.exclude_platforms):
        return True
    parsed = _interpreter_version(tag.interpreter)
    return parsed is not None and parsed[2] is not None and \
        (parsed[1], parsed[2]) in spec.exclude_pythons


def _excluded_platform(spec: FilterSpec, filename: str) -> bool:
    """bandersnatch's exclude_platform: a wheel whose every tag is excluded; installers
    (.exe, .msi) with windows; eggs built for an excluded pyX.Y."""
    kind = packagetype(filename)
    if kind == "wheel":
        tags = _wheel_tags(filename)
        return bool(tags) and all(_tag_excluded(spec, t) for t in tags)
    if kind in ("bdist_wininst", "bdist_msi"):
        return "win32" in spec.exclude_platforms
    if kind == "bdist_egg":
        match = re.search(r"-py(\d)\.(\d+)", filename)
        return bool(match) and (int(match.group(1)), int(match.group(2))) in spec.exclude_pythons
    return False


@dataclass
class Selection:
    kept: list[UpstreamFile] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # filename -> why
    problems: list[str] = field(default_factory=list)  # pins upstream cannot meet


def select_files(spec: FilterSpec, project: str, files: list[UpstreamFile]) -> Selection:
    """Apply steps 1-4 of the module docstring to one project's files."""
    selection = Selection()
    white = [e for e in spec.whitelist if e.matches(project)]
    white_specs = [e.specifier for e in white]
    black = [e for e in spec.blacklist if e.specifier is not None and e.matches(project)]
    candidates = []
    if spec.max_project_size is not None and not white:
        total = sum(f.size or 0 for f in files)
        if total > spec.max_project_size:
            for f in files:
                selection.dropped[f.filename] = (f"max_project_size: the project's files "
                                                 f"total {total} bytes")
            return selection
    for f in files:
        version = parse_version(f.version)
        why = None
        if white_specs and None not in white_specs and (
                version is None or not any(s.contains(version, prereleases=True)
                                           for s in white_specs)):
                why = "whitelist: version not in " + " or ".join(
                    e.text for e in white if e.specifier is not None)
        if why is None:
            for entry in black:
                if version is not None and entry.specifier.contains(version, prereleases=True):
                    why = f"blacklist: {entry.text}"
                    break
        if why is None and spec.exclude_prereleases and version is not None \
                and version.is_prerelease:
            why = "exclude_prereleases"
        if why is None and f.version is not None:
            for pattern in spec.exclude_release_regex:
                if pattern.search(f.version):
                    why = f"exclude_release_regex: {pattern.pattern}"
                    break
        if why is None and (spec.exclude_platforms or spec.exclude_pythons) \
                and _excluded_platform(spec, f.filename):
            why = "exclude_platforms"
        if why is None and spec.packagetypes and packagetype(f.filename) not in spec.packagetypes:
            why = f"packagetypes: {packagetype(f.filename)}"
        if why is None and (spec.platforms or spec.python_versions) \
                and packagetype(f.filename) == "wheel":
            tags = _wheel_tags(f.filename)
            if spec.platforms and not _platform_ok(spec, tags):
                why = "platforms: wheel for another platform"
            elif spec.python_versions and not _python_ok(spec, tags):
                why = "python_versions: wheel for another Python"
        if why is None and not _requires_python_ok(spec, f.requires_python):
            why = f"python_versions: Requires-Python {f.requires_python}"
        if why is None:
            candidates.append((f, version))
        else:
            selection.dropped[f.filename] = why
    if spec.keep_latest:
        ranks: dict[str | None, tuple] = {}
        for f, version in candidates:
            usable = not f.yanked
            key = (usable, version is not None, version or _version("0"), f.version or "")
            ranks[f.version] = max(ranks.get(f.version, key), key)
        newest = sorted(ranks, key=lambda v: ranks[v], reverse=True)[: spec.keep_latest]
        keep_versions = set(newest)
        for f, _ in candidates:
            if f.version in keep_versions:
                selection.kept.append(f)
            else:
                selection.dropped[f.filename] = f"keep_latest: {spec.keep_latest}"
    else:
        selection.kept = [f for f, _ in candidates]
    return selection
