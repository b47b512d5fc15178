"""The local side of a platform folder: which package files and interrupted downloads
(`.NAME.part`) it holds, whether their content matches upstream's hashes, and whether the
sync user can write the folder (and `mirror_dir`) at all.

Checking writability up front turns a folder the sync cannot write (a read-only
filesystem, wrong ownership, a file where a folder should be) into one line naming it,
before anything is downloaded for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..digests import file_digest
from ..net import part_path
from ..paths import nearest_existing, not_writable


class LocalFolder:
    """What a platform folder holds (a plain class: every run makes one per platform)."""

    __slots__ = ("packages", "partials")

    def __init__(self, packages: dict[str, int] | None = None,
                 partials: dict[str, int] | None = None) -> None:
        self.packages = {} if packages is None else packages  # package file name -> size
        self.partials = {} if partials is None else partials  # target name -> .part size



def scan_folder(folder: Path) -> LocalFolder:
    """The package files and partial downloads in `folder` (none when it does not exist).
    An OSError other than "not there" (a file in its place, no permission) is raised."""
    from .plan import is_package_file  # (plan.py imports the repodata model: not at start-up)

    local = LocalFolder()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if is_package_file(name):
                    if entry.is_file(follow_symlinks=False):
                        local.packages[name] = entry.stat().st_size
                elif name.startswith(".") and (target := partial_target(name)) is not None \
                        and entry.is_file(follow_symlinks=False):
                    local.partials[target] = entry.stat().st_size
    except FileNotFoundError:
        pass
    return local


def partial_target(name: str) -> str | None:
    """The package file a `.part` file name belongs to, or None when it is not one."""
    from .plan import is_package_file

    candidate = name[1:].rsplit(".", 1)[0]
    if is_package_file(candidate) and part_path(Path(candidate)).name == name:
        return candidate
    return None


def bad_hashes(folder: Path, records: dict[str, Any], present: dict[str, int],
               workers: int) -> frozenset[str]:
    """Local files (of `records`, present) whose sha256 (else md5) does not match."""

    def bad(fn: str) -> bool:
        record = records[fn]
        expected, algorithm = record.get("sha256"), "sha256"
        if not expected:
            expected, algorithm = record.get("md5"), "md5"
        if not expected:
            return False
        return file_digest(folder / fn, algorithm) != expected.lower()

    from concurrent.futures import ThreadPoolExecutor  # only when there is hashing to do

    candidates = [fn for fn in records if fn in present]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        verdicts = zip(candidates, pool.map(bad, candidates), strict=True)
        return frozenset(fn for fn, is_bad in verdicts if is_bad)


def mirror_dir_status(mirror_dir: Path) -> tuple[str | None, str]:
    """(problem, status) of `mirror_dir`, creating nothing: a problem ("... is a file, not
    a folder", "read-only file system"...) when the sync cannot use it, else None and what
    the sync will find ("exists, writable" / "does not exist; will be created")."""
    if mirror_dir.exists():
        if not mirror_dir.is_dir():
            return f"{mirror_dir} is a file, not a folder", ""
        problem = not_writable(mirror_dir)
        if problem:
            return f"cannot write {mirror_dir}: {problem}", ""
        return None, "exists, writable"
    parent = nearest_existing(mirror_dir.parent)
    if not parent.is_dir():
        return f"cannot create {mirror_dir}: {parent} is a file, not a folder", ""
    problem = not_writable(parent)
    if problem:
        return f"cannot create {mirror_dir} in {parent}: {problem}", ""
    return None, "does not exist; will be created"
