"""The diff file both syncs write (bandersnatch's diff-file): the absolute paths of the
files a run created or changed, one per line, for carrying updates to an air-gapped
mirror (`rsync --files-from`). Written atomically.

With `diff_append_epoch` every run gets a list of its own, `NAME-<epoch>`, and never
replaces an earlier one: when that name is taken (two runs in the same second) the list is
`NAME-<epoch>-2`, `-3`, ... The name is claimed with a hard link of the complete temporary
file (atomic, and it fails when the name exists), or with O_EXCL where hard links are not
supported.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Iterable
from pathlib import Path

from cas_index.atomic import temp_path_for, write_atomic

from .errors import CasError, DiskFullError, is_disk_full, os_problem


def write_diff_file(diff_file: str, append_epoch: bool, changed: Iterable[Path | str],
                    key: str = "diff_file") -> Path:
    """Write the list; a folder gets `mirrored-files` inside. Returns the file written."""
    target = Path(diff_file)
    if target.is_dir():
        target = target / "mirrored-files"
    # (a bucket tree names its objects by URL: s3://bucket/key, a str)
    data = "".join(f"{p if isinstance(p, str) else p.resolve()}\n" for p in changed).encode()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not append_epoch:
            write_atomic(target, data)
            return target
        return _write_new(target.with_name(f"{target.name}-{int(time.time())}"), data)
    except OSError as exc:
        message = f"key '{key}': cannot write {target}: {os_problem(exc)}"
        raise (DiskFullError if is_disk_full(exc) else CasError)(message) from None


def _candidates(first: Path) -> Iterable[Path]:
    yield first
    for n in itertools.count(2):
        yield first.with_name(f"{first.name}-{n}")


def _write_new(first: Path, data: bytes) -> Path:
    """Write `data` under the first free name of `_candidates(first)`."""
    fd, tmp = temp_path_for(first)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        for candidate in _candidates(first):
            try:
                os.link(tmp, candidate)
                return candidate
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                return _claim_with_excl(first, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _claim_with_excl(first: Path, tmp: Path) -> Path:
    """Without hard links: claim a free name with O_EXCL, then rename the list over it."""
    for candidate in _candidates(first):
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        os.replace(tmp, candidate)
        return candidate
    raise AssertionError("unreachable")
