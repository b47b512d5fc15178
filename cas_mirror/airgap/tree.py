"""What a mirror tree holds, and how it changed since an export.

The tree is every regular file under `mirror_dir` outside hidden names (`.cas-sync/`,
`.cache/`, `.part` and temporary files, locks) and outside Python virtual environments:
exactly what a server publishes. A listing costs one `stat` per file and reads nothing.

After each export a snapshot of the tree is kept under `<mirror_dir>/.cas-sync/exports/`
(`<state>.snapshot.msgpack.zst`: path -> size, mtime_ns, sha256; `latest` names the
newest). The next export compares the listing with it: a file whose size or mtime moved,
or that is new, is carried (and hashed while it is copied into the bundle), the others keep
the digest the snapshot has, so no file is read twice and an unchanged file never.

Which files are metadata: everything that is not a package file, a PyPI release file
(under `web/packages/`) or a CEP-16 shard (content-addressed, under `shards/`). An import
publishes metadata after the files, deepest folders first (platform folders before
`channeldata.json`, project pages before the PyPI project list) and `repodata.json` last
in its folder, as the syncs publish.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from cas_index.atomic import write_atomic
from cas_index.layout import REPODATA, is_package_name
from cas_index.lock import LOCK_FILE as CHANNEL_LOCK
from cas_index.shards import SHARDS_DIR

from ..conda.state import STATE_ROOT

log = logging.getLogger(__name__)

EXPORTS = "exports"
LATEST = "latest"
SNAPSHOT_SUFFIX = ".snapshot.msgpack.zst"


def list_tree(root: Path, channel_locks: list[Path] | None = None
              ) -> dict[str, tuple[int, int]]:
    """relpath -> (size, mtime_ns) of every published file under `root`. The folders
    holding a cas-index lock file (internal channels) are added to `channel_locks`."""
    found: dict[str, tuple[int, int]] = {}
    stack = [(str(root), "")]  # plain strings: this loop runs once per folder of the tree
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        if "pyvenv.cfg" in [e.name for e in entries]:
            log.info("%s: a Python virtual environment; not exported", folder)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                if entry.name == CHANNEL_LOCK and channel_locks is not None:
                    channel_locks.append(Path(folder))
                continue
            rel = prefix + entry.name
            # the type comes from the folder listing: only files cost a stat
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                found[rel] = (st.st_size, st.st_mtime_ns)
            else:
                log.info("%s: not a regular file (a symlink?); not exported", entry.path)
    return found


def list_locked(root: Path, stack: contextlib.ExitStack) -> dict[str, tuple[int, int]]:
    """`list_tree(root)`, with each internal channel (a folder cas-index locks) listed
    again while its lock is held here, so no cas-index run is half-way through it; a
    channel being indexed right now is a LockHeldError (exit 3)."""
    from cas_index.errors import LockHeldError as IndexLockHeld
    from cas_index.lock import ChannelLock

    from ..errors import LockHeldError

    channels: list[Path] = []
    found = list_tree(root, channels)
    for channel in channels:
        try:
            stack.enter_context(ChannelLock(channel, timeout=0))
        except IndexLockHeld:
            raise LockHeldError(f"{channel}: cas-index is indexing this channel; export "
                                "again when it has finished") from None
        prefix = f"{channel.relative_to(root)}/"
        found = {rel: v for rel, v in found.items() if not rel.startswith(prefix)}
        found.update({prefix + rel: v for rel, v in list_tree(channel).items()})
    return found


def kind_of(relpath: str) -> str:
    parts = relpath.split("/")
    name = parts[-1]
    if is_package_name(name) or (len(parts) > 1 and parts[-2] == SHARDS_DIR
                                 and name.endswith(".msgpack.zst")):
        return "file"
    for index in range(len(parts) - 1):
        if parts[index] == "web" and parts[index + 1] == "packages":
            return "file"
    return "metadata"


def publish_key(relpath: str) -> tuple:
    """Sort key of metadata: deepest folders first, `repodata.json` last in its folder."""
    parent, _, name = relpath.rpartition("/")
    return (-relpath.count("/"), parent, name == REPODATA, name)


def deletion_key(relpath: str) -> tuple:
    """Sort key of deletions: metadata first (`repodata.json` first of it), so no
    published document ever names a file already gone; then the files."""
    return (kind_of(relpath) == "file", relpath.rpartition("/")[2] != REPODATA, relpath)


@dataclass
class Snapshot:
    state: str | None  # None: the empty mirror an export without a base starts from
    chain: list[str] = field(default_factory=list)  # earlier states, oldest first
    files: dict[str, list] = field(default_factory=dict)  # relpath -> [size, mtime_ns, sha256]


@dataclass
class Changes:
    changed: list[str]  # new or modified, to carry
    deleted: list[str]  # in the base, gone now
    unchanged: dict[str, list]  # relpath -> the base's entry


def diff(base: dict[str, list], current: dict[str, tuple[int, int]]) -> Changes:
    changed, unchanged = [], {}
    for rel, (size, mtime_ns) in current.items():
        entry = base.get(rel)
        if entry is not None and entry[0] == size and entry[1] == mtime_ns:
            unchanged[rel] = entry
        else:
            changed.append(rel)
    deleted = sorted(set(base) - set(current), key=deletion_key)
    return Changes(sorted(changed), deleted, unchanged)


def exports_dir(mirror_dir: Path) -> Path:
    return mirror_dir / STATE_ROOT / EXPORTS


def latest_state(mirror_dir: Path) -> str | None:
    try:
        return (exports_dir(mirror_dir) / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None


def known_states(mirror_dir: Path) -> list[str]:
    try:
        names = os.listdir(exports_dir(mirror_dir))
    except FileNotFoundError:
        return []
    return sorted(n[:-len(SNAPSHOT_SUFFIX)] for n in names if n.endswith(SNAPSHOT_SUFFIX))


def load_snapshot(mirror_dir: Path, state: str) -> Snapshot | None:
    """The snapshot of `state`, or None when there is none (or it is unreadable)."""
    import zstandard

    path = exports_dir(mirror_dir) / f"{state}{SNAPSHOT_SUFFIX}"
    try:
        packed = path.read_bytes()
        data = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(packed))
        return Snapshot(data["state"], list(data["chain"]), dict(data["files"]))
    except FileNotFoundError:
        return None
    except (OSError, zstandard.ZstdError, msgspec.DecodeError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); treated as absent", path, exc)
        return None


def save_snapshot(mirror_dir: Path, snapshot: Snapshot) -> Path:
    """Record `snapshot` and make it the latest."""
    import zstandard

    folder = exports_dir(mirror_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = msgspec.msgpack.encode({"state": snapshot.state, "chain": snapshot.chain,
                                   "files": snapshot.files})
    path = folder / f"{snapshot.state}{SNAPSHOT_SUFFIX}"
    # level 1: the sha256 digests hardly compress, and a large tree's snapshot is big
    write_atomic(path, zstandard.ZstdCompressor(level=1).compress(data))
    write_atomic(folder / LATEST, f"{snapshot.state}\n".encode())
    return path


def ordered_members(paths: Iterable[str]) -> list[str]:
    """Files first (by path), then metadata in publishing order."""
    paths = list(paths)
    files = sorted(p for p in paths if kind_of(p) == "file")
    metadata = sorted((p for p in paths if kind_of(p) == "metadata"), key=publish_key)
    return files + metadata


def mirror_locks(mirror_dir: Path, pypi_user: str, *, create: bool) -> contextlib.ExitStack:
    """Hold the locks of the conda sync (`<mirror_dir>/.cas-sync/lock`) and, when the PyPI
    tree exists (or `create`), of the PyPI sync, so neither sync runs meanwhile (exit 3
    when one is running)."""
    from ..lock import TreeLock

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(TreeLock(mirror_dir / STATE_ROOT / "lock"))
        pypi_tree = mirror_dir / pypi_user
        if create or pypi_tree.is_dir():
            stack.enter_context(TreeLock(pypi_tree / STATE_ROOT / "lock", what="cas-sync pypi"))
    except BaseException:
        stack.close()
        raise
    return stack
