"""The `Downloader`: metadata requests (`get`) and parallel file downloads (`download`)
over libcurl, with connection set-up (proxies, TLS, timeouts) decided in one place."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import pycurl

from ..text import plural, safe
from .curl import (
    STALLED,
    CurlSetup,
    Headers,
    describe_request,
    perform_watched,
    stall_message,
)
from .retry import RETRY_STATUSES, RetryPolicy, classify, raise_for_status
from .space import FreeSpaceGuard
from .types import (
    DiskFull,
    DownloadJob,
    DownloadResult,
    Fatal,
    HttpError,
    HttpResponse,
    NetworkSettings,
    ProgressReporter,
    Retryable,
)

log = logging.getLogger(__name__)
PARALLEL_MIN_JOBS = 200  # fewer files are not worth starting processes for
READ_CHUNK = 1 << 20  # bytes libcurl hands a get() at a time (its default is 16 KiB)


class Downloader:
    def __init__(self, settings: NetworkSettings, *, free_space: FreeSpaceGuard | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.policy = RetryPolicy(settings.retries, settings.backoff)
        self.free_space = free_space
        # How waits happen. With the default, download() schedules retries without blocking
        # other transfers; a substitute (tests) is called with each delay instead.
        self._sleep = sleep
        self._local = threading.local()  # each thread's handle and multi for get()
        self._handles: list[pycurl.Curl | pycurl.CurlMulti] = []
        self._handles_lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: str | None = None  # why the run stopped, told once
        self.stop_cause: str | None = None  # the same, short, for each job left undone
        self._folders: set[str] = set()  # folders known to exist
        self.curl = CurlSetup(settings)

    # ------------------------------------------------------------------ connections
    def _new_handle(self) -> pycurl.Curl:
        c = pycurl.Curl()
        with self._handles_lock:
            self._handles.append(c)
        return c

    def _thread_handle(self) -> tuple[pycurl.Curl, pycurl.CurlMulti]:
        local = self._local
        if getattr(local, "handle", None) is None:
            local.handle, local.multi = self._new_handle(), pycurl.CurlMulti()
            with self._handles_lock:
                self._handles.insert(0, local.multi)  # closed before the handles
        return local.handle, local.multi

    def close(self) -> None:
        with self._handles_lock:
            for c in self._handles:
                c.close()
            self._handles.clear()
        self._local = threading.local()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata
    def get(self, url: str, headers: Mapping[str, str] | None = None, *,
            max_bytes: int | None = None, accept_statuses: Iterable[int] = (200,),
            method: str = "GET", body: bytes | None = None) -> HttpResponse:
        """GET (or POST) `url` with retries. Statuses in `accept_statuses` (and 304 when
        conditional headers were sent) are returned; others raise HttpError after retries."""
        accepted = set(accept_statuses)
        last = cause = "no attempt made"
        for attempt in range(1, self.policy.retries + 2):
            try:
                return self._get_once(url, headers, max_bytes, accepted, method, body)
            except Fatal as exc:
                raise HttpError(url, str(exc), exc.status, exc.cause) from None
            except Retryable as exc:
                last, cause = str(exc), exc.cause
                if attempt <= self.policy.retries:
                    delay = self.policy.delay(attempt, exc.retry_after)
                    log.info("retrying %s (attempt %d of %d) after: %s; waiting %.1f s",
                             safe(url), attempt + 1, self.policy.retries + 1, safe(last), delay)
                    self._sleep(delay)
        raise HttpError(url, f"{last} (after {plural(self.policy.retries + 1, 'attempt')})",
                        cause=cause)

    def _get_once(self, url, headers, max_bytes, accepted, method, body) -> HttpResponse:
        c, multi = self._thread_handle()
        c.reset()
        self.curl.prepare(c, url, headers)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", describe_request(method, url, headers))
        c.setopt(pycurl.ACCEPT_ENCODING, "")  # whatever libcurl can decode
        if method == "POST":
            c.setopt(pycurl.POSTFIELDS, body or b"")
        elif method != "GET":
            raise ValueError(f"get() sends GET or POST, not {method}")
        # One buffer, not a list of chunks joined at the end: a 170 MB repodata.json would
        # briefly be held twice (and the chunks' heap is not given back). It is made the
        # size the response announces (when that is within max_bytes and the body is not
        # encoded), so it never grows by copying, and read from libcurl a MiB at a time:
        # get() of that document on loopback, 0.27 - 0.32 s -> 0.16 - 0.17 s.
        c.setopt(pycurl.BUFFERSIZE, READ_CHUNK)
        body = io.BytesIO()
        size = allocated = 0
        too_big = False

        def write(data: bytes) -> int | None:
            nonlocal size, too_big, allocated
            response_headers.last_read = time.monotonic()
            if not size:
                allocated = _presize(body, response_headers, max_bytes)
            size += len(data)
            if max_bytes is not None and size > max_bytes:
                too_big = True
                return -1  # stop the transfer
            body.write(data)
            return None

        response_headers = Headers()
        c.setopt(pycurl.WRITEFUNCTION, write)
        c.setopt(pycurl.HEADERFUNCTION, response_headers.add)
        curl_error = perform_watched(multi, c, response_headers, self.settings.timeout)
        if curl_error is STALLED:
            raise Retryable(stall_message(self.settings.timeout))
        if curl_error is not None:
            if too_big:
                raise Fatal(f"response exceeds the limit of {max_bytes} bytes")
            raise classify(*curl_error)
        status = c.getinfo(pycurl.RESPONSE_CODE)
        values = response_headers.values
        if status == 304:
            log.info("not modified (304), the copy we have is current: %s", safe(url))
        if status == 304 or (status in accepted and status not in RETRY_STATUSES):
            if size < allocated:  # shorter than announced (libcurl took it as complete)
                body.truncate(size)
            return HttpResponse(c.getinfo(pycurl.EFFECTIVE_URL) or url, status, values,
                                b"" if status == 304 else body.getvalue())
        raise_for_status(status, values)
        raise Fatal(f"unexpected HTTP {status}", status)

    # ------------------------------------------------------------------ files
    def download(self, jobs: Sequence[DownloadJob],
                 progress: ProgressReporter | None = None,
                 alongside: Callable[[], None] | None = None) -> list[DownloadResult]:
        """Download every job; returns one result per job, in the order given.

        `alongside` runs in a thread while the transfers do (once the worker processes
        are started: a fork must not copy a running thread) and has returned when this
        does; it handles its own errors.

        A failed file does not stop the others. Not enough free space stops everything:
        `stop_reason` says why (once), and each remaining job fails with "not downloaded:
        run stopped (CAUSE)" naming no other file (cause "run stopped (CAUSE)").
        """
        # (imported here: a run that only asks for metadata never loads the transfer loop)
        from .multi import MultiRun
        from .processes import beside, run_in_processes
        from .transfer import JobState

        progress = progress or ProgressReporter()
        total = sum(job.size or 0 for job in jobs)
        if self.free_space is not None and jobs:
            try:
                self.free_space.check(total)
            except DiskFull as exc:
                self._stop_all(str(exc), exc.cause)
        folders: dict[str, list[int]] = {}  # jobs by folder (os.path on text: no Path per job)
        for index, job in enumerate(jobs):
            folders.setdefault(os.path.dirname(job.dest) or ".", []).append(index)
        self._make_folders(folders)
        groups = self._process_groups(len(jobs), folders)
        if len(groups) > 1:  # (the children make their own job states: none made here)
            return run_in_processes(self, groups, jobs, progress, total, alongside)
        states = [JobState(job, self.policy.retries + 1) for job in jobs]
        progress.start(len(jobs), total)
        try:
            with beside(alongside):
                MultiRun(self, states, progress).run()
        finally:
            progress.finish()
        return [state.result for state in states]

    def _process_groups(self, count: int, folders: dict[str, list[int]]) -> list[list[int]]:
        """How to share the `count` jobs (by index) among processes: by destination folder
        when there are enough folders (two processes creating files in one folder contend
        for its lock), else round robin. One group: do it here."""
        wanted = self.settings.processes
        if wanted is None:
            wanted = (os.cpu_count() or 1) if count >= PARALLEL_MIN_JOBS else 1
        wanted = min(wanted, count)
        if wanted <= 1 or self._stop.is_set():
            return [list(range(count))]
        groups: list[list[int]] = [[] for _ in range(wanted)]
        biggest = max(len(v) for v in folders.values())
        if len(folders) < wanted or biggest * wanted > count * 1.5:
            for index in range(count):
                groups[index % wanted].append(index)
        else:
            for members in sorted(folders.values(), key=len, reverse=True):
                min(groups, key=len).extend(members)
        return [g for g in groups if g]

    def backoff(self, attempt: int) -> None:
        """Wait as the retry policy says before attempt `attempt + 1` (for callers that
        retry on what a body says, such as a stale page)."""
        self._sleep(self.policy.delay(attempt))

    def stop(self, reason: str, cause: str | None = None) -> None:
        """Start no further attempts; running ones finish. `stop_reason` is `reason`;
        remaining jobs fail with "not downloaded: run stopped (CAUSE)", where `cause` is a
        short text naming no file (the PyPI sync's "stop_on_error"); default: `reason`."""
        self._stop_all(reason, cause or reason)

    def _stop_all(self, reason: str, cause: str) -> None:
        if not self._stop.is_set():
            self.stop_reason, self.stop_cause = reason, cause
            self._stop.set()

    def _make_folders(self, folders: Iterable[str]) -> None:
        """Create the destination folders before the transfers start (and before worker
        processes fork, which then find them), many at a time: a PyPI tree has a folder per
        file, and creating one inside the transfer loop would hold up every transfer for as
        long as the filesystem takes."""
        new = [f for f in folders if f not in self._folders]
        if len(new) < 16:
            for folder in new:
                os.makedirs(folder, exist_ok=True)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda f: os.makedirs(f, exist_ok=True), new))
        self._folders.update(new)


def _presize(body: io.BytesIO, headers: Headers, max_bytes: int | None) -> int:
    """Make the empty `body` as long as the response's Content-Length says (when that is
    within `max_bytes` and the body is not encoded: libcurl then hands over exactly that
    many bytes), so that writing it never reallocates; returns the length made (0: none).
    A length beyond `max_bytes` is never allocated; one within it holds no more memory
    than a body of that size, which the caller accepts anyway."""
    values = headers.values
    if body.tell() or max_bytes is None or "content-encoding" in values:
        return 0
    try:
        length = int(values.get("content-length", ""))
    except ValueError:
        return 0
    if not 0 < length <= max_bytes:
        return 0
    body.seek(length - 1)
    body.write(b"\0")
    body.seek(0)
    return length
