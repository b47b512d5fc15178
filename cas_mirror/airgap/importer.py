"""`cas-sync import BUNDLE`: check a bundle and apply it to the offline mirror.

1. The manifest is read and checked (and its signature, when asked for).
2. The bundle must continue the mirror's state, recorded in
   `<mirror_dir>/.cas-sync/imports/state.json` by the last import: its base is that state,
   or it is refused naming the bundles missing in between. A bundle already imported (its
   state is the mirror's, or one the mirror went through) is a no-op.
3. Every volume is read once: each member is written to `.cas-sync/imports/staging/`
   (hidden, never served) and checked against the manifest's size and sha256, each volume
   against its own. Any mismatch refuses the bundle, naming the volume; nothing is
   published and the staging folder is removed.
4. Only then is anything published: the files (packages, release files, shards) are
   renamed into place, then the metadata, deepest folders first and `repodata.json` last
   in its folder (each a rename: a reader sees the old file or the new), then the
   deletions, then the new state is recorded.

A killed import leaves the state unchanged, so running it again does the whole job again
(staging afresh from the volumes); files already in place are replaced by the same bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from cas_index.atomic import temp_path_for, write_atomic

from ..conda.state import STATE_ROOT
from ..errors import CasError, DiskFullError, is_disk_full, os_problem
from .manifest import MANIFEST, SIGNATURE, BundleRefused, Manifest, bundle_dirname, load_manifest
from .signing import verify
from .tree import deletion_key, kind_of, mirror_locks, publish_key
from .volumes import VolumeReader, check_volumes_present

log = logging.getLogger(__name__)

IMPORTS = "imports"
STATE_FILE = "state.json"
STAGING = "staging"


@dataclass
class ImportResult:
    mirror_dir: Path
    state: str
    base: str | None
    already: bool = False  # the mirror had this bundle already: nothing done
    files: int = 0
    metadata: int = 0
    deletions: int = 0
    bytes: int = 0
    signer: str | None = None

    def as_dict(self) -> dict:
        return {"mirror_dir": str(self.mirror_dir), "state": self.state, "base": self.base,
                "already_imported": self.already, "files": self.files,
                "metadata": self.metadata, "deletions": self.deletions, "bytes": self.bytes,
                "signer": self.signer}


@dataclass
class OfflineState:
    state: str | None = None  # None: nothing imported yet
    chain: tuple[str, ...] = ()


def imports_dir(mirror_dir: Path) -> Path:
    return mirror_dir / STATE_ROOT / IMPORTS


def load_offline_state(mirror_dir: Path) -> OfflineState:
    path = imports_dir(mirror_dir) / STATE_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return OfflineState()
    except (OSError, ValueError) as exc:
        raise CasError(f"{path}: unreadable ({exc}); it records which bundle this mirror "
                       "imported last") from None
    return OfflineState(data.get("state"), tuple(data.get("chain") or ()))


def bundle_folder(bundle: Path) -> Path:
    if bundle.name == MANIFEST and bundle.is_file():
        return bundle.parent
    if not bundle.is_dir():
        raise CasError(f"BUNDLE {bundle}: no such folder (give the cas-bundle-<state> "
                       "folder that cas-sync export wrote, or its manifest.json)")
    return bundle


def run_import(mirror_dir: Path, pypi_user: str, bundle: Path, *,
               allowed_signers: Path | None = None,
               public_key: Path | None = None) -> ImportResult:
    folder = bundle_folder(bundle)
    manifest = load_manifest(folder)
    result = ImportResult(mirror_dir, manifest.state, manifest.base)
    if allowed_signers is not None or public_key is not None:
        result.signer = verify(folder / MANIFEST, folder / SIGNATURE,
                               allowed_signers=allowed_signers, public_key=public_key)
    mirror_dir.mkdir(parents=True, exist_ok=True)
    with mirror_locks(mirror_dir, pypi_user, create=False):
        offline = load_offline_state(mirror_dir)
        if manifest.state == offline.state or manifest.state in offline.chain:
            log.info("%s: state %s already imported", folder, manifest.state)
            result.already = True
            return result
        if manifest.base != offline.state:
            raise BundleRefused(_out_of_order(manifest, offline))
        check_volumes_present(folder, manifest.volumes)
        staging = imports_dir(mirror_dir) / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            _stage(folder, manifest, staging)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise DiskFullError(f"{exc.filename or staging}: {os_problem(exc)} while "
                                    "staging the bundle; nothing was published") from None
            raise
        _publish(manifest, staging, mirror_dir, result)
        write_atomic(imports_dir(mirror_dir) / STATE_FILE, json.dumps({
            "state": manifest.state, "chain": [*manifest.chain, manifest.state],
            "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bundle": str(folder)}, indent=1).encode())
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported state %s into %s", manifest.state, mirror_dir)
    return result


def _names(states: list[str]) -> str:
    names = [bundle_dirname(s) for s in states]
    if len(names) > 5:
        names = [*names[:2], f"... ({len(names) - 4} more)", *names[-2:]]
    return ", ".join(names)


def _out_of_order(manifest: Manifest, offline: OfflineState) -> str:
    this = bundle_dirname(manifest.state)
    if offline.state is None and manifest.chain:
        return (f"{this} continues state {manifest.base}, but this mirror has imported no "
                f"bundle yet: import first {_names(manifest.chain)} (in this order)")
    if offline.state in manifest.chain:
        missing = manifest.chain[manifest.chain.index(offline.state) + 1:]
        return (f"{this} continues state {manifest.base}, but this mirror is at state "
                f"{offline.state}: import first {_names(missing)} (in this order)")
    start = f"state {manifest.base}" if manifest.base else "an empty mirror"
    return (f"{this} starts from {start}, which is not on the way from this mirror's "
            f"state {offline.state}: on the online side, run `cas-sync export --since "
            f"{offline.state} DEST` for a bundle that continues it")


def _stage(folder: Path, manifest: Manifest, staging: Path) -> None:
    """Write each member to `staging/<index>`, checked; refuse the bundle at the first
    mismatch, naming the damaged volume."""
    reader = VolumeReader(folder, manifest.volumes)

    def refuse(problem: str) -> BundleRefused:
        where = reader.current
        reader.drain()  # a damaged volume is named by its own sha256
        return BundleRefused(f"volume {where}: {problem}; nothing was published")

    try:
        tar = tarfile.open(fileobj=reader, mode="r|")  # noqa: SIM115 - the reader is closed
        for index, expected in enumerate(manifest.members):
            info = tar.next()
            if info is None:
                raise refuse(f"the tar stream ends before {expected.path}")
            if info.name != expected.path or not info.isreg() or info.size != expected.size:
                raise refuse(f"member {index + 1} is {info.name!r} ({info.size} bytes), the "
                             f"manifest says {expected.path} ({expected.size} bytes)")
            target = staging / str(index)
            digest = _copy(tar.extractfile(info), target)
            if digest != expected.sha256:
                raise refuse(f"{expected.path} does not match its sha256 in the manifest")
            os.utime(target, ns=(expected.mtime_ns, expected.mtime_ns))
        if tar.next() is not None:
            raise refuse("the tar stream holds more members than the manifest lists")
        while reader.read(1 << 20):
            pass
    except tarfile.TarError as exc:
        raise refuse(f"not a readable tar stream ({exc})") from None
    finally:
        reader.close()


def _copy(source, target: Path) -> str:
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _publish(manifest: Manifest, staging: Path, mirror_dir: Path, result: ImportResult) -> None:
    indexed = list(enumerate(manifest.members))
    files = [(i, m) for i, m in indexed if kind_of(m.path) == "file"]
    metadata = sorted(((i, m) for i, m in indexed if kind_of(m.path) == "metadata"),
                      key=lambda pair: publish_key(pair[1].path))
    for index, member in files + metadata:
        _place(staging / str(index), mirror_dir / member.path)
    for rel in sorted(manifest.deletions, key=deletion_key):
        target = mirror_dir / rel
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            result.deletions += 1
        _prune_empty(target.parent, mirror_dir)
    result.files, result.metadata = len(files), len(metadata)
    result.bytes = manifest.total_bytes


def _place(staged: Path, target: Path) -> None:
    """Rename the checked file into place (a copy and rename when the target is on
    another filesystem)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, tmp = temp_path_for(target)
    try:
        with os.fdopen(fd, "wb") as out, open(staged, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        st = staged.stat()
        os.utime(tmp, ns=(st.st_mtime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove folders the deletions left empty, up to (not including) `root`."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
