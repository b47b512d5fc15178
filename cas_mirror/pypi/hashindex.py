"""Where a project's index folder lives, and tidying the `simple/` folder: bandersnatch's
`hash-index` layout and its `cleanup` option.

With `hash_index`, `simple/<name>/` becomes `simple/<first letter>/<name>/` (the project
list stays `simple/index.html`, linking to `<name>/` as always); a web server translates
the URLs (cas-server does, `etc/nginx.conf` says how). Switching the option moves each
project as it is published: the folder of the other layout is removed then. `cleanup`
removes the project folders with non-normalized names that bandersnatch before 4.0 wrote.
Pure path rules plus two small deleting functions; nothing else here writes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from .model import normalize

log = logging.getLogger(__name__)


def project_folder(simple: Path, name: str, hash_index: bool) -> Path:
    """The index folder of project `name` (normalized) under `simple/`."""
    return simple / name[0] / name if hash_index else simple / name


def hashed_url_path(rest: str) -> str | None:
    """The hash-index path of a `simple/` URL path below the project list (`<name>/` or
    `<name>/<file>`), or None when it is not one: `django/` -> `d/django/`."""
    name, slash, tail = rest.partition("/")
    if not name or not slash or "/" in tail:
        return None
    return f"{name[0]}/{name}/{tail}"


def remove_other_layout(simple: Path, name: str, hash_index: bool) -> None:
    """After publishing `name`: delete its folder of the layout not in use, if any."""
    if hash_index and len(name) == 1:
        return  # simple/<x>/ is then the letter folder, not the project's old one
    other = project_folder(simple, name, not hash_index)
    if not other.is_dir():
        return
    log.info("removing %s (hash_index is %s now)", other, "on" if hash_index else "off")
    shutil.rmtree(other)
    if not hash_index and len(name) > 1:
        with contextlib.suppress(OSError):
            other.parent.rmdir()  # the letter folder, once empty


def legacy_folders(simple: Path, hash_index: bool) -> list[Path]:
    """cleanup: project folders whose name is not PEP 503 normalized (`Django/`), which
    bandersnatch before 4.0 wrote beside the normalized ones."""
    if not simple.is_dir():
        return []
    parents = [simple]
    if hash_index:
        parents = [p for p in simple.iterdir() if p.is_dir() and len(p.name) == 1]
    found = []
    for parent in parents:
        for folder in parent.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") \
                    and normalize(folder.name) != folder.name \
                    and not (parent is simple and folder.name == "versions"):
                found.append(folder)
    return sorted(found)


def remove_legacy_folders(simple: Path, hash_index: bool) -> list[str]:
    """Delete what `legacy_folders` finds; returns their paths below simple/."""
    removed = []
    for folder in legacy_folders(simple, hash_index):
        log.info("cleanup: removing %s (not a normalized project name)", folder)
        shutil.rmtree(folder)
        removed.append(folder.relative_to(simple).as_posix())
    return removed
