"""The diff file both syncs write (bandersnatch's diff-file): the absolute paths of the
files a run created or changed, one per line, for carrying updates to an air-gapped
mirror (`rsync --files-from`). Written atomically."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from cas_index.atomic import write_atomic

from .errors import CasError, DiskFullError, is_disk_full


def write_diff_file(diff_file: str, append_epoch: bool, changed: Iterable[Path],
                    key: str = "diff_file") -> Path:
    """Write the list; a folder gets `mirrored-files` inside. Returns the file written."""
    target = Path(diff_file)
    if target.is_dir():
        target = target / "mirrored-files"
    if append_epoch:
        target = target.with_name(f"{target.name}-{int(time.time())}")
    lines = "".join(f"{p.resolve()}\n" for p in changed)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, lines.encode())
    except OSError as exc:
        if is_disk_full(exc):  # the run stops with exit 4 and its summary, like any write
            raise DiskFullError(f"key '{key}': cannot write {target} (no space left on "
                                "device)") from None
        raise CasError(f"key '{key}': cannot write {target} ({exc.strerror})") from None
    return target
