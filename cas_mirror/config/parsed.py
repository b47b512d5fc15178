"""Remembering configuration files already parsed, so that a run whose files have not
changed neither imports PyYAML (about 15 ms of start-up) nor parses them again (PyYAML's
loader is pure Python: the commented reference file etc/cas-mirror.yaml takes about 20 ms).
A nightly no-op sync costs little more than that.

What is remembered is exactly what `yamlfile.read_yaml_mapping` returned for one file:
its top-level (key, value, line, {sub-key: line}), so every later check and every message
(`Config.where`, lines included) is the same as after a fresh parse. An entry is used only
for the same file unchanged: the same path, device, inode, size, modification and change
times (the change time moves on any write or `touch -d`, and cannot be set back), read by
the same program version. It is stored only when

- the file is a regular file (not a pipe such as `-f <(command)`, nor a device);
- the parse succeeded (errors are never remembered: the next run reports them again);
- the result survives a JSON round trip unchanged (plain strings, numbers, booleans,
  lists and mappings with string keys; a date or an `!!omap` is simply parsed every time);
- the file was last written at least `SETTLED` seconds before it was read, so that a
  change made within the same timestamp tick as the read cannot hide behind equal times
  (git's "racily clean" rule).

Entries live in `$CAS_MIRROR_CACHE_DIR` (empty: no cache), else `$XDG_CACHE_HOME/cas-mirror`,
else `~/.cache/cas-mirror`, under `config/`, one small JSON file per configuration file
named by the digest of its absolute path, written to a temporary name and renamed (not
fsynced: an entry lost or torn by a crash is unreadable JSON or another key, so the file
is parsed again). Any problem reading or writing them only costs the parse (logged at
DEBUG).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from .. import __version__

log = logging.getLogger(__name__)

CACHE_ENV = "CAS_MIRROR_CACHE_DIR"
SETTLED = 2.0  # seconds between a file's last change and a read that may be remembered
_FORMAT = 1

Parsed = list[tuple[Any, Any, int, dict]]


def cache_folder() -> Path | None:
    """Where parsed files are remembered, or None when caching is off."""
    if CACHE_ENV in os.environ:
        chosen = os.environ[CACHE_ENV]
        return Path(chosen) / "config" if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else "")
    return Path(base) / "cas-mirror" / "config" if os.path.isabs(base) else None


def identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _entry_path(folder: Path, path: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:32]
    return folder / f"{name}.json"


def _key(path: Path, st: os.stat_result) -> list:
    return [_FORMAT, __version__, os.fsdecode(path), identity(st)]


def recall(path: Path, st: os.stat_result) -> Parsed | None:
    """What parsing `path` (as it is now, `st`) gave last time, or None."""
    folder = cache_folder()
    if folder is None:
        return None
    try:
        entry = json.loads(_entry_path(folder, path).read_bytes())
        if entry["key"] != _key(path, st):
            return None
        return [tuple(item) for item in entry["parsed"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.debug("%s: unusable parsed-configuration cache entry: %s", path, exc)
        return None


def remember(path: Path, st: os.stat_result, parsed: Parsed, read_at: float) -> None:
    """Store the parse of `path` (stat `st` taken before reading it at `read_at`, epoch
    seconds) when the rules of the module's docstring allow."""
    folder = cache_folder()
    if folder is None or not stat.S_ISREG(st.st_mode) \
            or read_at - max(st.st_mtime, st.st_ctime) < SETTLED:
        return  # (a pipe, `-f <(...)`, can say something else under the same identity)
    try:
        text = json.dumps({"key": _key(path, st), "parsed": parsed}, allow_nan=False)
    except (TypeError, ValueError):
        return  # a value JSON cannot carry: parsed every time
    if [tuple(item) for item in json.loads(text)["parsed"]] != parsed:
        return  # (non-string keys, tuples...) would not come back the same
    target = _entry_path(folder, path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        log.debug("%s: cannot remember its parse in %s: %s", path, folder, exc)
        with contextlib.suppress(OSError):
            temporary.unlink()
