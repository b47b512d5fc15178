"""What a run tells its user: log lines, progress, and where each goes.

- On a terminal: a rich progress bar (files, bytes, rate, ETA) and plain messages.
- Not on a terminal (cron, systemd, a pipe): timestamped lines, progress every 10 s.
- `--quiet`: nothing on success; warnings and failures still go to stderr, so cron mails
  only when something went wrong.
- Human text goes to stderr; stdout carries the result (summary table, or `--json`).
- Every line passes through `text.safe`: upstream names cannot drive the terminal.
- One condition, one line (`failure_lines`, `LiveFailures`): failures whose error text is
  the same apart from the file or URL are one line with a count, and at most
  FAILURE_LINES lines are printed ("and N more; --json has all").
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from .net import DownloadResult, ProgressReporter, human_bytes, left_by_stop
from .text import plural, safe

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 10.0
FAILURE_LINES = 20  # per-file failures shown in human output; --json has all
MAX_ROWS = 50  # rows of a listing (projects, files to download) in human output; --json has all
SAME_ERROR_NAMES = 3  # files named on the line of failures with one cause
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _cause(item: str, error: str) -> str:
    """The error text with the file or URL it is about taken out: failures with the same
    cause are one condition (upstream unreachable, no space, a TLS failure)."""
    text = error.replace(item, "\0") if item else error
    name = item.rstrip("/").rsplit("/", 1)[-1]
    if name and name != item:
        text = text.replace(name, "\0")
    return _URL.sub("\0", text)


def _short(item: str) -> str:
    """A URL's file name (the line already shows one whole URL), anything else as is."""
    return item.rstrip("/").rsplit("/", 1)[-1] if "://" in item else item


def failure_lines(failures: Iterable[tuple[str, str, str]], *, stopped: str | None = None,
                  limit: int = FAILURE_LINES, indent: str = "  ") -> list[str]:
    """Lines for (where, item, error) failures, as both syncs print them: failures of one
    cause are one line ("where: item: error (and 36 more with the same error: ...)"), at
    most `limit` lines, then "and N more; --json has all". `stopped` is the run-wide
    condition that stopped the run early (no free space): the files it left undownloaded
    are counted on its line, last, instead of repeating it. Every part is made safe."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    left = 0
    for where, item, error in failures:
        if stopped and (left_by_stop(error) or stopped in error):
            left += 1
            continue
        groups.setdefault(_cause(item, error), []).append((where, item, error))
    lines = []
    for members in groups.values():
        where, item, error = members[0]
        line = ": ".join(safe(part) for part in (where, item, error) if part)
        if len(members) > 1:
            others = [safe(_short(m[1]) or m[0]) for m in members[1:SAME_ERROR_NAMES + 1]]
            more = ", ..." if len(members) > SAME_ERROR_NAMES + 1 else ""
            line += (f" (and {len(members) - 1} more with the same error: "
                     f"{', '.join(others)}{more})")
        lines.append(indent + line)
    if len(lines) > limit:
        hidden = sum(len(members) for members in list(groups.values())[limit:])
        last = f"{indent}and {plural(hidden, 'more failure')}; --json has all"
        lines = [*lines[:limit], last]
    if stopped:
        undone = f" ({plural(left, 'file')} not downloaded)" if left else ""
        lines.append(f"{indent}stopped early: {safe(stopped)}{undone}")
    return lines


class LiveFailures:
    """The failed-file lines printed during a run: the first failure of each cause, at most
    FAILURE_LINES of them; `closing_line` counts the rest for the end of the run."""

    def __init__(self, limit: int = FAILURE_LINES, what: str = "failed file"):
        self.limit, self.what = limit, what
        self.causes: set[str] = set()
        self.shown = self.hidden = 0
        self.lock = threading.Lock()

    def line(self, item: str, error: str) -> str | None:
        """The line to print now for this failure, or None (a known cause, or past the cap)."""
        cause = _cause(item, error)
        with self.lock:
            if cause in self.causes or self.shown >= self.limit:
                self.hidden += 1
                return None
            self.causes.add(cause)
            self.shown += 1
        return f"{safe(item)}: {safe(error)}"

    def closing_line(self) -> str | None:
        if not self.hidden:
            return None
        return (f"and {plural(self.hidden, 'more ' + self.what)} (same causes as above or past "
                f"the first {self.limit}); the summary lists them, --json has all")


class Output:
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 interactive: bool | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._failures = LiveFailures(what="failure")

    def _line(self, text: str) -> None:
        text = safe(text)
        if self.interactive:
            print(text, file=self.stream, flush=True)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {text}", file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}")

    def error(self, text: str) -> None:
        self._line(f"error: {text}")

    def failure(self, item: str, error: str) -> None:
        """A platform or project that failed, as it happens: the first of each cause is
        printed (upstream unreachable is one line, not one per platform or project), at
        most FAILURE_LINES; `end_failures` counts the rest."""
        if line := self._failures.line(item, error):
            self.error(line)

    def end_failures(self) -> None:
        """The line counting the failures `failure` did not print, once a phase is over."""
        if line := self._failures.closing_line():
            self.error(line)
        self._failures = LiveFailures(what="failure")

    def progress(self, label: str) -> ProgressReporter:
        if self.quiet:
            return _FailuresOnly(self)
        if self.interactive:
            return _RichProgress(self, label)
        return _LogProgress(self, label)


def _log_result(result: DownloadResult) -> None:
    """-vv: each file fetched (or not), with every attempt counted (the line is built
    only then: this runs for every file)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    tries = f", {plural(result.attempts, 'attempt')}" if result.attempts > 1 else ""
    if result.ok:
        log.debug("fetched %s (%s%s)", result.job.url, human_bytes(result.received), tries)
    else:
        log.debug("not fetched %s: %s%s", result.job.url, result.error, tries)


class _FailuresOnly(ProgressReporter):
    def __init__(self, output: Output):
        self.output = output
        self.failures = LiveFailures()

    def file_done(self, result: DownloadResult) -> None:
        _log_result(result)
        if not result.ok and (line := self.failures.line(result.job.url, str(result.error))):
            self.output.error(line)

    def finish(self) -> None:
        if line := self.failures.closing_line():
            self.output.error(line)


class _LogProgress(_FailuresOnly):
    """Timestamped lines for logs: a start line, one every PROGRESS_INTERVAL, an end line."""

    def __init__(self, output: Output, label: str):
        super().__init__(output)
        self.label = label
        self.lock = threading.Lock()
        self.files = self.done = 0
        self.total = self.received = 0
        self.started = self.last = time.monotonic()

    def start(self, files: int, total_bytes: int) -> None:
        self.files, self.total = files, total_bytes
        self.started = self.last = time.monotonic()
        if files:
            self.output.info(f"{self.label}: downloading {plural(files, 'file')}, "
                             f"{human_bytes(total_bytes)}")

    def grow_total(self, nbytes: int) -> None:
        """Files of unknown size sent more than announced (see pypi/sync.py)."""
        with self.lock:
            self.total += nbytes

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.received += nbytes
            now = time.monotonic()
            if now - self.last < PROGRESS_INTERVAL:
                return
            self.last = now
            done, received = self.done, self.received
        rate = received / max(now - self.started, 1e-6)
        self.output.info(f"{self.label}: {done}/{self.files} files, {human_bytes(received)} of "
                         f"{human_bytes(self.total)}, {human_bytes(rate)}/s")

    def file_done(self, result: DownloadResult) -> None:
        with self.lock:
            self.done += 1
        super().file_done(result)


class _RichProgress(_FailuresOnly):
    def __init__(self, output: Output, label: str):
        super().__init__(output)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=output.stream)
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self.label = label
        self.task = None
        self.done = 0
        self.lock = threading.Lock()

    def start(self, files: int, total_bytes: int) -> None:
        if not files:
            return
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total_bytes or None, done=0, files=files)

    def grow_total(self, nbytes: int) -> None:
        """Files of unknown size sent more than announced (see pypi/sync.py)."""
        if self.task is not None:
            total = self.bar.tasks[self.task].total
            self.bar.update(self.task, total=(total or 0) + nbytes)

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, nbytes)

    def file_done(self, result: DownloadResult) -> None:
        _log_result(result)
        if self.task is not None:
            with self.lock:
                self.done += 1
                self.bar.update(self.task, done=self.done)
        if not result.ok and (line := self.failures.line(result.job.url, str(result.error))):
            from rich.markup import escape

            self.console.print(f"[red]failed[/red] {escape(line)}", markup=True,
                               highlight=False)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.stop()
        if line := self.failures.closing_line():
            self.output.error(line)


def rows_note(total: int, shown: int, what: str) -> str:
    """'... and N more WHAT (--json lists all)' when a listing of `total` rows showed only
    `shown` of them, else ''."""
    return f"... and {total - shown} more {what} (--json lists all)" if total > shown else ""


def plain_table(title: str, columns: list[str], rows: list[list[str]], stream: TextIO) -> None:
    """A summary table in plain text: first two columns left-aligned, the rest right-aligned.
    Cheaper than rich (which costs ~0.1 s to import), for runs that must start fast."""
    rows = [[safe(cell) for cell in row] for row in rows]
    title = safe(title)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(title, file=stream)
    print(line(columns), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for row in rows:
        print(line(row), file=stream)


def print_result(renderer, result, *, as_json: bool, dry_run: bool, quiet: bool) -> int:
    """Print a sync's result the way both syncs do: JSON, the plan of a dry run, the summary,
    or (with --quiet) only the failures; returns the exit status."""
    if as_json:
        print(renderer.as_json(result))
    elif dry_run:
        renderer.render_plan(result, sys.stdout)
    elif not quiet:
        renderer.render_summary(result, sys.stdout)
    elif result.exit_code:
        renderer.render_failures(result, sys.stderr)
    return result.exit_code
