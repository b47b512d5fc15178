"""Lockfile pins on the PyPI side (`lockfiles:`, `cas-sync pypi --from-lock FILE`): the
PyPI entries of pixi.lock and conda-lock.yml, pylock.toml, uv.lock and hash-pinned
requirements.txt (read by cas_mirror.lockfiles) decide the mirror's files.

Given pins, the projects mirrored are the pinned ones (plus the whitelist's, when it
names any), and of a pinned project exactly the pinned files: by file name (pylock.toml,
uv.lock, pixi.lock), or every file of the pinned version whose sha256 the pin lists
(requirements.txt). Pure functions: a pin upstream does not offer, or offers with another
sha256, is a problem naming the lockfile and line; the sync refuses the run (exit 2)
before downloading anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .filters import FilterSpec, ProjectEntry
from .model import UpstreamFile, normalize
from .selection import Selection

if TYPE_CHECKING:  # (the lockfile readers are not imported by a run without lockfiles)
    from ..lockfiles import PypiPin


def pinned_spec(spec: FilterSpec, pins: Iterable[PypiPin]) -> FilterSpec:
    """`spec` restricted to the pinned projects (and the whitelist's), carrying the pins."""
    by_project: dict[str, list[PypiPin]] = {}
    for pin in pins:
        by_project.setdefault(normalize(pin.name), []).append(pin)
    if not by_project:
        return spec
    entries = tuple(ProjectEntry(f"pinned by {pins_[0].where}", name, None)
                    for name, pins_ in sorted(by_project.items()))
    return spec._replace(whitelist=spec.whitelist + entries,
                         pins={name: tuple(p) for name, p in by_project.items()})


def apply_pins(selection: Selection, files: list[UpstreamFile],
               pins: Mapping[str, tuple[PypiPin, ...]], project: str) -> Selection:
    """The selection of a project under the pins: only pinned files (whatever the other
    file filters said: the lock is the choice), problems for pins upstream cannot meet.
    A project the whitelist named without pins keeps its selection."""
    wanted = pins.get(project)
    if wanted is None:
        return selection
    out = Selection(problems=list(selection.problems))
    by_name = {f.filename: f for f in files}
    kept: dict[str, UpstreamFile] = {}
    for pin in wanted:
        if pin.filename is not None:
            f = by_name.get(pin.filename)
            if f is None:
                out.problems.append(f"{pin.where}: {pin.filename} is not on upstream's "
                                    f"page of {project}")
            elif pin.sha256 and f.sha256 and f.sha256.lower() not in pin.sha256:
                out.problems.append(f"{pin.where}: sha256 of {pin.filename} is "
                                    f"{min(pin.sha256)}, upstream has {f.sha256}")
            else:
                kept[f.filename] = f
            continue
        of_version = [f for f in files if f.version == pin.version]
        matching = [f for f in of_version if f.sha256 and f.sha256.lower() in pin.sha256]
        if not of_version:
            out.problems.append(f"{pin.where}: {pin.name}=={pin.version} is not on "
                                f"upstream's page of {project}")
        elif not matching:
            out.problems.append(f"{pin.where}: no file of {pin.name}=={pin.version} "
                                f"upstream has a listed hash (upstream has "
                                f"{', '.join(sorted(str(f.sha256) for f in of_version))})")
        kept.update((f.filename, f) for f in matching)
    out.kept = [f for f in files if f.filename in kept]
    out.dropped = {f.filename: "not pinned by the lockfiles" for f in files
                   if f.filename not in kept}
    return out
