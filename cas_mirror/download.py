"""The shared downloader: parallel, verified, resumable transfers on libcurl.

One object with a small surface, used by the conda sync and the PyPI sync:

- `Downloader.get(url)`: a metadata request (repodata, JSON pages, XML-RPC) with retries,
  a size bound, and conditional headers; returns the whole body. Safe to call from several
  threads (each keeps its own keep-alive connection).
- `Downloader.download(jobs)`: files in parallel, `workers` transfers at a time over
  keep-alive connections, each streamed to a hidden `.name.part` file beside its target
  while hashing, checked for size and sha256 (md5 when that is all upstream gives), and
  renamed into place only when verified. An interrupted `.part` is resumed with a Range
  request.

Retry policy lives in one place (`RetryPolicy`): connection errors, timeouts, 408/429/5xx
(Retry-After honoured) and checksum mismatches are retried with exponential backoff and
jitter, up to `retries` times; a file waiting for its retry does not hold up the others.

We drive libcurl (pycurl) rather than urllib3: one CurlMulti runs every transfer from a
single thread, so thousands of small packages cost ~0.2 ms of CPU each instead of ~1 ms
with a urllib3 thread pool, where threads mostly contend for the GIL. Proxies are decided
here (the `proxy` setting, else HTTP(S)_PROXY / NO_PROXY as Python reads them) and TLS
uses the system's CA bundle unless `ssl_verify` names another.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import itertools
import os
import random
import re
import shutil
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pycurl

from .errors import CasError

PART_SUFFIX = ".part"
MAX_RETRY_AFTER = 120.0  # never wait longer than this for one Retry-After
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SELECT_TIMEOUT = 1.0  # seconds one wait for network activity may last
PARALLEL_MIN_JOBS = 200  # fewer files are not worth starting processes for
STOPPED = "the run was stopped"  # the reason, for a process that only saw the stop signal


def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"cas-mirror/{version('cas-mirror')}"
    except PackageNotFoundError:
        return "cas-mirror"


@dataclass(frozen=True)
class NetworkSettings:
    workers: int = 8
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 1.0  # first retry waits about this long, doubling each time (max 60 s)
    proxy: str | None = None  # None: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment
    ssl_verify: bool | str = True  # or the path of a CA bundle
    # The longest one request or file attempt may take, however steadily bytes arrive
    # (bandersnatch's global-timeout); None: no limit beyond `timeout` without data.
    total_timeout: float | None = None
    # Processes that share a large download (files and hashing cost CPU on our side):
    # None = one per CPU when there are at least PARALLEL_MIN_JOBS files.
    processes: int | None = None


@dataclass(frozen=True)
class DownloadJob:
    url: str
    dest: Path
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    fallback_urls: tuple[str, ...] = ()  # tried in order when `url` fails


@dataclass
class DownloadResult:
    job: DownloadJob
    ok: bool
    received: int = 0  # bytes received in this run (resumed bytes are not counted again)
    attempts: int = 0
    error: str | None = None


@dataclass
class HttpResponse:
    url: str
    status: int
    headers: Mapping[str, str]
    data: bytes = b""


class HttpError(CasError):
    """A request that failed for good (after retries); the message names the URL."""

    def __init__(self, url: str, message: str, status: int | None = None):
        super().__init__(f"{url}: {message}")
        self.url = url
        self.status = status


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """One attempt failed in a way that retrying cannot fix (404, refused URL...)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class DiskFull(CasError):
    """Not enough free space to go on; raised to stop the whole download."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = min(self.backoff * (2 ** (attempt - 1)), 60.0)
        return base * (0.5 + random.random())  # full jitter around the base


class ProgressReporter:
    """What the downloader tells about its progress; the default says nothing."""

    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, result: DownloadResult) -> None: ...
    def finish(self) -> None: ...


class FreeSpaceGuard:
    """Stops downloads before `folder` would have less than `minimum` bytes free.

    The filesystem is asked again only when the bytes announced since the last look could
    have used up the margin it showed, so thousands of small files cost a few statvfs calls.
    """

    def __init__(self, folder: Path, minimum: int):
        self.folder = Path(folder)
        self.minimum = minimum
        self._margin = -1  # bytes we may still take before looking again
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # for download processes: the lock stays behind
        return {"folder": self.folder, "minimum": self.minimum}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["minimum"])

    def check(self, incoming: int) -> None:
        with self._lock:
            if incoming <= self._margin:
                self._margin -= incoming
                return
            free = shutil.disk_usage(self.folder).free
            if free - incoming < self.minimum:
                raise DiskFull(
                    f"not enough free space in {self.folder}: {human_bytes(free)} free, "
                    f"{human_bytes(incoming)} to download, minimum_free_space is "
                    f"{human_bytes(self.minimum)}"
                )
            # Look again after a tenth of the spare room (others may write here too).
            self._margin = (free - incoming - self.minimum) // 10


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def default_ca_bundle() -> str | None:
    """The CA bundle the system's OpenSSL uses (the wheel's libcurl has no path of its own
    that is sure to exist here); the usual variables win, as they do for curl."""
    import ssl

    for name in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(name) and os.path.isfile(os.environ[name]):
            return os.environ[name]
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if candidate and os.path.isfile(candidate):
            return candidate
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return None


class _Headers:
    """Collects the status and headers of the last response (after redirects); the write
    callback needs the status, and libcurl cannot be asked for it during a transfer."""

    __slots__ = ("status", "values")

    def __init__(self) -> None:
        self.status = 0
        self.values: dict[str, str] = {}

    def __call__(self, line: bytes) -> None:
        text = line.decode("iso-8859-1").strip()
        if text.startswith("HTTP/"):
            self.values = {}
            fields = text.split()
            self.status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        elif ":" in text:
            name, _, value = text.partition(":")
            self.values[name.strip().lower()] = value.strip()


class Downloader:
    def __init__(self, settings: NetworkSettings, *, free_space: FreeSpaceGuard | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.policy = RetryPolicy(settings.retries, settings.backoff)
        self.free_space = free_space
        # How waits happen. With the default, download() schedules retries without blocking
        # other transfers; a substitute (tests) is called with each delay instead.
        self._sleep = sleep
        self._local = threading.local()  # each thread's handle for get()
        self._handles: list[pycurl.Curl] = []
        self._handles_lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self._folders: set[Path] = set()  # folders known to exist
        self._env_proxies: dict[tuple[str, str], str] = {}  # (scheme, host) -> proxy or ""
        self._ca_bundle = (settings.ssl_verify if isinstance(settings.ssl_verify, str)
                           else default_ca_bundle() if settings.ssl_verify else None)
        self._agent = user_agent()

    # ------------------------------------------------------------------ connections
    def _new_handle(self) -> pycurl.Curl:
        c = pycurl.Curl()
        with self._handles_lock:
            self._handles.append(c)
        return c

    def _prepare(self, c: pycurl.Curl, url: str, headers: Mapping[str, str] | None) -> None:
        """Options common to every transfer (set again per request: reset() clears them,
        while the handle keeps its connections)."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise _Fatal(f"refusing a {scheme or 'relative'} URL (only http and https)")
        s = self.settings
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.USERAGENT, self._agent)
        c.setopt(pycurl.CONNECTTIMEOUT_MS, int(s.timeout * 1000))
        # "timeout" means no data for that long: libcurl's low-speed limit of 1 byte/s.
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        c.setopt(pycurl.LOW_SPEED_TIME, max(1, round(s.timeout)))
        # The low-speed window counts whole seconds: a shorter timeout bounds the transfer.
        limits = [t for t in (s.total_timeout, s.timeout if s.timeout < 1 else None) if t]
        if limits:
            c.setopt(pycurl.TIMEOUT_MS, int(min(limits) * 1000))
        c.setopt(pycurl.FOLLOWLOCATION, 1)
        c.setopt(pycurl.MAXREDIRS, 10)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.PROXY, self._proxy_for(url))  # "" also disables libcurl's own
        if s.ssl_verify is False:
            c.setopt(pycurl.SSL_VERIFYPEER, 0)
            c.setopt(pycurl.SSL_VERIFYHOST, 0)
        elif self._ca_bundle:
            c.setopt(pycurl.CAINFO, self._ca_bundle)
        if headers:
            c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])

    def _proxy_for(self, url: str) -> str:
        if self.settings.proxy:
            return self.settings.proxy
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._env_proxies:  # reading the environment costs more than a request
            bypass = urllib.request.proxy_bypass(key[1])
            proxy = None if bypass else urllib.request.getproxies().get(key[0])
            self._env_proxies[key] = proxy or ""
        return self._env_proxies[key]

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
        last = "no attempt made"
        for attempt in range(1, self.policy.retries + 2):
            try:
                return self._get_once(url, headers, max_bytes, accepted, method, body)
            except _Fatal as exc:
                raise HttpError(url, str(exc), exc.status) from None
            except _Retryable as exc:
                last = str(exc)
                if attempt <= self.policy.retries:
                    self._sleep(self.policy.delay(attempt, exc.retry_after))
        raise HttpError(url, f"{last} (after {self.policy.retries + 1} attempts)")

    def _get_once(self, url, headers, max_bytes, accepted, method, body) -> HttpResponse:
        c = getattr(self._local, "handle", None)
        if c is None:
            c = self._local.handle = self._new_handle()
        c.reset()
        self._prepare(c, url, headers)
        c.setopt(pycurl.ACCEPT_ENCODING, "")  # whatever libcurl can decode
        if method == "POST":
            c.setopt(pycurl.POSTFIELDS, body or b"")
        elif method != "GET":
            raise ValueError(f"get() sends GET or POST, not {method}")
        chunks: list[bytes] = []
        size = 0
        too_big = False

        def write(data: bytes) -> int | None:
            nonlocal size, too_big
            size += len(data)
            if max_bytes is not None and size > max_bytes:
                too_big = True
                return -1  # stop the transfer
            chunks.append(data)
            return None

        response_headers = _Headers()
        c.setopt(pycurl.WRITEFUNCTION, write)
        c.setopt(pycurl.HEADERFUNCTION, response_headers)
        try:
            c.perform()
        except pycurl.error as exc:
            if too_big:
                raise _Fatal(f"response exceeds the limit of {max_bytes} bytes") from None
            raise _classify(exc.args[0], exc.args[1]) from None
        status = c.getinfo(pycurl.RESPONSE_CODE)
        values = response_headers.values
        if status == 304 or (status in accepted and status not in RETRY_STATUSES):
            return HttpResponse(c.getinfo(pycurl.EFFECTIVE_URL) or url, status, values,
                                b"" if status == 304 else b"".join(chunks))
        _raise_for_status(status, values)
        raise _Fatal(f"unexpected HTTP {status}", status)

    # ------------------------------------------------------------------ files
    def download(self, jobs: Sequence[DownloadJob],
                 progress: ProgressReporter | None = None) -> list[DownloadResult]:
        """Download every job; returns one result per job, in the order given.

        A failed file does not stop the others. Not enough free space stops everything:
        `stop_reason` says why and the remaining jobs fail with that reason.
        """
        progress = progress or ProgressReporter()
        total = sum(job.size or 0 for job in jobs)
        if self.free_space is not None and jobs:
            try:
                self.free_space.check(total)
            except DiskFull as exc:
                self._stop_all(str(exc))
        states = [_JobState(job, self.policy.retries + 1) for job in jobs]
        self._make_folders({job.dest.parent for job in jobs})
        groups = self._process_groups(states)
        if len(groups) > 1:
            return _run_in_processes(self, groups, states, progress, total)
        progress.start(len(jobs), total)
        try:
            _MultiRun(self, states, progress).run()
        finally:
            progress.finish()
        return [state.result for state in states]

    def _process_groups(self, states: list[_JobState]) -> list[list[_JobState]]:
        """How to share the jobs among processes: by destination folder when there are
        enough folders (two processes creating files in one folder contend for its lock),
        else round robin. One group: do it here."""
        wanted = self.settings.processes
        if wanted is None:
            wanted = (os.cpu_count() or 1) if len(states) >= PARALLEL_MIN_JOBS else 1
        wanted = min(wanted, len(states))
        if wanted <= 1 or self._stop.is_set():
            return [states]
        folders: dict[Path, list[_JobState]] = {}
        for state in states:
            folders.setdefault(state.job.dest.parent, []).append(state)
        groups: list[list[_JobState]] = [[] for _ in range(wanted)]
        biggest = max(len(v) for v in folders.values())
        if len(folders) < wanted or biggest * wanted > len(states) * 1.5:
            for index, state in enumerate(states):
                groups[index % wanted].append(state)
        else:
            for members in sorted(folders.values(), key=len, reverse=True):
                min(groups, key=len).extend(members)
        return [g for g in groups if g]

    def backoff(self, attempt: int) -> None:
        """Wait as the retry policy says before attempt `attempt + 1` (for callers that
        retry on what a body says, such as a stale page)."""
        self._sleep(self.policy.delay(attempt))

    def stop(self, reason: str) -> None:
        """Start no further attempts; running ones finish. Remaining jobs fail with
        `reason` (the PyPI sync's stop_on_error)."""
        self._stop_all(reason)

    def _stop_all(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def _make_folders(self, folders: set[Path]) -> None:
        """Create the destination folders before the transfers start, several at a time:
        a PyPI tree has a folder per file, and creating one inside the transfer loop would
        hold up every transfer for as long as the filesystem takes."""
        new = [f for f in folders if f not in self._folders]
        if len(new) < 16:
            return  # created as needed
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda f: f.mkdir(parents=True, exist_ok=True), new))
        self._folders.update(new)

    def _ensure_folder(self, folder: Path) -> None:
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)


class _JobState:
    """A job's way through its URLs and attempts."""

    __slots__ = ("attempts_allowed", "errors", "job", "result", "url_attempts", "url_index",
                 "urls")

    def __init__(self, job: DownloadJob, attempts_allowed: int):
        self.job = job
        self.result = DownloadResult(job, ok=False)
        self.urls = (job.url, *job.fallback_urls)
        self.url_index = 0
        self.url_attempts = 0
        self.attempts_allowed = attempts_allowed
        self.errors: list[str] = []

    @property
    def url(self) -> str:
        return self.urls[self.url_index]

    @property
    def budget(self) -> int:
        """Attempts allowed at the current URL: only the last URL gets the retries."""
        return self.attempts_allowed if self.url_index == len(self.urls) - 1 else 1


class _Attempt:
    """One transfer of one job on one curl handle: the write callback streams into the
    .part file while hashing; `finish` verifies and renames."""

    __slots__ = ("error", "file", "headers", "job", "md5", "offset", "part", "progress",
                 "result", "sha256", "state", "status_checked", "written")

    def __init__(self, state: _JobState, progress: ProgressReporter):
        self.state = state
        self.job = state.job
        self.result = state.result
        self.progress = progress
        self.part = _part_path(self.job.dest)
        self.offset = _usable_partial(self.part, self.job.size)
        self.written = self.offset
        self.file = None
        self.error: BaseException | None = None
        self.headers = _Headers()
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5() if (self.job.md5 and not self.job.sha256) else None
        self.status_checked = False

    def request_headers(self) -> dict[str, str]:
        return {"Range": f"bytes={self.offset}-"} if self.offset else {}

    def write(self, data: bytes) -> int | None:
        try:
            if not self.status_checked:
                self.status_checked = True
                self._open()
            if self.file is None:
                return None  # an error page: read and dropped, the status tells
            self.written += len(data)
            if self.job.size is not None and self.written > self.job.size:
                raise _Retryable(f"received more than the expected {self.job.size} bytes")
            self.file.write(data)
            self.sha256.update(data)
            if self.md5 is not None:
                self.md5.update(data)
            self.result.received += len(data)
            self.progress.advance(len(data))
            return None
        except OSError as exc:
            self.error = (DiskFull(f"the disk is full writing {self.job.dest}")
                          if exc.errno == errno.ENOSPC
                          else _Fatal(f"cannot write {self.part}: {exc.strerror}"))
        except (_Retryable, _Fatal) as exc:
            self.error = exc
        return -1  # stop this transfer; finish() reports self.error

    def _open(self) -> None:
        status = self.headers.status
        if status == 206 and self.offset:
            match = _RANGE_RE.match(self.headers.values.get("content-range", ""))
            if not match or int(match.group(1)) != self.offset:
                self.offset = self.written = 0
                raise _Retryable("server answered an unexpected range")
            self.file = open(self.part, "r+b", buffering=0)  # noqa: SIM115 - closed in finish
            _hash_prefix(self.file, self.offset, self.sha256, self.md5)
            self.file.seek(self.offset)
            self.file.truncate()
            self.progress.advance(self.offset)  # the bar counts what is on disk
        elif status == 200:
            self.offset = self.written = 0  # a full answer (the server ignored our Range)
            self.file = open(self.part, "wb", buffering=0)  # noqa: SIM115 - closed in finish

    def finish(self, curl_error: tuple[int, str] | None, status: int) -> None:
        """Raise what went wrong, or verify and rename the file into place."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.error is not None:
            if isinstance(self.error, (_Fatal, DiskFull)) or "more than" in str(self.error):
                self.part.unlink(missing_ok=True)
            raise self.error
        if curl_error is not None:
            raise _classify(*curl_error)
        if status == 416 and self.offset:
            self.part.unlink(missing_ok=True)  # our partial is not a prefix of theirs
            raise _Retryable("server refused to resume the partial file (HTTP 416)")
        if status not in (200, 206):
            _raise_for_status(status, self.headers.values)
            raise _Fatal(f"unexpected HTTP {status}", status)
        if not self.status_checked:  # an empty body: the file is empty
            self.part.write_bytes(b"")
        if self.job.size is not None and self.written != self.job.size:
            raise _Retryable(f"truncated: received {self.written} of {self.job.size} bytes")
        if self.job.sha256 and self.sha256.hexdigest() != self.job.sha256.lower():
            self.part.unlink(missing_ok=True)
            raise _Retryable(f"sha256 mismatch: expected {self.job.sha256}, "
                             f"got {self.sha256.hexdigest()}")
        if self.md5 is not None and self.md5.hexdigest() != self.job.md5.lower():
            self.part.unlink(missing_ok=True)
            raise _Retryable(f"md5 mismatch: expected {self.job.md5}, got {self.md5.hexdigest()}")
        os.replace(self.part, self.job.dest)  # open() created it with the umask's permissions


class _MultiRun:
    """One download(): a CurlMulti running up to `workers` transfers from this thread,
    with a queue of jobs not started and a heap of retries waiting for their time."""

    def __init__(self, downloader: Downloader, states: list[_JobState],
                 progress: ProgressReporter):
        self.d = downloader
        self.progress = progress
        # Big files first, so that one does not end up alone at the end.
        self.pending = deque(sorted(states, key=lambda s: -(s.job.size or 0)))
        self.waiting: list[tuple[float, int, _JobState]] = []  # (ready at, tie, state)
        self.tie = itertools.count()
        self.multi = pycurl.CurlMulti()
        count = min(max(downloader.settings.workers, 1), len(states))
        self.idle = [downloader._new_handle() for _ in range(count)]
        self.running: dict[pycurl.Curl, _Attempt] = {}
        self.real_waits = downloader._sleep is time.sleep

    def run(self) -> None:
        try:
            while self.pending or self.waiting or self.running:
                self._start_ready()
                if self.running:
                    self._perform()
                    if self.running:
                        self.multi.select(self._select_time())
                elif self.waiting:
                    time.sleep(self._wait_time())
        finally:
            for c, attempt in list(self.running.items()):
                if attempt.file is not None:
                    attempt.file.close()  # a .part to resume: we were interrupted
                self.multi.remove_handle(c)
            self.multi.close()

    def _select_time(self) -> float:
        """How long to wait for network activity: no longer than libcurl asks (it has
        timers of its own, such as a connection in progress that has no socket to watch
        yet), nor than the next retry due."""
        wanted = self.multi.timeout()  # milliseconds; -1: no timer set
        limit = self._wait_time()
        return limit if wanted < 0 else min(limit, wanted / 1000)

    def _wait_time(self) -> float:
        if not self.waiting:
            return SELECT_TIMEOUT
        return min(SELECT_TIMEOUT, max(0.0, self.waiting[0][0] - time.monotonic()))

    def _start_ready(self) -> None:
        while self.idle:
            if self.waiting and self.waiting[0][0] <= time.monotonic():
                state = heapq.heappop(self.waiting)[2]
            elif self.pending:
                state = self.pending.popleft()
            else:
                return
            if self.d._stop.is_set():
                self._fail(state, f"not downloaded: {self.d.stop_reason or STOPPED}")
                continue
            c = self.idle.pop()
            try:
                self._start(c, state)
            except (_Retryable, _Fatal, DiskFull) as exc:
                self.idle.append(c)
                self._failed_attempt(state, exc)

    def _start(self, c: pycurl.Curl, state: _JobState) -> None:
        d = self.d
        state.result.attempts += 1
        state.url_attempts += 1
        if d.free_space is not None:
            d.free_space.check(state.job.size or 0)
        d._ensure_folder(state.job.dest.parent)
        attempt = _Attempt(state, self.progress)
        c.reset()
        d._prepare(c, state.url, attempt.request_headers())
        c.setopt(pycurl.WRITEFUNCTION, attempt.write)
        c.setopt(pycurl.HEADERFUNCTION, attempt.headers)
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
                self._complete(c, (code, message))
            if not queued:
                break

    def _complete(self, c: pycurl.Curl, curl_error: tuple[int, str] | None) -> None:
        attempt = self.running.pop(c)
        self.multi.remove_handle(c)
        self.idle.append(c)
        state = attempt.state
        try:
            attempt.finish(curl_error, c.getinfo(pycurl.RESPONSE_CODE))
        except (_Retryable, _Fatal, DiskFull) as exc:
            self._failed_attempt(state, exc)
            return
        state.result.ok = True
        self.progress.file_done(state.result)

    def _failed_attempt(self, state: _JobState, exc: BaseException) -> None:
        if isinstance(exc, DiskFull):
            self.d._stop_all(str(exc))
            self._fail(state, f"not downloaded: {exc}")
            return
        if isinstance(exc, _Retryable) and state.url_attempts < state.budget:
            delay = self.d.policy.delay(state.url_attempts, exc.retry_after)
            if not self.real_waits:
                self.d._sleep(delay)
                delay = 0.0
            heapq.heappush(self.waiting, (time.monotonic() + delay, next(self.tie), state))
            return
        message = str(exc) if isinstance(exc, _Fatal) else \
            f"{exc} (after {state.url_attempts} attempts)"
        state.errors.append(message if len(state.urls) == 1 else f"{state.url}: {message}")
        if state.url_index < len(state.urls) - 1 and not self.d._stop.is_set():
            state.url_index += 1
            state.url_attempts = 0
            self.pending.appendleft(state)
            return
        self._fail(state, "; ".join(state.errors))

    def _fail(self, state: _JobState, error: str) -> None:
        state.result.error = error
        # A failed file leaves nothing behind; only a killed run leaves a .part to resume.
        _part_path(state.job.dest).unlink(missing_ok=True)
        self.progress.file_done(state.result)


def _part_path(dest: Path) -> Path:
    """Where a download in progress lives: hidden, beside its target, never its final name."""
    return dest.with_name(f".{dest.name}{PART_SUFFIX}")


def _usable_partial(part: Path, size: int | None) -> int:
    """Bytes of an earlier partial download worth resuming (0 when none or useless)."""
    try:
        have = part.stat().st_size
    except FileNotFoundError:
        return 0
    if have == 0 or (size is not None and have >= size):
        part.unlink(missing_ok=True)
        return 0
    return have


def _hash_prefix(handle, length: int, *hashes) -> None:
    handle.seek(0)
    remaining = length
    while remaining:
        chunk = handle.read(min(1 << 20, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        for h in hashes:
            if h is not None:
                h.update(chunk)


_RANGE_RE = re.compile(r"bytes\s+(\d+)-")


def _raise_for_status(status: int, headers: Mapping[str, str]) -> None:
    if status in RETRY_STATUSES:
        raise _Retryable(f"HTTP {status}", _retry_after(headers))
    raise _Fatal(f"HTTP {status}", status)


_TLS_ERRORS = frozenset(filter(None, (
    getattr(pycurl, name, None) for name in (
        "E_SSL_CACERT", "E_PEER_FAILED_VERIFICATION", "E_SSL_CACERT_BADFILE",
        "E_SSL_CERTPROBLEM", "E_SSL_ISSUER_ERROR", "E_SSL_PINNEDPUBKEYNOTMATCH"))))
_FATAL_ERRORS = {
    pycurl.E_UNSUPPORTED_PROTOCOL: "refusing the URL (only http and https)",
    pycurl.E_TOO_MANY_REDIRECTS: "too many redirects",
    pycurl.E_URL_MALFORMAT: "malformed URL",
}
_MESSAGES = {
    pycurl.E_OPERATION_TIMEDOUT: "timed out",
    pycurl.E_COULDNT_CONNECT: "cannot connect",
    pycurl.E_COULDNT_RESOLVE_HOST: "cannot resolve the host name",
    pycurl.E_COULDNT_RESOLVE_PROXY: "cannot resolve the proxy's name",
    pycurl.E_PARTIAL_FILE: "truncated: the connection closed early",
    pycurl.E_GOT_NOTHING: "connection broken (empty reply)",
    pycurl.E_SEND_ERROR: "connection broken (send failed)",
    pycurl.E_RECV_ERROR: "connection broken (receive failed)",
}


def _classify(code: int, message: str) -> Exception:
    """A libcurl error as _Retryable or _Fatal, with a short message for people."""
    if code in _TLS_ERRORS:
        return _Fatal(f"TLS verification failed ({message}); set ssl_verify to a CA bundle, "
                      "or false to skip verification")
    if code in _FATAL_ERRORS:
        return _Fatal(_FATAL_ERRORS[code])
    return _Retryable(_MESSAGES.get(code, message or f"libcurl error {code}"))


# ----------------------------------------------------------------------------- processes


def _run_in_processes(downloader: Downloader, groups: list[list[_JobState]],
                      states: list[_JobState], progress: ProgressReporter,
                      total: int) -> list[DownloadResult]:
    """Run each group's downloads in a child process; results and progress come back over
    a pipe, and one shared event stops them all (disk full, stop_on_error)."""
    import multiprocessing
    from multiprocessing.connection import wait

    # fork is cheap and needs no pickling, but only safe while we have a single thread.
    method = "fork" if threading.active_count() == 1 else "forkserver"
    context = multiprocessing.get_context(method)
    stop_event = context.Event()
    index_of = {id(state): i for i, state in enumerate(states)}
    share = -(-downloader.settings.workers // len(groups))  # the total stays `workers`
    children = []
    for group in groups:
        reader, writer = context.Pipe(duplex=False)
        jobs = [(index_of[id(state)], state.job) for state in group]
        child = context.Process(target=_child_main, daemon=True, args=(
            downloader.settings, share, downloader.free_space, jobs, writer, stop_event))
        child.start()
        writer.close()
        children.append((child, reader, {i for i, _ in jobs}))
    progress.start(len(states), total)
    open_readers = {reader: (child, pending) for child, reader, pending in children}
    try:
        while open_readers:
            for reader in wait(list(open_readers)):
                child, pending = open_readers[reader]
                try:
                    message = reader.recv()
                except EOFError:
                    message = ("end", None)
                kind = message[0]
                if kind == "advance":
                    progress.advance(message[1])
                elif kind == "done":
                    _, index, ok, received, attempts, error = message
                    result = states[index].result
                    result.ok, result.received, result.attempts, result.error = \
                        ok, received, attempts, error
                    pending.discard(index)
                    progress.file_done(result)
                    if downloader._stop.is_set():
                        stop_event.set()  # a caller stopped us from a progress callback
                elif kind == "stop":
                    downloader._stop_all(message[1])
                    stop_event.set()
                elif kind == "crash":
                    raise RuntimeError(f"download worker failed:\n{message[1]}")
                else:  # "end", or the child is gone
                    del open_readers[reader]
                    child.join(timeout=10)
                    for index in pending:  # jobs a dead child never reported
                        states[index].result.error = "not downloaded: the worker process died"
                        progress.file_done(states[index].result)
                    reader.close()
    finally:
        for child, _, _ in children:
            if child.is_alive():
                child.terminate()
                child.join(timeout=10)
        progress.finish()
    if downloader.stop_reason:  # children stopped by the signal did not know why
        for state in states:
            if state.result.error == f"not downloaded: {STOPPED}":
                state.result.error = f"not downloaded: {downloader.stop_reason}"
    return [state.result for state in states]


class _PipeProgress(ProgressReporter):
    """A child's progress, sent to the parent (bytes batched, so the pipe stays quiet)."""

    def __init__(self, writer, indexes: dict[int, int]):
        self.writer = writer
        self.indexes = indexes  # id(result) -> job index in the parent
        self.pending = 0

    def advance(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= 1 << 20:
            self.writer.send(("advance", self.pending))
            self.pending = 0

    def file_done(self, result: DownloadResult) -> None:
        if self.pending:
            self.writer.send(("advance", self.pending))
            self.pending = 0
        self.writer.send(("done", self.indexes[id(result)], result.ok, result.received,
                          result.attempts, result.error))


class _SharedStop:
    """The parts of threading.Event the run uses, over a multiprocessing Event."""

    def __init__(self, event):
        self.event = event

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()


def _child_main(settings: NetworkSettings, workers: int, free_space: FreeSpaceGuard | None,
                jobs: list[tuple[int, DownloadJob]], writer, stop_event) -> None:
    import signal
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent handles Ctrl-C
    try:
        from dataclasses import replace

        downloader = Downloader(replace(settings, workers=workers, processes=1),
                                free_space=free_space)
        downloader._stop = _SharedStop(stop_event)
        states = [_JobState(job, downloader.policy.retries + 1) for _, job in jobs]
        progress = _PipeProgress(writer, {id(s.result): i for s, (i, _) in zip(
            states, jobs, strict=True)})
        _MultiRun(downloader, states, progress).run()
        if downloader.stop_reason:
            writer.send(("stop", downloader.stop_reason))
        writer.send(("end", None))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        writer.send(("crash", traceback.format_exc()))
    finally:
        writer.close()
