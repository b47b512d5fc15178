"""The private PyPI index: a PyPI-shaped tree beside the mirror's, filled by uploads.

Layout, at `<root>/<pypi folder>-private/` (or the `pypi_private_folder` key), served as
`/<that folder>/` by the ordinary tree and merged into `/<pypi folder>/simple/` by
private_view.py:

    simple/index.{html,v1_html,v1_json}            the private project list
    simple/<project>/index.{html,v1_html,v1_json}  PEP 503 / 691 / 700 pages
    packages/<project>/<file>                      the uploaded files
    packages/<project>/<wheel>.metadata            PEP 658 core metadata of wheels
    .state/<project>.json                          what the pages are made from
    .incoming/                                     request bodies being received
    .cas-index.lock                                the lock every change holds

Links on the pages are `../../../<folder>/packages/...`: the same from the private tree's
own `simple/<project>/` and from the merged `/<pypi folder>/simple/<project>/`, both three
levels deep. Every change (an upload, a yank, a removal) holds the lock, writes the file
first, then the project's state and pages, then the list, each atomically; a removed
file is deleted only after the pages that named it are replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cas_index.atomic import write_atomic, write_if_changed
from cas_index.lock import ChannelLock

from ..digests import file_digest
from ..pypi import pages
from ..pypi.model import normalize
from .auth import Refusal
from .pypi_archive import Distribution

log = logging.getLogger(__name__)

STATE_DIR = ".state"
INCOMING_DIR = ".incoming"
PAGE_NAMES = ("index.html", "index.v1_html", "index.v1_json")
LOCK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Placed:
    relpath: str  # under the private tree
    sha256: str
    size: int


class PrivateIndex:
    """The private index at `root` (its folder name is `root.name`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.folder = self.root.name
        self.simple = self.root / "simple"
        self.packages = self.root / "packages"
        self.state = self.root / STATE_DIR
        self.incoming = self.root / INCOMING_DIR

    def lock(self) -> ChannelLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return ChannelLock(self.root, LOCK_TIMEOUT)

    # ---------------------------------------------------------------- reading
    def project(self, name: str) -> dict | None:
        try:
            return json.loads((self.state / f"{normalize(name)}.json").read_bytes())
        except FileNotFoundError:
            return None

    def has_project(self, name: str) -> bool:
        return (self.state / f"{normalize(name)}.json").is_file()

    def project_names(self) -> list[tuple[str, str]]:
        """(normalized, display) of every private project, sorted."""
        out = []
        try:
            entries = sorted(os.listdir(self.state))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.endswith(".json") and not entry.startswith("."):
                state = self.project(entry[:-5])
                if state is not None:
                    out.append((entry[:-5], state["name"]))
        return out

    def page_files(self, state: dict) -> list[pages.PageFile]:
        normalized = normalize(state["name"])
        out = []
        for f in sorted(state["files"], key=lambda f: f["filename"]):
            href = f"../../../{self.folder}/packages/{normalized}/{f['filename']}"
            core = {"sha256": f["metadata_sha256"]} if f.get("metadata_sha256") else False
            out.append(pages.PageFile(f["filename"], href, {"sha256": f["sha256"]}, f["size"],
                                      f.get("requires_python"), f.get("yanked") or False,
                                      core, f["upload_time"]))
        return out

    # ---------------------------------------------------------------- changing
    def add(self, received: Path, dist: Distribution) -> Placed:
        """Put the verified file `received` (in .incoming/) in place and publish. Call with
        the lock held. Refusal(409) when the file name was uploaded before."""
        previous = self.project(dist.normalized)
        state = json.loads(json.dumps(previous)) if previous else {"name": dist.name,
                                                                   "files": []}
        taken = {f["filename"].lower() for f in state["files"]}
        folder = self.packages / dist.normalized
        target = folder / dist.filename
        if dist.filename.lower() in taken or target.exists():
            raise Refusal(409, f"File already exists: {dist.filename}; a file name can be "
                          "uploaded once (upload a new version)")
        folder.mkdir(parents=True, exist_ok=True)
        digest, size = file_digest(received), received.stat().st_size
        entry = {"filename": dist.filename, "version": dist.version, "sha256": digest,
                 "size": size, "requires_python": dist.requires_python, "yanked": False,
                 "upload_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}
        metadata = folder / f"{dist.filename}.metadata"
        try:
            if dist.filetype == "bdist_wheel":
                write_atomic(metadata, dist.metadata)
                entry["metadata_sha256"] = hashlib.sha256(dist.metadata).hexdigest()
            os.link(received, target)  # never replaces a file (FileExistsError)
            state["files"].append(entry)
            self._publish(state)
        except BaseException:
            # a failed write (a full disk): back to the pages as they were, then the files
            target.unlink(missing_ok=True)
            metadata.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._publish(previous or {"name": dist.name, "files": []})
            raise
        log.info("published %s in the private index", dist.filename)
        return Placed(f"packages/{dist.normalized}/{dist.filename}", digest, size)

    def yank(self, name: str, version: str, reason: str | None) -> list[dict]:
        """Mark every file of `version` yanked (with the lock held); the files yanked."""
        state, chosen = self._version(name, version)
        for f in chosen:
            f["yanked"] = reason or True
        self._publish(state)
        return chosen

    def remove(self, name: str, version: str) -> list[dict]:
        """Remove every file of `version` (with the lock held); the files removed."""
        state, chosen = self._version(name, version)
        state["files"] = [f for f in state["files"] if f not in chosen]
        normalized = normalize(state["name"])
        self._publish(state)
        folder = self.packages / normalized
        for f in chosen:
            (folder / f["filename"]).unlink(missing_ok=True)
            (folder / f"{f['filename']}.metadata").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the project's last files went
            folder.rmdir()
        return chosen

    def _version(self, name: str, version: str) -> tuple[dict, list[dict]]:
        from packaging.version import InvalidVersion, Version

        state = self.project(name)
        if state is None:
            raise Refusal(404, f"no private project {name!r} in {self.root}")
        try:
            wanted = Version(version)
            chosen = [f for f in state["files"] if Version(f["version"]) == wanted]
        except InvalidVersion:
            chosen = [f for f in state["files"] if f["version"] == version]
        if not chosen:
            have = ", ".join(dict.fromkeys(f["version"] for f in state["files"])) or "none"
            raise Refusal(404, f"project {state['name']!r} has no version {version} "
                          f"(versions: {have})")
        return state, chosen

    def _publish(self, state: dict) -> None:
        normalized = normalize(state["name"])
        self.state.mkdir(parents=True, exist_ok=True)
        folder = self.simple / normalized
        if state["files"]:
            write_atomic(self.state / f"{normalized}.json", json.dumps(state, indent=1).encode())
            files = self.page_files(state)
            versions = list(dict.fromkeys(f["version"] for f in state["files"]))
            page = pages.project_html(state["name"], files)
            outputs = {"index.html": page, "index.v1_html": page,
                       "index.v1_json": pages.project_json(state["name"], files, versions,
                                                           None)}
            folder.mkdir(parents=True, exist_ok=True)
            for filename, body in outputs.items():
                write_if_changed(folder / filename, body)
        else:  # the last version removed: the project is gone
            (self.state / f"{normalized}.json").unlink(missing_ok=True)
            for filename in PAGE_NAMES:
                (folder / filename).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.publish_root()

    def publish_root(self) -> None:
        names = self.project_names()
        page = pages.root_html(names)
        self.simple.mkdir(parents=True, exist_ok=True)
        for filename, body in (("index.html", page), ("index.v1_html", page),
                               ("index.v1_json", pages.root_json(
                                   [(display, None) for _, display in names], None))):
            write_if_changed(self.simple / filename, body)


