"""Private packages in cas-server: the settings of uploads, tokens and private trees, and
the request handlers they add to the application.

`UploadSettings.from_config` resolves the keys (`upload_channels`, `upload_max_size`,
`server_state_dir`, `pypi_private_folder`, `pypi_merge_allowed`, `private_paths`) against
the served root; the `cas-server` command hands them to granian's workers in one
environment variable, and `handlers()` builds, in each worker, what they ask for: the
read guard, the PyPI upload API, conda PUT/DELETE (only when upload channels are
configured: otherwise such requests stay 405) and the merged PyPI view.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError

ENV_UPLOADS = "CAS_SERVER_UPLOADS"
STATE_DIR = ".cas-server"


@dataclass(frozen=True)
class UploadSettings:
    root: str
    pypi_folder: str
    private_folder: str  # the private PyPI index, a folder of the served root
    state_dir: str  # tokens.json and audit.log
    upload_channels: tuple[str, ...]
    max_size: int
    merge_allowed: tuple[str, ...]
    private_paths: tuple[str, ...]
    shards: bool

    @classmethod
    def from_config(cls, config, root: str) -> UploadSettings:
        pypi_folder = str(config.pypi.get("user", "pypi"))
        values = config.values
        mirrored = {c.strip("/") for c in values["channels"] if "://" not in c}
        private_folder = values["pypi_private_folder"] or f"{pypi_folder}-private"
        if private_folder == pypi_folder:
            raise ConfigError(f"{config.where('pypi_private_folder')}: {private_folder!r} is "
                              "the PyPI mirror's folder (pypi.user); the private index needs "
                              "a folder of its own")
        for channel in values["upload_channels"]:
            if channel in mirrored or channel in (pypi_folder, private_folder):
                what = "a mirrored channel" if channel in mirrored else "a PyPI folder"
                raise ConfigError(f"{config.where('upload_channels')}: {channel!r} is {what}; "
                                  "upload channels are internal channels of their own")
        return cls(
            root=root, pypi_folder=pypi_folder,
            private_folder=private_folder,
            state_dir=values["server_state_dir"] or os.path.join(root, STATE_DIR),
            upload_channels=tuple(values["upload_channels"]),
            max_size=values["upload_max_size"],
            merge_allowed=tuple(values["pypi_merge_allowed"]),
            private_paths=tuple(values["private_paths"]),
            shards=bool(values["shards"]),
        )

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> UploadSettings:
        data = json.loads(text)
        for key in ("upload_channels", "merge_allowed", "private_paths"):
            data[key] = tuple(data[key])
        return cls(**data)


def handlers(tree) -> list:
    """The handlers of the uploads feature for a worker serving `tree`."""
    from .private_index import PrivateIndex
    from .private_view import MergedView, ReadGuard
    from .tokens import TokenStore
    from .upload_conda import CondaUploadHandler
    from .upload_pypi import PypiUploadHandler

    text = os.environ.get(ENV_UPLOADS)
    if not text:
        return []
    s = UploadSettings.from_env(text)
    store = TokenStore(s.state_dir)
    state_dir = Path(s.state_dir)
    index = PrivateIndex(Path(s.root) / s.private_folder)
    guard = ReadGuard(s.private_paths, store) if s.private_paths else None
    out: list = [guard] if guard is not None else []
    out.append(PypiUploadHandler(s.pypi_folder, index, store, state_dir, s.max_size))
    if s.upload_channels:
        out.append(CondaUploadHandler(s.root, s.upload_channels, store, state_dir,
                                      s.max_size, s.shards))
    out.append(MergedView(tree, s.pypi_folder, index, s.merge_allowed, guard))
    return out


def remove_leftovers(s: UploadSettings) -> list[Path]:
    """Request bodies a killed server left (in the private index's `.incoming/` and the
    upload channels' `.cas-uploads/`): removed when cas-server starts, before any worker
    can be receiving one. Returns what was removed."""
    import shutil

    from .private_index import INCOMING_DIR
    from .upload_conda import STAGING_DIR

    folders = [Path(s.root) / s.private_folder / INCOMING_DIR]
    folders += [Path(s.root) / channel / STAGING_DIR for channel in s.upload_channels]
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
