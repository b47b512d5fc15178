"""A large download shared among worker processes (files and hashing cost CPU on our
side): each child runs its own CurlMulti loop and reports over a pipe. And the caller's
work run in a thread beside the transfers (`beside`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .multi import MultiRun
from .space import FreeSpaceGuard
from .transfer import JobState
from .types import (
    DownloadJob,
    DownloadResult,
    NetworkSettings,
    ProgressReporter,
    stopped_cause,
)

if TYPE_CHECKING:
    from .downloader import Downloader


@contextmanager
def beside(work: Callable[[], None] | None) -> Iterator[None]:
    """`work` in a thread for the duration of the block, joined at its end."""
    if work is None:
        yield
        return
    thread = threading.Thread(target=work, name="beside-transfers", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def run_in_processes(downloader: Downloader, groups: list[list[int]],
                     jobs: Sequence[DownloadJob], progress: ProgressReporter,
                     total: int, alongside: Callable[[], None] | None = None,
                     ) -> list[DownloadResult]:
    """Run each group's downloads (`jobs` by index) in a child process; results and
    progress come back over a pipe, and one shared flag stops them all (disk full,
    stop_on_error). `alongside` runs in a thread of ours once the children are started.

    A bare fork (forked.py) is cheap and needs no pickling, but is only safe while we
    have a single thread; otherwise multiprocessing's forkserver starts them. The job
    states live in the children; our results are made once they run (1,800 of them cost
    several milliseconds, which would hold up the first fork)."""
    share = -(-downloader.settings.workers // len(groups))  # the total stays `workers`
    if threading.active_count() == 1:
        from . import forked

        stop_event, wait = forked.StopFlag(), forked.ready

        def start(*args):
            return forked.start(child_main, *args)
    else:
        import multiprocessing
        from multiprocessing.connection import wait

        context = multiprocessing.get_context("forkserver")
        stop_event = context.Event()

        def start(*args):
            reader, writer = context.Pipe(duplex=False)
            child = context.Process(target=child_main, daemon=True, args=(*args, writer))
            child.start()
            writer.close()
            return child, reader
    children = []
    try:
        for group in groups:
            child, reader = start(type(downloader), downloader.settings, share,
                                  downloader.free_space, [(i, jobs[i]) for i in group],
                                  stop_event)
            children.append((child, reader, set(group)))
    except BaseException:
        _end(children)
        raise
    results = [DownloadResult(job, False, 0, 0, None, None) for job in jobs]  # (positional)
    progress.start(len(jobs), total)
    open_readers = {reader: (child, pending) for child, reader, pending in children}
    try:
        with beside(alongside):
            while open_readers:
                for reader in wait(list(open_readers)):
                    child, pending = open_readers[reader]
                    try:
                        message = reader.recv()
                    except EOFError:
                        message = ("end", None)
                    kind = message[0]
                    if kind == "progress":
                        _, received_bytes, finished = message
                        if received_bytes:
                            progress.advance(received_bytes)
                        for index, ok, received, attempts, error, cause in finished:
                            result = results[index]
                            result.ok, result.received, result.attempts, result.error, \
                                result.cause = ok, received, attempts, error, cause
                            pending.discard(index)
                            progress.file_done(result)
                            if downloader._stop.is_set():
                                stop_event.set()  # a caller stopped us from a progress callback
                    elif kind == "stop":
                        downloader._stop_all(message[1], message[2])
                        stop_event.set()
                    elif kind == "crash":
                        raise RuntimeError(f"download worker failed:\n{message[1]}")
                    else:  # "end", or the child is gone
                        del open_readers[reader]
                        child.join(timeout=10)
                        for index in pending:  # jobs a dead child never reported
                            result = results[index]
                            result.error = "not downloaded: the worker process died"
                            result.cause = "the worker process died"
                            progress.file_done(result)
                        reader.close()
    finally:
        _end(children)
        progress.finish()
    if downloader.stop_cause:  # children stopped by the signal did not know why
        unknown, known = stopped_cause(None), stopped_cause(downloader.stop_cause)
        for result in results:
            if result.cause == unknown:
                result.error, result.cause = f"not downloaded: {known}", known
    return results


def _end(children: list) -> None:
    """Stop the children still running (we were interrupted) and wait for them."""
    for child, _, _ in children:
        if child.is_alive():
            child.terminate()
            child.join(timeout=10)


class PipeProgress(ProgressReporter):
    """A child's progress, sent to the parent at the end of a turn of its transfer loop
    (`flush`, before the loop waits): the files finished since the last message and the
    bytes received. At most one message per INTERVAL, so the parent wakes a few dozen
    times per second, not once per turn (each wake-up of the parent, and each message,
    costs both processes CPU that the transfers share); a failed file is sent at once,
    for a caller that stops on it. Bytes alone wait until they reach BYTES_BATCH, so a
    large file does not fill the pipe."""

    BYTES_BATCH = 1 << 20
    INTERVAL = 0.05  # seconds

    def __init__(self, writer, indexes: dict[int, int],
                 clock: Callable[[], float] = time.monotonic):
        self.writer = writer
        self.indexes = indexes  # id(result) -> job index in the parent
        self.pending = 0
        self.finished: list[tuple] = []
        self.failed = False  # among `finished`
        self.clock = clock
        self.sent = float("-inf")  # when the last message went

    def advance(self, nbytes: int) -> None:
        self.pending += nbytes

    def file_done(self, result: DownloadResult) -> None:
        self.finished.append((self.indexes[id(result)], result.ok, result.received,
                              result.attempts, result.error, result.cause))
        self.failed = self.failed or not result.ok

    def flush(self, everything: bool = False) -> None:
        if everything:
            due = bool(self.finished or self.pending)
        elif self.failed:
            due = True
        else:
            due = bool(self.finished or self.pending >= self.BYTES_BATCH) and \
                self.clock() - self.sent >= self.INTERVAL
        if due:
            self.writer.send(("progress", self.pending, self.finished))
            self.pending = 0
            self.finished = []
            self.failed = False
            self.sent = self.clock()


class SharedStop:
    """The parts of threading.Event the run uses, over a multiprocessing Event."""

    def __init__(self, event):
        self.event = event

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()


def child_main(factory: type[Downloader], settings: NetworkSettings, workers: int,
               free_space: FreeSpaceGuard | None, jobs: list[tuple[int, DownloadJob]],
               stop_event, writer) -> None:
    import signal
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent handles Ctrl-C
    try:
        downloader = factory(settings._replace(workers=workers, processes=1),
                             free_space=free_space)
        downloader._stop = SharedStop(stop_event)
        states = [JobState(job, downloader.policy.retries + 1) for _, job in jobs]
        progress = PipeProgress(writer, {id(s.result): i for s, (i, _) in zip(
            states, jobs, strict=True)})
        try:
            MultiRun(downloader, states, progress, on_turn=progress.flush).run()
        finally:
            progress.flush(everything=True)
        if downloader.stop_reason:
            writer.send(("stop", downloader.stop_reason, downloader.stop_cause))
        writer.send(("end", None))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        writer.send(("crash", traceback.format_exc()))
    finally:
        writer.close()
