"""`include_dependencies: true` in `pypi:`: after the filters chose the files of the
selected projects, follow the `Requires-Dist` of each chosen file and mirror the
projects and versions they name, transitively, within the other filters (blacklist,
exclude_prereleases, packagetypes, platforms, python_versions, keep_latest).

- Metadata comes from the file's PEP 658 `.metadata` when upstream offers it, else from
  the file itself (a wheel's `*.dist-info/METADATA`, an sdist's `PKG-INFO`).
- Markers are evaluated with packaging for every configured Python version and platform
  (`environments`); a requirement is followed when its marker holds in any of them.
  Without `python_versions` the versions 3.8 to 3.14 stand in, without `platforms`
  Linux, macOS and Windows. `extra == "x"` holds only when a parent asked for `name[x]`.
- A dependency project gets one whitelist-like entry per requirement (`numpy>=1.22`):
  its files are those of any version some requirement allows. A project the whitelist
  selected keeps the whitelist's choice. A name upstream does not list, or one the
  blacklist drops, is left out (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..net import Downloader, HttpError
from .filters import FilterSpec, ProjectEntry, project_decision
from .model import UpstreamFile, normalize

log = logging.getLogger(__name__)
DEFAULT_PYTHONS = tuple((3, minor) for minor in range(8, 15))
_SYSTEMS = {  # platform family -> (sys_platform, platform_system, os_name)
    "linux": ("linux", "Linux", "posix"), "macos": ("darwin", "Darwin", "posix"),
    "windows": ("win32", "Windows", "nt"), "freebsd": ("freebsd13", "FreeBSD", "posix"),
}
MAX_METADATA = 64 * 1024 * 1024  # an sdist or wheel read whole for its metadata


def family(platform: str) -> str | None:
    """The platform family of a configured `platforms` value (name or wheel tag)."""
    lower = platform.lower()
    for prefix, name in (("linux", "linux"), ("manylinux", "linux"), ("musllinux", "linux"),
                         ("macos", "macos"), ("win", "windows"), ("freebsd", "freebsd")):
        if lower.startswith(prefix):
            return name
    return None


def environments(python_versions: Iterable[tuple[int, int]], platforms: Iterable[str]
                 ) -> list[dict[str, str]]:
    """The marker environments the mirror serves."""
    pythons = tuple(python_versions) or DEFAULT_PYTHONS
    families = sorted({f for p in platforms if (f := family(p))}) or ["linux", "macos",
                                                                       "windows"]
    out = []
    for major, minor in pythons:
        for name in families:
            sys_platform, system, os_name = _SYSTEMS[name]
            out.append({"python_version": f"{major}.{minor}",
                        "python_full_version": f"{major}.{minor}.0",
                        "sys_platform": sys_platform, "platform_system": system,
                        "os_name": os_name, "implementation_name": "cpython",
                        "platform_python_implementation": "CPython"})
    return out


def requirements(metadata: bytes, envs: list[dict[str, str]], extras: frozenset[str]
                 ) -> list[Any]:
    """The `Requires-Dist` requirements of core metadata that hold in some environment."""
    from email.parser import BytesParser  # (email, tarfile, zipfile: ~10 ms of start-up
    from email.policy import compat32  # that a run following no dependency never needs)

    from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement

    message = BytesParser(policy=compat32).parsebytes(metadata, headersonly=True)
    out = []
    for text in message.get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(str(text))
        except InvalidRequirement:
            log.debug("Requires-Dist %r is not a requirement; not followed", text)
            continue
        marker = requirement.marker
        if marker is not None:
            try:
                holds = any(marker.evaluate({**env, "extra": extra})
                            for env in envs for extra in ("", *sorted(extras)))
            except (UndefinedComparison, UndefinedEnvironmentName):
                holds = True  # a marker we cannot decide: mirror rather than miss it
            if not holds:
                continue
        out.append(requirement)
    return out


def metadata_of(downloader: Downloader, f: UpstreamFile) -> bytes | None:
    """The core metadata of an upstream file (PEP 658 first, else from the file)."""
    import io
    import tarfile
    import zipfile

    if f.core_metadata:
        return downloader.get(f.url + ".metadata", max_bytes=MAX_METADATA).data
    data = downloader.get(f.url, max_bytes=MAX_METADATA).data
    try:
        if f.filename.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                        return archive.read(name)
        elif f.filename.endswith((".tar.gz", ".tgz")):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                for member in archive:
                    if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                        handle = archive.extractfile(member)
                        return handle.read() if handle else None
        elif f.filename.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    if name.count("/") == 1 and name.endswith("/PKG-INFO"):
                        return archive.read(name)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        log.info("%s: cannot read its metadata (%s)", f.url, exc)
    return None


class Closure:
    """The rounds of one run: which projects were asked for, with which entries."""

    def __init__(self, spec: FilterSpec, settings: dict[str, Any]):
        self.spec = spec
        self.envs = environments(spec.python_versions, settings.get("platforms") or ())
        self.entries: dict[str, list[ProjectEntry]] = {}
        self.extras: dict[str, set[str]] = {}
        self.read: set[str] = set()  # urls whose metadata was read

    def follow(self, work: Iterable[Any], downloader: Downloader) -> dict[str, str]:
        """Read the metadata of the chosen files of `work` not read yet; returns the
        dependency projects whose entries changed (normalized name -> why)."""
        changed: dict[str, str] = {}
        for w in work:
            if w.report.error or w.selection is None:
                continue
            extras = frozenset(self.extras.get(w.name, ()))
            for f in w.selection.kept:
                if f.url in self.read:
                    continue
                self.read.add(f.url)
                try:
                    metadata = metadata_of(downloader, f)
                except HttpError as exc:
                    w.report.failed.append((f"{f.url} (metadata)", str(exc)))
                    continue
                if metadata is None:
                    continue
                for requirement in requirements(metadata, self.envs, extras):
                    name = normalize(requirement.name)
                    text = f"{name}{requirement.specifier}"
                    entries = self.entries.setdefault(name, [])
                    new_extras = set(requirement.extras) - self.extras.get(name, set())
                    if all(e.text != text for e in entries):
                        entries.append(ProjectEntry(text, name, requirement.specifier or None))
                        changed[name] = f"{w.name} {f.version}: {requirement}"
                    if new_extras:
                        self.extras.setdefault(name, set()).update(new_extras)
                        changed.setdefault(name, f"{w.name} {f.version}: {requirement}")
        return changed

    def spec_for(self, names: Iterable[str]) -> FilterSpec:
        entries = tuple(e for n in sorted(names) for e in self.entries[n])
        return self.spec._replace(whitelist=entries)

    def allowed(self, name: str) -> bool:
        return project_decision(self.spec._replace(whitelist=()), name).kept


def pull_dependencies(work: list[Any], closure: Closure, downloader: Downloader,
                      listing: Any, make_work: Callable[[str], Any],
                      prepare: Callable[[list[Any], FilterSpec], None]) -> set[str]:
    """The closure's rounds: prepare the projects the chosen files of `work` need, then
    theirs, until nothing new is needed; adds them to `work` (a project whose entries
    grew is prepared again and replaces its earlier work) and returns their names."""
    roots = {w.name for w in work}
    pulled: dict[str, Any] = {}
    frontier = list(work)
    while frontier:
        changed = closure.follow(frontier, downloader)
        names = []
        for name in sorted(n for n in changed if n not in roots):
            if name not in listing.projects or not closure.allowed(name):
                log.info("%s: needed by %s, but %s", name, changed[name],
                         "upstream does not list it" if name not in listing.projects
                         else "the blacklist drops it")
                continue
            log.info("%s: pulled in by %s", name, changed[name])
            names.append(name)
        frontier = [make_work(name) for name in names]
        if frontier:
            prepare(frontier, closure.spec_for(names))
        for w in frontier:
            if w.name in pulled:
                work.remove(pulled[w.name])
            pulled[w.name] = w
            work.append(w)
    return set(pulled)
