"""Platform folders the mirror published once but that are no longer configured (the
`platforms` list was narrowed): one rule, so that what is served and what
`channeldata.json` lists always agree.

- `platforms` set in a configuration file, `keep_removed: false` (the default): the folder
  is removed, its repodata first (a client never sees a platform whose repodata names
  files that are gone), then its packages, then the sync's state for it.
- `keep_removed: true`, or the narrowing came from `--platform` on the command line (a
  one-off run must not delete what the configuration mirrors), or `platforms` is unset:
  the folder is kept, still listed in `channeldata.json`, and one warning per run says so.

"Published once" means the folder has a `repodata.json` and the sync keeps state for it
under `<mirror_dir>/.cas-sync/`, so folders made by hand are never touched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cas_index.layout import SHARD_INDEX, SHARDS_DIR
from cas_index.plain import Frozen

from ..config import Config
from ..net import part_path
from .fetch import ChannelSource, valid_subdirs
from .local import scan_folder
from .state import state_dir

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

REPODATA_FILES = ("repodata.json", "repodata.json.zst", "repodata.json.bz2", SHARD_INDEX)


class Retired(Frozen):
    _fields = ("source", "platform", "folder", "state_folder")
    __slots__ = _fields
    if TYPE_CHECKING:
        source: ChannelSource
        platform: str
        folder: Path
        state_folder: Path


def find_retired(mirror_dir: Path, source: ChannelSource, active: set[str]) -> list[Retired]:
    """The platform folders of `source` we published that are not in `active`."""
    channel_dir = source.local_dir(mirror_dir)
    try:
        names = sorted(p.name for p in channel_dir.iterdir() if p.is_dir())
    except OSError:
        return []
    found = []
    for platform in valid_subdirs(names):
        if platform in active:
            continue
        folder = channel_dir / platform
        state = state_dir(mirror_dir, source.path, platform)
        if (folder / "repodata.json").is_file() and state.is_dir():
            found.append(Retired(source, platform, folder, state))
    return found


def removal_allowed(config: Config) -> tuple[bool, str]:
    """(remove?, why not) for retired platforms under this configuration."""
    if config.keep_removed:
        return False, "keep_removed is true"
    if config.platforms is None:
        return False, "platforms is not set (every platform upstream offers)"
    if config.where("platforms").startswith("command line"):
        return False, "platforms was narrowed on the command line only"
    return True, ""


def _remove_shards(folder: Path) -> int:
    """The shards of a retired platform go with it (its shard index went first)."""
    from cas_index.shards import is_shard_file

    try:
        names = [entry.name for entry in os.scandir(folder) if is_shard_file(entry.name)]
    except FileNotFoundError:
        return 0
    for name in names:
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
    return len(names)


def remove_platform(retired: Retired) -> int:
    """Remove a retired platform folder (repodata first); the number of files deleted.
    Files the sync does not own (made by hand) stay, and so does the folder then."""
    deleted = 0
    for name in REPODATA_FILES:
        try:
            (retired.folder / name).unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    deleted += _remove_shards(retired.folder / SHARDS_DIR)
    local = scan_folder(retired.folder)
    for fn in sorted(local.packages):
        (retired.folder / fn).unlink(missing_ok=True)
        deleted += 1
    for fn in local.partials:
        part_path(retired.folder / fn).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something that is not ours is left in it
        retired.folder.rmdir()
    import shutil

    shutil.rmtree(retired.state_folder, ignore_errors=True)
    return deleted
