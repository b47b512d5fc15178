"""How many transfers one process can run at once. Each holds open files (its socket,
the file being written, for a moment a resolver's socket pair), and the process's
open-files limit (`ulimit -n`, often 1024, or less in a container) bounds them all.

Asked for more `workers` than that limit allows, a download first raises its soft limit
toward the hard one (only as far as it needs), then runs as many transfers as fit, and
says so in the log: files are not failed, nor the run ended, by "Too many open files".
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

FILES_PER_TRANSFER = 3
RESERVE = 32  # files the rest of the process may open meanwhile (state, logs, imports)


def transfers_allowed(wanted: int) -> int:
    """`wanted` (>= 1), or fewer when this process cannot hold that many transfers' files
    even after raising its soft limit as far as the hard limit allows."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return wanted
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = _open_files()
    needed = open_now + RESERVE + wanted * FILES_PER_TRANSFER
    if soft != unlimited and needed > soft:
        target = needed if hard == unlimited else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):  # not allowed here: run within the limit
                pass
    if soft == unlimited or needed <= soft:
        return wanted
    fit = max(1, (soft - open_now - RESERVE) // FILES_PER_TRANSFER)
    log.info("the open-files limit (%d, ulimit -n) holds %d transfers at a time in this "
             "process, not the %d asked for", soft, fit, wanted)
    return min(wanted, fit)


def _open_files() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return RESERVE  # (unknown: assume as many again)
