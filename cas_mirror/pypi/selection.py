"""Choosing a project's files from its fetched page (`select_files`): steps 1 to 4 of
filters.py's list, with the file-name rules they need (package types, wheel tags, the
version a file name carries). Imported only when a page is examined: a run where no
serial moved never loads it (nor `packaging`, imported on first use).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from .filters import FilterSpec
from .model import UpstreamFile, normalize

_SDIST_EXTENSIONS = (".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tbz", ".tar", ".tar.Z")


def _version(text: str):
    from packaging.version import Version

    return Version(text)


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
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifier = SpecifierSet(requires_python)
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
