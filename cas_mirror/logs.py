"""Where the module loggers of `cas_mirror` and `cas_index` write, and in what form.

Modules log through `logging.getLogger(__name__)` and never configure logging; the command
line decides what reaches the user, with `logging_to_stderr(level)`:

- no flag: warnings and errors; `--quiet`: errors only (cron mails only on failure);
- `-v`: INFO (what a run does: the configuration it read, what it fetched);
- `-vv` or `--debug`: DEBUG (each request, cache hits, retries and why).

Each record is one line on stderr, `2026-01-31 02:00:07 INFO cas_mirror.conda.sync: ...`:
timestamped for logs and cron mail. The formatter escapes control characters in the final
line (`text.safe`), so an upstream name in a message can neither clear a terminal nor forge
a second log line, whichever module logged it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from .text import safe

LOGGERS = ("cas_mirror", "cas_index")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def level_for(verbose: int, quiet: bool = False, debug: bool = False) -> int:
    """The level `-v` (count), `--quiet` and `--debug` ask for."""
    if debug or verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    return logging.ERROR if quiet else logging.WARNING


class SafeFormatter(logging.Formatter):
    """One line per record, control characters escaped (a traceback, when a record carries
    one, follows on its own lines: it is ours, not upstream text)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe(super().formatMessage(record))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (tests capture it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


@contextlib.contextmanager
def logging_to_stderr(level: int) -> Iterator[None]:
    """Route the `cas_mirror` and `cas_index` loggers to stderr at `level` for the duration
    (a command's run); the previous state is restored afterwards, so a command run
    in-process (tests, a wrapper) leaves logging as it found it."""
    handler = _StderrHandler()
    handler.setFormatter(SafeFormatter())
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(level)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, previous in saved:
            logger.removeHandler(handler)
            logger.setLevel(previous)
