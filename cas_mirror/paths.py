"""What a run may do with the folders of its tree, asked without creating anything: shared
by both syncs' checks of `mirror_dir` (their --dry-run included) and of platform folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def not_writable(folder: Path) -> str | None:
    """Why the sync user cannot create files in the existing folder `folder`, or None."""
    if not folder.is_dir():
        return "a path component is a file, not a folder"
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def bucket_work_dir(location: str, purpose: str, *, kept: bool) -> Path:
    """This machine's folder for work on the tree at `location` (``s3://bucket/prefix``):
    ``cas-mirror/<purpose>/<bucket>/<prefix>`` under $XDG_STATE_HOME (~/.local/state) when
    what it holds is `kept` state (losing it costs a LIST of the bucket, or a --verify),
    else under $XDG_CACHE_HOME (~/.cache)."""
    variable, default = ("XDG_STATE_HOME", (".local", "state")) if kept else \
        ("XDG_CACHE_HOME", (".cache",))
    base = Path(os.environ.get(variable) or Path.home().joinpath(*default))
    return base / "cas-mirror" / purpose / location.split("://", 1)[-1].strip("/")


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (where creating it would start)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
