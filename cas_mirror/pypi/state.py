"""What the PyPI sync remembers between runs, in `<mirror_dir>/<user>/.cas-sync/state.json`
(beside `web/`, so it is never served):

- the last upstream serial and the fingerprint of the settings that shape the pages;
- per mirrored project: its display name, the upstream serial its pages reflect (kept at
  the old value when something failed, so the next run tries again), the ETag and
  Last-Modified its upstream page came with (for conditional requests), and the files it
  owns under `web/packages/` with size, mtime and digest when last verified, so an
  unchanged file is never re-read (compare_method: hash) and a removed one is found;
- in `pending-downloads.json`, while a run downloads: the files it is fetching, so that
  the `.part` files of a killed run are found and deleted by the next one even when the
  file is no longer wanted (PyPI's layout has a folder per file: nothing to scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec

from cas_index.atomic import write_if_changed

VERSION = 1
PENDING = "pending-downloads.json"


class ProjectState(NamedTuple):  # not a dataclass: start-up (model.py)
    """One mirrored project; a run that changes it replaces it in `TreeState.projects`."""

    name: str
    serial: int | None
    # relpath under web/packages/ -> [size, mtime_ns, digest algorithm, hex digest]
    files: dict[str, list]
    # the page's ETag / Last-Modified, for a conditional request when no serial says
    # whether it changed (an exact-name whitelist, an HTML-only upstream)
    validators: dict[str, str]


@dataclass
class TreeState:
    last_serial: int | None = None
    fingerprint: str | None = None
    projects: dict[str, ProjectState] = field(default_factory=dict)


def load_state(folder: Path) -> TreeState:
    try:
        data = msgspec.json.decode((folder / "state.json").read_bytes())
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return TreeState()
        projects = {key: ProjectState(p["name"], p.get("serial"), p.get("files") or {},
                                      p.get("validators") or {})
                    for key, p in data.get("projects", {}).items()}
        return TreeState(data.get("last_serial"), data.get("fingerprint"), projects)
    except (OSError, msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return TreeState()  # no state, or unreadable: every project is examined afresh


def save_state(folder: Path, state: TreeState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"version": VERSION, "last_serial": state.last_serial,
            "fingerprint": state.fingerprint,
            "projects": {key: {"name": p.name, "serial": p.serial, "files": p.files,
                               **({"validators": p.validators} if p.validators else {})}
                         for key, p in sorted(state.projects.items())}}
    write_if_changed(folder / "state.json", msgspec.json.encode(data))


def load_pending(folder: Path) -> set[str]:
    """Files (relpaths under web/packages/) a run was downloading when it ended."""
    try:
        data = msgspec.json.decode((folder / PENDING).read_bytes())
    except (OSError, msgspec.DecodeError):
        return set()
    return {p for p in data if isinstance(p, str)} if isinstance(data, list) else set()


def save_pending(folder: Path, relpaths: set[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_if_changed(folder / PENDING, msgspec.json.encode(sorted(relpaths)))


def clear_pending(folder: Path) -> None:
    (folder / PENDING).unlink(missing_ok=True)
