"""A command whose reader went away: `cas-sync --show | head`, `cas-index ... | grep -q`.

Python ignores SIGPIPE, so a write to a pipe nobody reads any more raises BrokenPipeError
(EPIPE) wherever it happens, usually while the result is printed at the end of a run. That
is not a bug to report nor a problem to describe (the reader chose to stop reading): the
command stops quietly with READER_GONE, as click's own paths (`--help`) do, and as
Python's documentation of SIGPIPE recommends. Both programs' error mapping asks
`reader_went_away` first (cas_mirror.console, cas_index.cli).

An EPIPE from anything else (a socket of ours) is not this case: only a standard stream
that poll() reports broken counts.
"""

from __future__ import annotations

import errno
import os
import sys

READER_GONE = 1  # the exit status: click's for the same case


def reader_went_away(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed because our stdout or stderr has no reader
    any more; if so, those streams now write to /dev/null (the interpreter flushes them
    at exit, which would fail again and say so)."""
    if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
        return False
    return silence_broken() > 0


def silence_broken() -> int:
    """Point stdout and stderr at /dev/null where nothing reads them; how many were."""
    broken = [fd for fd in {_fd(sys.stdout), _fd(sys.stderr)} if fd is not None
              and is_broken(fd)]
    if broken:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in broken:
            os.dup2(devnull, fd)
        os.close(devnull)
    return len(broken)


def is_broken(fd: int) -> bool:
    """Whether writing to `fd` can only fail: a pipe or socket whose other end is closed
    (poll reports an error or hang-up on it). A file, a terminal or a full pipe still
    being read is not."""
    import select  # (only once a write failed)

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):  # replaced, closed or in memory
        return None
