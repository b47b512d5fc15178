"""The audit log: one JSON line per upload, yank, removal, deletion and token change.

`<state folder>/audit.log`, mode 0600, opened for appending for each line: a line is
written with one `write` on an `O_APPEND` descriptor, so lines of several worker processes
never interleave. A write that takes only part of a line (a disk filling up) is not
completed by a second write, which could land after another process's line: it is
reported, as a failed write is. Fields: `time` (UTC, ISO 8601), `token` (its name; `-`
on the command line), `action`, `path`, `sha256`, `size`, `client` (address, or
`cli:<user>`).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.log"


def record(state_dir: str | os.PathLike, *, token: str, action: str, path: str,
           sha256: str | None = None, size: int | None = None, client: str = "-") -> None:
    """Append one line. A failure to write is logged, not raised: the action is done."""
    line = json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": token,
        "action": action, "path": path, "sha256": sha256, "size": size, "client": client,
    }, sort_keys=False) + "\n"
    folder = Path(state_dir)
    data = line.encode()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        log.error("cannot write the audit log %s: %s", folder / AUDIT_FILE, exc.strerror)
        return
    if written < len(data):
        log.error("cannot write the audit log %s: only %d of the %d bytes of a %s line were "
                  "written (is the disk full?)", folder / AUDIT_FILE, written, len(data), action)


def command_line_client() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:-"
