"""bandersnatch's `keep_index_versions`: prior HTML project pages kept as
`versions/index_<serial>_<UTC time>.html`, at most N of them, with `index.html` a link to
the newest, as a safeguard against an upstream that suddenly publishes empty pages.

The link is a hard link, not bandersnatch's symlink: nginx as `etc/nginx.conf` sets it up
refuses symlinks, and a hard link is replaced atomically like every other page (linked to
a temporary name, renamed over `index.html`). A page whose content did not change adds
no version.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from cas_index.atomic import TEMP_PREFIX, write_atomic

log = logging.getLogger(__name__)

VERSIONS = "versions"
_NAME = re.compile(r"^index_(\d+)_(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\.html$")


def version_name(serial: int | None, now: float) -> str:
    return f"index_{serial or 0}_{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}.html"


def kept_versions(folder: Path) -> list[str]:
    """The version files of a project folder, oldest first (by serial, then time)."""
    try:
        names = [n for n in os.listdir(folder / VERSIONS) if _NAME.match(n)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: (int(_NAME.match(n).group(1)), _NAME.match(n).group(2)))


def publish_versioned(folder: Path, body: bytes, serial: int | None, keep: int,
                      now: float | None = None) -> list[Path]:
    """Write `body` as a new version and point index.html at it; drop versions beyond
    `keep`. Returns the files written (for the diff file); none when unchanged."""
    current = folder / "index.html"
    try:
        if current.read_bytes() == body:
            return []
    except FileNotFoundError:
        pass
    versions = folder / VERSIONS
    versions.mkdir(exist_ok=True)
    target = versions / version_name(serial, time.time() if now is None else now)
    write_atomic(target, body, fsync=False)
    link = folder / f"{TEMP_PREFIX}index.html.link"
    link.unlink(missing_ok=True)
    try:
        os.link(target, link)
        os.replace(link, current)
    finally:
        link.unlink(missing_ok=True)
    names = kept_versions(folder)
    for old in names[:-keep] if keep < len(names) else []:
        (versions / old).unlink(missing_ok=True)
        log.debug("%s: dropped the prior page %s (keep_index_versions: %d)", folder.name, old,
                  keep)
    return [target, current]
