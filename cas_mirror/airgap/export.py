"""`cas-sync export DEST`: a bundle of what changed in the mirror since the previous export
(or since `--since STATE`; `--since none`: everything, for a new offline site).

The run lists the tree (`tree.list_locked`), compares it with the snapshot of the base state,
and writes the changed files into a tar stream cut into volumes (`volumes`), hashing each
file as it is copied, so the manifest's sha256 costs no extra read. The bundle is built in
a hidden folder of DEST and renamed to `cas-bundle-<state>/` once its manifest (and
signature) is written; the new snapshot is recorded just before, so the next export starts
where this one ended. Nothing changed: no bundle, no new state.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from cas_index.atomic import TEMP_PREFIX, write_atomic

from ..errors import CasError, DiskFullError, is_disk_full, os_problem
from .manifest import MANIFEST, Manifest, Member, bundle_dirname, is_state_id, new_state_id
from .signing import sign
from .tree import (
    Snapshot,
    diff,
    exports_dir,
    kind_of,
    known_states,
    latest_state,
    list_locked,
    load_snapshot,
    mirror_locks,
    ordered_members,
    save_snapshot,
)
from .volumes import VolumeWriter

log = logging.getLogger(__name__)

MIN_VOLUME_SIZE = 10_000


@dataclass
class ExportResult:
    mirror_dir: Path
    base: str | None
    state: str | None = None  # None: nothing changed, no bundle written
    bundle: Path | None = None
    files: int = 0
    metadata: int = 0
    deletions: int = 0
    bytes: int = 0
    volumes: int = 0
    signed: bool = False

    def as_dict(self) -> dict:
        return {"mirror_dir": str(self.mirror_dir), "base": self.base, "state": self.state,
                "bundle": str(self.bundle) if self.bundle else None, "files": self.files,
                "metadata": self.metadata, "deletions": self.deletions, "bytes": self.bytes,
                "volumes": self.volumes, "signed": self.signed}


def choose_base(mirror_dir: Path, since: str | None) -> Snapshot:
    """The snapshot the bundle starts from: `since` (a state id, or "none" for an empty
    mirror), else the latest export's."""
    if since == "none":
        return Snapshot(None)
    state = since if since is not None else latest_state(mirror_dir)
    if state is None:
        return Snapshot(None)  # the first export carries everything
    where = f"--since {since}" if since is not None else f"the last export ({state})"
    if since is not None and not is_state_id(since):
        raise CasError(f"--since {since!r}: not a state id (such as 20260131T020000Z-"
                       "1a2b3c4d, as `cas-sync import` prints) nor 'none'")
    snapshot = load_snapshot(mirror_dir, state)
    if snapshot is None:
        known = ", ".join(known_states(mirror_dir)[-5:]) or "none"
        raise CasError(f"{where}: no snapshot of state {state} under "
                       f"{exports_dir(mirror_dir)} (latest known: {known}); give --since "
                       "with the offline mirror's state, or --since none for a full bundle")
    return snapshot


def run_export(mirror_dir: Path, pypi_user: str, dest: Path, *, since: str | None = None,
               volume_size: int | None = None, sign_key: Path | None = None) -> ExportResult:
    mirror_dir = mirror_dir.resolve()
    if not mirror_dir.is_dir():
        raise CasError(f"mirror_dir {mirror_dir}: no such folder; nothing to export")
    dest = dest.resolve()
    if dest == mirror_dir or mirror_dir in dest.parents:
        raise CasError(f"DEST {dest} is inside mirror_dir {mirror_dir}; the bundle would be "
                       "exported with the next one: choose a folder outside it")
    if volume_size is not None and volume_size < MIN_VOLUME_SIZE:
        raise CasError(f"--volume-size: {volume_size} bytes is too small (at least 10 KB; "
                       "a size without a unit is bytes: 4GB, 700 MB)")
    with mirror_locks(mirror_dir, pypi_user, create=False) as locks:
        base = choose_base(mirror_dir, since)
        result = ExportResult(mirror_dir, base.state)
        changes = diff(base.files, list_locked(mirror_dir, locks))
        log.info("export from %s: %d files changed, %d deleted, %d unchanged since %s",
                 mirror_dir, len(changes.changed), len(changes.deleted),
                 len(changes.unchanged), base.state or "an empty mirror")
        if not changes.changed and not changes.deleted:
            return result
        state = new_state_id()
        chain = [*base.chain, base.state] if base.state else []
        manifest = Manifest(state, base.state, chain,
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            deletions=changes.deleted)
        final = dest / bundle_dirname(state)
        try:
            dest.mkdir(parents=True, exist_ok=True)
            scratch = dest / f"{TEMP_PREFIX}{final.name}"
            scratch.mkdir()
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"{dest}: {os_problem(exc)}") from None
            raise CasError(f"DEST {dest}: cannot write there: {os_problem(exc)}") from None
        try:
            manifest.members, manifest.volumes = _write_volumes(
                mirror_dir, ordered_members(changes.changed), scratch, volume_size)
            write_atomic(scratch / MANIFEST, manifest.to_json())
            if sign_key is not None:
                sign(scratch / MANIFEST, sign_key)
                result.signed = True
            files = dict(changes.unchanged)
            files.update({m.path: [m.size, m.mtime_ns, m.sha256] for m in manifest.members})
            save_snapshot(mirror_dir, Snapshot(state, chain, files))
            os.rename(scratch, final)
        except BaseException as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise DiskFullError(f"{exc.filename or dest}: {os_problem(exc)}; no bundle "
                                    "was written") from None
            raise
    result.state, result.bundle = state, final
    result.files = sum(1 for m in manifest.members if m.kind == "file")
    result.metadata = len(manifest.members) - result.files
    result.deletions, result.bytes = len(manifest.deletions), manifest.total_bytes
    result.volumes = len(manifest.volumes)
    log.info("exported state %s (base %s) into %s", state, base.state, final)
    return result


class _Hashing:
    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _write_volumes(mirror_dir: Path, paths: list[str], folder: Path,
                   volume_size: int | None) -> tuple[list[Member], list]:
    writer = VolumeWriter(folder, volume_size)
    members: list[Member] = []
    try:
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            root = str(mirror_dir)
            for rel in paths:
                members.append(_add(tar, os.path.join(root, rel), rel))
        writer.close()
    finally:
        writer.abandon()
    return members, writer.volumes


def _add(tar: tarfile.TarFile, path: str, rel: str) -> Member:
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        info = tarfile.TarInfo(rel)
        info.size, info.mtime, info.mode = before.st_size, int(before.st_mtime), 0o644
        reader = _Hashing(handle)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            if exc.filename is not None or exc.errno is not None:
                raise
            raise CasError(f"{path} changed while it was exported ({exc}); run the export "
                           "again") from None
        after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise CasError(f"{path} changed while it was exported; run the export again")
    return Member(rel, before.st_size, reader.digest.hexdigest(), before.st_mtime_ns,
                  kind_of(rel))
