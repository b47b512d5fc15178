"""The shared downloader: parallel, verified, resumable transfers over pooled connections.

One object with a small surface, used by the conda sync and the PyPI sync:

- `Downloader.get(url)`: a metadata request (repodata, JSON pages) with retries, a size
  bound, and conditional headers; returns the whole body.
- `Downloader.download(jobs)`: files in parallel (`workers` threads over keep-alive
  pools), each streamed to a hidden `.part` file beside its target while hashing, checked
  for size and sha256 (md5 when that is all upstream gives), and renamed into place only
  when verified. An interrupted `.part` is resumed with a Range request.

Retry policy lives in one place (`RetryPolicy`): connection errors, timeouts, 408/429/5xx
(Retry-After honoured) and checksum mismatches are retried with exponential backoff and
jitter, up to `retries` times. We use urllib3 directly rather than requests: on loopback
it costs a third of requests' per-file overhead, which decides cold-sync time for
thousands of small packages, and our retry loop needs nothing requests adds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import CasError

CHUNK = 256 * 1024
PART_SUFFIX = ".part"
MAX_RETRY_AFTER = 120.0  # never sleep longer than this for one Retry-After
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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
    # (bandersnatch's global-timeout); None: no limit beyond `timeout` between reads.
    total_timeout: float | None = None


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
    """One attempt failed in a way that retrying cannot fix (404, refused file...)."""

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


# urllib3 only follows redirects for us; every other retry decision is RetryPolicy's.
_FOLLOW_REDIRECTS_ONLY = urllib3.Retry(
    total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_redirect=True,
    raise_on_status=False, respect_retry_after_header=False,
)


class Downloader:
    def __init__(self, settings: NetworkSettings, *, free_space: FreeSpaceGuard | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.policy = RetryPolicy(settings.retries, settings.backoff)
        self.free_space = free_space
        self._sleep = sleep
        self._pools: dict[str | None, urllib3.PoolManager] = {}
        self._pools_lock = threading.Lock()
        self._stop = threading.Event()
        self._folders: set[Path] = set()  # folders known to exist
        self._env_proxies: dict[tuple[str, str], str | None] = {}  # (scheme, host) -> proxy
        self.stop_reason: str | None = None
        self._headers = {"User-Agent": user_agent(), "Accept-Encoding": "gzip, deflate"}
        if settings.ssl_verify is False:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # ------------------------------------------------------------------ connections
    def _pool_for(self, url: str) -> urllib3.PoolManager:
        proxy = self._proxy_for(url)
        with self._pools_lock:
            pool = self._pools.get(proxy)
            if pool is None:
                kwargs = {
                    "num_pools": 16,
                    "maxsize": max(self.settings.workers, 1),
                    "block": False,
                    "retries": False,
                    "timeout": urllib3.Timeout(connect=self.settings.timeout,
                                            read=self.settings.timeout),
                    "headers": self._headers,
                }
                verify = self.settings.ssl_verify
                if verify is False:
                    kwargs["cert_reqs"] = "CERT_NONE"
                else:
                    kwargs["cert_reqs"] = "CERT_REQUIRED"
                    if isinstance(verify, str):
                        kwargs["ca_certs"] = verify
                if proxy is None:
                    pool = urllib3.PoolManager(**kwargs)
                elif proxy.startswith("socks"):
                    from urllib3.contrib.socks import SOCKSProxyManager

                    pool = SOCKSProxyManager(proxy, **kwargs)
                else:
                    pool = urllib3.ProxyManager(proxy, **kwargs)
                self._pools[proxy] = pool
            return pool

    def _proxy_for(self, url: str) -> str | None:
        if self.settings.proxy:
            return self.settings.proxy
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._env_proxies:  # reading the environment costs more than a request
            bypass = urllib.request.proxy_bypass(key[1])
            self._env_proxies[key] = None if bypass else urllib.request.getproxies().get(key[0])
        return self._env_proxies[key]

    def close(self) -> None:
        with self._pools_lock:
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self, url: str, headers: Mapping[str, str] | None = None, method: str = "GET",
              body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        """One request; raises _Retryable/_Fatal for failures of the transport or status."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise _Fatal(f"refusing a {scheme or 'relative'} URL (only http and https)")
        try:
            return self._pool_for(url).request(
                method, url, headers={**self._headers, **(headers or {})}, body=body,
                preload_content=False, redirect=True, retries=_FOLLOW_REDIRECTS_ONLY,
            )
        except urllib3.exceptions.SSLError as exc:
            raise _Fatal(f"TLS verification failed ({_reason(exc)}); set ssl_verify to a CA "
                         "bundle, or false to skip verification") from None
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.SSLError):
                raise _Fatal(f"TLS verification failed ({_reason(exc.reason)}); set ssl_verify "
                             "to a CA bundle, or false to skip verification") from None
            if isinstance(exc.reason, urllib3.exceptions.ResponseError):
                raise _Fatal("too many redirects") from None
            raise _Retryable(_reason(exc.reason or exc)) from None
        except (Urllib3Error, OSError) as exc:
            raise _Retryable(_reason(exc)) from None

    def _deadline(self) -> float | None:
        total = self.settings.total_timeout
        return None if total is None else time.monotonic() + total

    # ------------------------------------------------------------------ metadata
    def get(self, url: str, headers: Mapping[str, str] | None = None, *,
            max_bytes: int | None = None, accept_statuses: Iterable[int] = (200,),
            method: str = "GET", body: bytes | None = None) -> HttpResponse:
        """GET `url` with retries. Statuses in `accept_statuses` (and 304 when conditional
        headers were sent) are returned; others raise HttpError after retries."""
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
        response = self._open(url, headers, method, body)
        try:
            status = response.status
            response_headers = {k.lower(): v for k, v in response.headers.items()}
            if status == 304 or (status in accepted and status not in RETRY_STATUSES):
                data = b"" if status == 304 else _read_bounded(response, url, max_bytes,
                                                              self._deadline())
                return HttpResponse(response.geturl() or url, status, response_headers, data)
            _raise_for_status(status, response_headers)
            raise _Fatal(f"unexpected HTTP {status}", status)
        except (Urllib3Error, OSError) as exc:
            raise _Retryable(_reason(exc)) from None
        finally:
            _release(response)

    # ------------------------------------------------------------------ files
    def download(self, jobs: Sequence[DownloadJob],
                 progress: ProgressReporter | None = None) -> list[DownloadResult]:
        """Download every job; returns one result per job, in the order given.

        A failed file does not stop the others. Not enough free space stops everything:
        `stop_reason` says why and the remaining jobs fail with that reason.
        """
        progress = progress or ProgressReporter()
        order = sorted(range(len(jobs)), key=lambda i: -(jobs[i].size or 0))  # big ones first
        total = sum(job.size or 0 for job in jobs)
        if self.free_space is not None and jobs:
            try:
                self.free_space.check(total)
            except DiskFull as exc:
                self._stop_all(str(exc))
        results: list[DownloadResult | None] = [None] * len(jobs)
        cursor = iter(order)
        cursor_lock = threading.Lock()

        def worker() -> None:
            # Each thread takes the next job itself: no future and no hand-off to a waiting
            # thread per file, which on thousands of small files costs more than the HTTP.
            while True:
                with cursor_lock:
                    index = next(cursor, None)
                if index is None:
                    return
                result = self._download_one(jobs[index], progress)
                results[index] = result
                progress.file_done(result)

        progress.start(len(jobs), total)
        threads = [threading.Thread(target=worker, name=f"download-{n}", daemon=True)
                   for n in range(min(self.settings.workers, len(jobs)))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            progress.finish()
        return [r for r in results if r is not None]

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

    def _download_one(self, job: DownloadJob, progress: ProgressReporter) -> DownloadResult:
        result = DownloadResult(job, ok=False)
        urls = (job.url, *job.fallback_urls)
        errors = []
        for index, url in enumerate(urls):
            final = index == len(urls) - 1
            error = self._download_from(url, job, result, progress, retries=final)
            if error is None:
                result.ok = True
                return result
            errors.append(error if len(urls) == 1 else f"{url}: {error}")
            if self._stop.is_set():
                break
        result.error = "; ".join(errors)
        # A failed file leaves nothing behind; only a killed run leaves a .part to resume.
        _part_path(job.dest).unlink(missing_ok=True)
        return result

    def _download_from(self, url: str, job: DownloadJob, result: DownloadResult,
                       progress: ProgressReporter, retries: bool) -> str | None:
        """Attempts at one URL; None on success, else the last error."""
        budget = self.policy.retries + 1 if retries else 1
        last = "not attempted"
        for attempt in range(1, budget + 1):
            if self._stop.is_set():
                return f"not downloaded: {self.stop_reason}"
            result.attempts += 1
            try:
                self._attempt(url, job, result, progress)
                return None
            except _Fatal as exc:
                return str(exc)
            except _Retryable as exc:
                last = str(exc)
                if attempt < budget:
                    self._sleep(self.policy.delay(attempt, exc.retry_after))
            except DiskFull as exc:
                self._stop_all(str(exc))
                return f"not downloaded: {exc}"
        return f"{last} (after {budget} attempts)"

    def _attempt(self, url: str, job: DownloadJob, result: DownloadResult,
                 progress: ProgressReporter) -> None:
        dest = job.dest
        part = _part_path(dest)
        if dest.parent not in self._folders:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(dest.parent)
        if self.free_space is not None:
            self.free_space.check(job.size or 0)
        offset = _usable_partial(part, job.size)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        deadline = self._deadline()
        response = self._open(url, headers)
        try:
            status = response.status
            if status == 416 and offset:
                part.unlink(missing_ok=True)  # our partial is not a prefix of theirs
                raise _Retryable("server refused to resume the partial file (HTTP 416)")
            if status not in (200, 206):
                _raise_for_status(status, {k.lower(): v for k, v in response.headers.items()})
                raise _Fatal(f"unexpected HTTP {status}", status)
            if status == 206 and not _content_range_starts_at(response.headers, offset):
                offset = 0  # a range we did not ask for: ignore it, start over
                raise _Retryable("server answered an unexpected range")
            if status == 200:
                offset = 0
            sha256 = hashlib.sha256()
            md5 = hashlib.md5() if (job.md5 and not job.sha256) else None
            if offset:
                progress.advance(offset)  # the bar counts what is on disk
            mode = "r+b" if offset else "wb"
            with open(part, mode, buffering=0) as handle:  # we write big chunks ourselves
                if offset:
                    _hash_prefix(handle, offset, sha256, md5)
                    handle.seek(offset)
                    handle.truncate()
                written = offset
                while True:
                    chunk = response.read1(CHUNK, decode_content=True)
                    if not chunk:
                        break
                    written += len(chunk)
                    if deadline is not None and time.monotonic() > deadline:
                        raise _Retryable(_too_long(self.settings.total_timeout))
                    if job.size is not None and written > job.size:
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise _Retryable(f"received more than the expected {job.size} bytes")
                    handle.write(chunk)
                    sha256.update(chunk)
                    if md5:
                        md5.update(chunk)
                    result.received += len(chunk)
                    progress.advance(len(chunk))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                part.unlink(missing_ok=True)
                raise DiskFull(f"the disk is full writing {dest}") from None
            if exc.filename:  # our own file, not the connection: retrying will not help
                raise _Fatal(f"cannot write {exc.filename}: {exc.strerror}") from None
            raise _Retryable(_reason(exc)) from None  # transport trouble: keep the partial
        except Urllib3Error as exc:
            raise _Retryable(_reason(exc)) from None  # connection cut: the partial is resumable
        finally:
            _release(response)

        if job.size is not None and written != job.size:
            raise _Retryable(f"truncated: received {written} of {job.size} bytes")
        if job.sha256 and sha256.hexdigest() != job.sha256.lower():
            part.unlink(missing_ok=True)
            raise _Retryable(f"sha256 mismatch: expected {job.sha256}, got {sha256.hexdigest()}")
        if md5 and md5.hexdigest() != job.md5.lower():
            part.unlink(missing_ok=True)
            raise _Retryable(f"md5 mismatch: expected {job.md5}, got {md5.hexdigest()}")
        os.replace(part, dest)  # open() created it with the umask's permissions


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
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        for h in hashes:
            if h is not None:
                h.update(chunk)


_RANGE_RE = re.compile(r"bytes\s+(\d+)-")


def _content_range_starts_at(headers, offset: int) -> bool:
    match = _RANGE_RE.match(headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset


def _release(response) -> None:
    """Hand the connection back to the pool in a state the next request can use: drain a
    small unread remainder (an error page) to keep it alive, close it on anything larger."""
    if not response.isclosed():
        remaining = response.length_remaining
        try:
            if remaining is not None and remaining <= 65536:
                response.drain_conn()
            else:
                response.close()
        except (Urllib3Error, OSError):
            response.close()
    response.release_conn()


def _raise_for_status(status: int, headers: Mapping[str, str]) -> None:
    if status in RETRY_STATUSES:
        raise _Retryable(f"HTTP {status}", _retry_after(headers))
    raise _Fatal(f"HTTP {status}", status)


def _too_long(seconds: float | None) -> str:
    limit = f"{seconds:g} s " if seconds is not None else ""
    return f"took longer than {limit}(global_timeout)"


def _read_bounded(response, url: str, max_bytes: int | None,
                  deadline: float | None = None) -> bytes:
    declared = response.headers.get("Content-Length")
    if max_bytes is not None and declared and declared.isdigit() and int(declared) > max_bytes:
        raise _Fatal(f"response of {declared} bytes exceeds the limit of {max_bytes}")
    chunks, total = [], 0
    while True:
        chunk = response.read(CHUNK, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise _Fatal(f"response exceeds the limit of {max_bytes} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise _Retryable(_too_long(None))
        chunks.append(chunk)
    if (declared and declared.isdigit() and not response.headers.get("Content-Encoding")
            and total != int(declared)):
        raise _Retryable(f"truncated: received {total} of {declared} bytes")
    return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    """A short, human description of a transport error."""
    text = str(exc)
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError,
                        TimeoutError)):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "cannot connect" + (f" ({exc.__context__})" if exc.__context__ else "")
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection broken" + (f" ({exc.args[1]})" if len(exc.args) > 1 else "")
    text = re.sub(r"<urllib3\.[^>]+>: ", "", text)
    return text or type(exc).__name__
