"""The CurlMulti loop of one download(): up to `workers` transfers from one thread, a
queue of jobs not started and a heap of retries waiting for their time."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import pycurl

from cas_index.atomic import remove_if_present

from ..text import plural, safe
from .curl import WATCH_INTERVAL, describe_request, stall_message, stalled
from .limits import transfers_allowed
from .partial import part_name
from .transfer import Attempt, JobState
from .types import DiskFull, Fatal, ProgressReporter, Retryable, stopped_cause

if TYPE_CHECKING:
    from .downloader import Downloader

log = logging.getLogger(__name__)



class MultiRun:
    """One download(): a CurlMulti running up to `workers` transfers from this thread,
    with a queue of jobs not started and a heap of retries waiting for their time."""

    def __init__(self, downloader: Downloader, states: list[JobState],
                 progress: ProgressReporter, on_turn: Callable[[], None] | None = None):
        self.d = downloader
        self.progress = progress
        self.on_turn = on_turn  # called before each wait (a child sends its batch)
        # Big files first, so that one does not end up alone at the end.
        self.pending = deque(sorted(states, key=lambda s: -(s.job.size or 0)))
        self.waiting: list[tuple[float, int, JobState]] = []  # (ready at, tie, state)
        self.tie = itertools.count()
        self.multi = pycurl.CurlMulti()
        count = transfers_allowed(min(max(downloader.settings.workers, 1), len(states)))
        self.idle = [downloader._new_handle() for _ in range(count)]
        self.running: dict[pycurl.Curl, Attempt] = {}
        # Handles whose last request (without headers) completed: what prepare() returned
        # for it. The next such request on the handle only changes its URL (a reset and
        # a dozen options per file cost more than the transfer of a small one).
        self.plain: dict[pycurl.Curl, tuple[str, str]] = {}
        self.real_waits = downloader._sleep is time.sleep

    def run(self) -> None:
        try:
            while self.pending or self.waiting or self.running:
                self._start_ready()
                if self.running:
                    self._perform()
                    oldest = self._abandon_stalled()
                    if self.running:
                        if self.on_turn is not None:
                            self.on_turn()
                        self.multi.select(self._select_time(oldest))
                elif self.waiting:
                    if self.on_turn is not None:
                        self.on_turn()
                    time.sleep(self._wait_time())
        finally:
            for c, attempt in list(self.running.items()):
                if attempt.file is not None:
                    attempt.file.close()  # a .part to resume: we were interrupted
                self.multi.remove_handle(c)
            self.multi.close()

    def _select_time(self, oldest: float) -> float:
        """How long to wait for network activity: no longer than libcurl asks (it has
        timers of its own, such as a connection in progress that has no socket to watch
        yet), nor than the next retry due, nor than the transfer whose last read is
        `oldest` may still wait for data (the stall watch)."""
        wanted = self.multi.timeout()  # milliseconds; -1: no timer set
        limit = min(self._wait_time(),
                    max(0.0, oldest + self.d.settings.timeout - time.monotonic()))
        return limit if wanted < 0 else min(limit, wanted / 1000)

    def _abandon_stalled(self) -> float:
        """End the transfers that received nothing for `timeout` seconds (libcurl's own
        low-speed check would wait 5 to 7 seconds longer, see curl.py). Returns the oldest
        last read among the transfers left; in the usual turn, where even the oldest has
        not stalled, that one look is all."""
        timeout = self.d.settings.timeout
        now = time.monotonic()
        oldest = min((attempt.headers.last_read for attempt in self.running.values()),
                     default=now)
        if not stalled(oldest, timeout, now):
            return oldest
        for c, attempt in list(self.running.items()):
            if stalled(attempt.headers.since(now), timeout, now):  # (headers count too)
                if attempt.error is None:
                    attempt.error = Retryable(stall_message(timeout))
                self._complete(c, None)
        return min((attempt.headers.last_read for attempt in self.running.values()),
                   default=now)

    def _wait_time(self) -> float:
        if not self.waiting:
            return WATCH_INTERVAL
        return min(WATCH_INTERVAL, max(0.0, self.waiting[0][0] - time.monotonic()))

    def _start_ready(self) -> None:
        while self.idle:
            if self.waiting and self.waiting[0][0] <= time.monotonic():
                state = heapq.heappop(self.waiting)[2]
            elif self.pending:
                state = self.pending.popleft()
            else:
                return
            if self.d._stop.is_set():
                self._fail_stopped(state)
                continue
            c = self.idle.pop()
            try:
                self._start(c, state)
            except (Retryable, Fatal, DiskFull) as exc:
                self.idle.append(c)
                self._failed_attempt(state, exc)

    def _start(self, c: pycurl.Curl, state: JobState) -> None:
        d = self.d
        state.result.attempts += 1
        state.url_attempts += 1
        if d.free_space is not None:
            d.free_space.check(state.job.size or 0)
        attempt = Attempt(state, self.progress)
        headers = attempt.request_headers()
        prepared = self.plain.pop(c, None)
        if headers or prepared is None or not d.curl.retarget(c, state.url, prepared):
            c.reset()
            prepared = d.curl.prepare(c, state.url, headers)
        attempt.prepared = None if headers else prepared
        if log.isEnabledFor(logging.DEBUG):  # built for -vv only: this runs per file
            log.debug("%s", describe_request("GET", state.url, headers))
        c.setopt(pycurl.WRITEFUNCTION, attempt.write)
        c.setopt(pycurl.HEADERFUNCTION, attempt.headers.add)
        self.running[c] = attempt
        self.multi.add_handle(c)

    def _perform(self) -> None:
        while self.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, done, failed = self.multi.info_read()
            for c in done:
                self._complete(c, None)
            for c, code, message in failed:
                self._complete(c, (code, message, c.getinfo(pycurl.OS_ERRNO)))
            if not queued:
                break

    def _complete(self, c: pycurl.Curl, curl_error: tuple[int, str, int] | None) -> None:
        attempt = self.running.pop(c)
        self.multi.remove_handle(c)
        self.idle.append(c)
        state = attempt.state
        try:
            attempt.finish(curl_error, c.getinfo(pycurl.RESPONSE_CODE))
        except (Retryable, Fatal, DiskFull) as exc:
            self._failed_attempt(state, exc)
            return
        if attempt.prepared is not None:
            self.plain[c] = attempt.prepared
        state.result.ok = True
        self.progress.file_done(state.result)

    def _failed_attempt(self, state: JobState, exc: BaseException) -> None:
        if isinstance(exc, DiskFull):
            self.d._stop_all(str(exc), exc.cause)
            self._fail(state, f"not downloaded: {exc}", exc.cause)  # names its own file
            return
        if isinstance(exc, Retryable) and state.url_attempts < state.budget:
            delay = self.d.policy.delay(state.url_attempts, exc.retry_after)
            log.info("retrying %s (attempt %d of %d) after: %s; waiting %.1f s", safe(state.url),
                     state.url_attempts + 1, state.budget, safe(exc), delay)
            if not self.real_waits:
                self.d._sleep(delay)
                delay = 0.0
            heapq.heappush(self.waiting, (time.monotonic() + delay, next(self.tie), state))
            return
        message = str(exc) if isinstance(exc, Fatal) else \
            f"{exc} (after {plural(state.url_attempts, 'attempt')})"
        state.errors.append(message if len(state.urls) == 1 else f"{state.url}: {message}")
        if state.url_index < len(state.urls) - 1 and not self.d._stop.is_set():
            state.url_index += 1
            state.url_attempts = 0
            self.pending.appendleft(state)
            return
        self._fail(state, "; ".join(state.errors), exc.cause)

    def _fail_stopped(self, state: JobState) -> None:
        """A job the run's stop left undone. A child process that only saw the shared stop
        signal does not know the cause; its parent fills it in."""
        cause = stopped_cause(self.d.stop_cause)
        self._fail(state, f"not downloaded: {cause}", cause)

    def _fail(self, state: JobState, error: str, cause: str) -> None:
        state.result.error, state.result.cause = error, cause
        # A failed file leaves nothing behind; only a killed run leaves a .part to resume.
        remove_if_present(part_name(os.fspath(state.job.dest)))
        self.progress.file_done(state.result)


