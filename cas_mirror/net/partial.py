"""The `.part` file of a download in progress, and what it remembers across runs.

A partial file is resumed only when the result can be trusted: the Range request carries
`If-Range` with the validator (strong ETag, else Last-Modified) of the response that
produced the partial file, so an upstream file that changed meanwhile comes back whole
(200) instead of being spliced onto old bytes. Without a known validator a partial file
is resumed only when a hash (sha256 or md5) will check the result; else it is restarted.

The validator is kept in an extended attribute of the `.part` itself (`user.cas-mirror.
validator`), not in a sidecar file: it is written on the open file in one call, it goes
where the part goes (rename, kill, crash) and vanishes with it, so no other code that
cleans up `.part` files has to know about it, and a PyPI tree (one folder per file) gets
no extra file per download. On a filesystem without user xattrs (old tmpfs, NFSv3) nothing
is remembered, which costs a restart of unhashed files, never a wrong file.

A new partial file gets its validator once it holds more than RECORD_FROM bytes (before
the piece that takes it past that is written). Most packages are smaller: they go from
the first byte to their final name without the two calls (set, then remove before the
rename), and a kill in between costs at most that much of a restart, of an unhashed file
only: a hashed one is resumed without `If-Range`, and its hash checks the result.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cas_index.atomic import remove_if_present

from ..text import safe
from .types import PART_SUFFIX

log = logging.getLogger(__name__)

VALIDATOR_XATTR = "user.cas-mirror.validator"
RECORD_FROM = 1 << 20  # bytes a new partial file holds before its validator is recorded
_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.E2BIG, errno.ENOSYS}
_XATTRS = hasattr(os, "setxattr")  # Linux; elsewhere nothing is remembered


def part_path(dest: Path) -> Path:
    """Where a download in progress lives: hidden, beside its target, never its final name."""
    return dest.with_name(f".{dest.name}{PART_SUFFIX}")


def part_name(dest: str) -> str:
    """`part_path` of a path given as text (the transfer loop's: no Path made per file)."""
    head, slash, name = dest.rpartition("/")
    return f"{head}{slash}.{name}{PART_SUFFIX}"


def response_validator(headers: Mapping[str, str]) -> str | None:
    """What `If-Range` may carry for this response: its ETag if strong (a weak one never
    matches in If-Range), else its Last-Modified date; None when it has neither."""
    etag = headers.get("etag", "").strip()
    if etag.startswith('"'):
        return etag
    return headers.get("last-modified", "").strip() or None


def same_validator(sent: str, headers: Mapping[str, str]) -> bool:
    """Whether a 206 answer is for the version `sent` in If-Range names (a server that
    ignores If-Range would send the range of the new version, with its new validator)."""
    now = headers.get("etag" if sent.startswith('"') else "last-modified", "").strip()
    return not now or now == sent


def remember_validator(fd: int, validator: str | None) -> None:
    """Record (or, for None, forget) the validator of the response now written to the
    open .part `fd`; a filesystem without user xattrs remembers nothing."""
    if not _XATTRS:
        return
    if validator is None:
        forget_validator(fd)
        return
    try:
        os.setxattr(fd, VALIDATOR_XATTR, validator.encode("utf-8", "surrogateescape"))
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise


def forget_validator(file: str | Path | int) -> None:
    """Remove the validator from a .part (path or open fd), if it has one. Called for every
    published file: a plain try costs less than contextlib.suppress's three calls."""
    if _XATTRS:
        try:  # noqa: SIM105 - suppress() is three Python calls, per published file
            os.removexattr(file, VALIDATOR_XATTR)
        except OSError:
            pass


def read_validator(part: str | Path) -> str | None:
    if not _XATTRS:
        return None
    try:
        return os.getxattr(part, VALIDATOR_XATTR).decode("utf-8", "surrogateescape") or None
    except OSError:  # no attribute, no file, or no xattrs on this filesystem
        return None


def usable_partial(part: str, size: int | None, earlier: str | None,
                   verifiable: bool) -> tuple[int, str | None]:
    """Bytes of an earlier partial download worth resuming (0 when none or useless), and
    the validator of the response that wrote them: the one kept on the file (an earlier
    run), else `earlier` (this run's earlier attempt); None when not resuming.

    A partial file with no validator is kept only when a hash will check the result. The
    attribute is read only when there is a partial file: a fresh download costs one stat."""
    try:
        have = os.stat(part).st_size
    except FileNotFoundError:
        return 0, None
    validator = read_validator(part) or earlier
    blind = validator is None and not verifiable
    if have == 0 or (size is not None and have >= size) or blind:
        if blind:
            log.info("not resuming %s: no validator and no hash to check the result",
                     safe(part))
        remove_if_present(part)
        return 0, None
    return have, validator
