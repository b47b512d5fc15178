"""What a run tells its user: log lines, progress, and where each goes.

- On a terminal: a rich progress bar (files, bytes, rate, ETA) and plain messages.
- Not on a terminal (cron, systemd, a pipe): timestamped lines, progress every 10 s.
- `--quiet`: nothing on success; warnings and failures still go to stderr, so cron mails
  only when something went wrong.
- Human text goes to stderr; stdout carries the result (summary table, or `--json`).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from .net import DownloadResult, ProgressReporter, human_bytes

PROGRESS_INTERVAL = 10.0


class Output:
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 interactive: bool | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive

    def _line(self, text: str) -> None:
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

    def progress(self, label: str) -> ProgressReporter:
        if self.quiet:
            return _FailuresOnly(self)
        if self.interactive:
            return _RichProgress(self, label)
        return _LogProgress(self, label)


class _FailuresOnly(ProgressReporter):
    def __init__(self, output: Output):
        self.output = output

    def file_done(self, result: DownloadResult) -> None:
        if not result.ok:
            self.output.error(f"{result.job.url}: {result.error}")


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
            self.output.info(f"{self.label}: downloading {files} files, {human_bytes(total_bytes)}")

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

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, nbytes)

    def file_done(self, result: DownloadResult) -> None:
        if self.task is not None:
            with self.lock:
                self.done += 1
                self.bar.update(self.task, done=self.done)
        if not result.ok:
            self.console.print(f"[red]failed[/red] {result.job.url}: {result.error}",
                               markup=True, highlight=False)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.stop()


def plain_table(title: str, columns: list[str], rows: list[list[str]], stream: TextIO) -> None:
    """A summary table in plain text: first two columns left-aligned, the rest right-aligned.
    Cheaper than rich (which costs ~0.1 s to import), for runs that must start fast."""
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
