"""What the last run published, kept for the next run's "nothing changed" check, and the
digests that check compares.

Each platform folder keeps `<platform>/.cache/cas-index-state.bin` (the listing token,
the outputs' sizes and mtimes, what the summary reports) and the channel keeps
`<channel>/.cache/cas-index-channel.bin`. They are small marshal files, outside the
sqlite cache, so that a run where nothing changed imports neither sqlite3 nor json (nor
OpenSSL's hashlib: the digests are BLAKE2b), which together were a sixth of such a run
on a 5,000-file channel. A state file is written after the cache is committed; a missing,
damaged or foreign one only means the run checks against the cache instead.
"""

from __future__ import annotations

import marshal

from .atomic import write_atomic

try:  # hashlib's own blake2b, without hashlib importing OpenSSL (~3 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

SUBDIR_STATE = "cas-index-state.bin"  # in <platform>/.cache/
CHANNEL_STATE = "cas-index-channel.bin"  # in <channel>/.cache/
_MARSHAL_VERSION = 4


def hash_bytes(*parts: bytes) -> str:
    """Hex BLAKE2b-256 of the concatenated parts."""
    h = blake2b(digest_size=32)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def digest(value: Any) -> str:
    """Digest of a value made of lists, dicts in a fixed order, str, int, float, bool and
    None: their repr is deterministic (marshal's bytes are not: they depend on refcounts)."""
    return hash_bytes(repr(value).encode("utf-8", "surrogateescape"))


def read_state(path: Path) -> dict | None:
    """The state saved at `path`, or None when there is none usable."""
    try:
        with open(path, "rb") as f:
            value = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return value if type(value) is dict else None


def write_state(path: Path, value: dict) -> None:
    write_atomic(path, marshal.dumps(value, _MARSHAL_VERSION))
