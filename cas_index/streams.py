"""Standard streams that cannot be written: a reader gone (`cas-sync --show | head`,
`cas-index DIR | grep -q`) or a full disk (`cas-index DIR > /dev/full`).

Python ignores SIGPIPE, so a write to a pipe nobody reads any more raises BrokenPipeError
(EPIPE) wherever it happens, usually while the result is printed at the end of a run. That
is not a bug to report nor a problem to describe (the reader chose to stop reading): the
command stops quietly with READER_GONE, as click's own paths (`--help`) do, and as
Python's documentation of SIGPIPE recommends. Both programs' error mapping asks
`reader_went_away` (cas_mirror.console, cas_index.cli). An EPIPE from anything else (a
socket of ours) is not this case: only a standard stream that poll() reports broken.

Either way, what could not be written stays in the stream's buffer, and the interpreter
flushes it at exit, which fails again ("Exception ignored", status 120): `settle_stdout`
at the end of both programs flushes it while they still can say why, or drops it.
"""

from __future__ import annotations

import errno
import os
import sys

READER_GONE = 1  # the exit status: click's for the same case


def reader_went_away(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed because our stdout or stderr has no reader
    any more; if so, those streams now write to /dev/null."""
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE and silence_broken()


def silence_broken() -> bool:
    """Point stdout and stderr at /dev/null where nothing reads them; whether any was."""
    broken = [fd for fd in {_fd(sys.stdout), _fd(sys.stderr)} if fd is not None
              and is_broken(fd)]
    for fd in broken:
        _write_nowhere(fd)
    return bool(broken)


def say(line: str) -> None:
    """`line` on stderr; dropped when stderr is closed (`2>&-`) or nobody reads it: the
    exit status is what is left."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except BrokenPipeError:
        silence_broken()


def settle_stdout() -> None:
    """Flush stdout; when that fails (full disk, reader gone: the run has said so, or
    could not), what it held is dropped, so that the interpreter's own flush at exit
    cannot fail again."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):  # ValueError: closed
        if (fd := _fd(sys.stdout)) is not None:
            _write_nowhere(fd)


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


def _write_nowhere(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):  # replaced, closed or in memory
        return None
