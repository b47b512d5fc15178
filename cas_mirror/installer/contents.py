"""What each solved package puts into the prefix: its files extracted on the build
machine, their placeholders and modes, with noarch: python packages relocated.

A package is extracted with conda-package-streaming (both `.conda` and `.tar.bz2`), then
its file list is read from `info/paths.json` or, for old packages without one, from
`info/files` + `info/has_prefix` (`PLACEHOLDER MODE PATH`, or a bare path meaning the
default placeholder in text mode). Every path is checked to stay inside the prefix.

noarch: python packages are made for the python of the environment here, where the
solved python version is known, so the target needs no Python for it: `site-packages/`
moves to the python's `lib/pythonX.Y/site-packages` (or the record's
`python_site_packages_path`), `python-scripts/` to `bin/`, and each entry point of
`info/link.json` becomes a `bin/NAME` script whose `#!` line names the prefix through the
default placeholder (text mode), exactly as conda writes them.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import CasError
from .prefix import DEFAULT_PLACEHOLDER

log = logging.getLogger(__name__)

ENTRY_POINT_TEMPLATE = """\
#!{prefix}/bin/python
# -*- coding: utf-8 -*-
import re
import sys

from {module} import {attr}

if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


class PackageError(CasError):
    """A solved package whose contents cannot go into an environment (exit 1)."""

    exit_code = 1


@dataclass
class PathEntry:
    path: str  # relative to the prefix, after relocation
    path_type: str  # hardlink, softlink, directory, unix_python_entry_point
    source: Path | None = None  # the extracted file; None for generated content
    content: bytes | None = None  # generated files (entry points)
    placeholder: str | None = None
    file_mode: str | None = None  # "text" or "binary" when there is a placeholder
    sha256: str | None = None
    size: int | None = None


@dataclass
class PackageContents:
    record: object  # rattler.RepoDataRecord
    folder: Path  # where it was extracted
    entries: list[PathEntry] = field(default_factory=list)
    noarch_python: bool = False


def extract(package: Path, dest: Path) -> Path:
    """Extract `package` (either format) into `dest` and return `dest`."""
    from conda_package_streaming.extract import extract as cps_extract

    dest.mkdir(parents=True, exist_ok=True)
    try:
        cps_extract(str(package), dest_dir=str(dest))
    except Exception as exc:  # noqa: BLE001 - a corrupt archive raises many types
        raise PackageError(f"{package}: cannot extract ({' '.join(str(exc).split())})") from None
    return dest


def _checked(relative: str, package: str) -> str:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\n" in relative \
            or relative != relative.strip():
        raise PackageError(f"{package}: refusing path {relative!r} (outside the prefix or "
                           "not a plain relative path)")
    return str(path)


def read_contents(record, folder: Path, python_site_packages: str | None) -> PackageContents:
    """The entries of a package extracted in `folder`. `python_site_packages` is where the
    environment's python keeps site-packages (None when there is no python)."""
    name = record.file_name
    index = _json(folder / "info/index.json", name) or {}
    link = _json(folder / "info/link.json", name) or {}
    noarch = str(index.get("noarch") or "") == "python" or \
        (link.get("noarch") or {}).get("type") == "python"
    entries = _paths_json(folder, name) or _old_style(folder, name)
    contents = PackageContents(record, folder, entries, noarch)
    for script in (f"bin/.{record.name.normalized}-{kind}.sh"
                   for kind in ("pre-link", "post-link")):
        if any(e.path == script for e in entries):
            log.warning("%s has %s, which the installer does not run (it may need more than "
                        "sh and coreutils)", name, script)
    if noarch:
        if python_site_packages is None:
            raise PackageError(f"{name}: a noarch: python package, but the solution holds "
                               "no python")
        _relocate(contents, python_site_packages, link, folder)
    return contents


def _json(path: Path, package: str) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PackageError(f"{package}: unreadable {path.name} ({exc})") from None


def _paths_json(folder: Path, package: str) -> list[PathEntry] | None:
    doc = _json(folder / "info/paths.json", package)
    if doc is None:
        return None
    entries = []
    for item in doc.get("paths", []):
        rel = _checked(item["_path"], package)
        placeholder = item.get("prefix_placeholder")
        entries.append(PathEntry(
            path=rel, path_type=item.get("path_type", "hardlink"), source=folder / rel,
            placeholder=placeholder,
            file_mode=(item.get("file_mode") or "text") if placeholder else None,
            sha256=item.get("sha256"), size=item.get("size_in_bytes")))
    return entries


def _old_style(folder: Path, package: str) -> list[PathEntry]:
    """info/files + info/has_prefix, for packages older than paths.json."""
    try:
        files = (folder / "info/files").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        files = []
    prefixed: dict[str, tuple[str, str]] = {}
    has_prefix = folder / "info/has_prefix"
    if has_prefix.is_file():
        for line in has_prefix.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            words = shlex.split(line)
            if len(words) == 1:
                prefixed[words[0]] = (DEFAULT_PLACEHOLDER, "text")
            elif len(words) == 3:
                prefixed[words[2]] = (words[0], words[1])
            else:
                raise PackageError(f"{package}: info/has_prefix: cannot read line {line!r}")
    entries = []
    for listed in filter(None, (f.strip() for f in files)):
        rel = _checked(listed, package)
        source = folder / rel
        placeholder, mode = prefixed.get(rel, (None, None))
        kind = "softlink" if source.is_symlink() else "hardlink"
        entries.append(PathEntry(rel, kind, source=source, placeholder=placeholder,
                                 file_mode=mode))
    return entries


def _relocate(contents: PackageContents, site_packages: str, link: dict,
              folder: Path) -> None:
    for entry in contents.entries:
        parts = entry.path.split("/", 1)
        if parts[0] == "site-packages" and len(parts) == 2:
            entry.path = f"{site_packages}/{parts[1]}"
        elif parts[0] == "python-scripts" and len(parts) == 2:
            entry.path = f"bin/{parts[1]}"
    points = (link.get("noarch") or {}).get("entry_points")
    if points is None:
        points = (_json(folder / "info/noarch.json", contents.record.file_name) or {}).get(
            "entry_points", [])
    for point in points:
        command, _, target = (p.strip() for p in point.partition("="))
        module, _, func = target.partition(":")
        if not command or not module or not func or "/" in command:
            raise PackageError(f"{contents.record.file_name}: cannot read entry point "
                               f"{point!r} (expected 'name = module:function')")
        attr = func.split(".")[0]
        script = ENTRY_POINT_TEMPLATE.format(prefix=DEFAULT_PLACEHOLDER, module=module,
                                             attr=attr, func=func)
        contents.entries.append(PathEntry(
            f"bin/{command}", "unix_python_entry_point", content=script.encode(),
            placeholder=DEFAULT_PLACEHOLDER, file_mode="text"))


def python_site_packages(records: list) -> str | None:
    """Where the solution's python keeps site-packages, relative to the prefix."""
    for record in records:
        if record.name.normalized == "python":
            if record.python_site_packages_path:
                return record.python_site_packages_path
            major_minor = ".".join(str(record.version).split(".")[:2])
            return f"lib/python{major_minor}/site-packages"
    return None
