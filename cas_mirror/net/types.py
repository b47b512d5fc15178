"""What the downloader is given and gives back: settings, jobs, results, errors.

Plain data shared by every other module of the package (and its users); no I/O here.
`Retryable` and `Fatal` are the package's internal verdicts on one attempt. The immutable
records are NamedTuples, the mutable ones plain slotted records (cas_index.plain): a
dataclass costs about 0.8 ms of start-up each (its methods are generated and compiled at
import), which every short run pays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from cas_index.plain import Plain

from ..errors import CasError

PART_SUFFIX = ".part"


class NetworkSettings(NamedTuple):
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


class DownloadJob(NamedTuple):
    url: str
    # Where the file goes: a Path, or text (a sync of thousands of files makes no Path
    # per file; the transfer works on text either way).
    dest: str | Path
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    fallback_urls: tuple[str, ...] = ()  # tried in order when `url` fails
    # For a file of unknown size: refuse it (not retried) once upstream announces or sends
    # more than this many bytes, so a hostile server cannot fill the disk.
    max_size: int | None = None


class DownloadResult(Plain):
    _fields = ("job", "ok", "received", "attempts", "error", "cause")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"received": 0, "attempts": 0, "error": None, "cause": None}
    if TYPE_CHECKING:
        job: DownloadJob
        ok: bool
        received: int  # bytes received in this run (resumed bytes are not counted again)
        attempts: int
        error: str | None  # the whole story, for people and --json (may name URLs)
        # Why it failed, short and without URL or file name: the same text for every file
        # that failed the same way ("cannot connect (connection refused)", "HTTP 404",
        # "run stopped (no space left on device)"), so a report can group them;
        # `host_conditions` finds the hosts where every file failed with one
        # connection-level cause.
        cause: str | None


class HttpResponse(Plain):
    _fields = ("url", "status", "headers", "data")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"data": b""}
    if TYPE_CHECKING:
        url: str
        status: int
        headers: Mapping[str, str]
        data: bytes


class HttpError(CasError):
    """A request that failed for good (after retries); the message names the URL."""

    def __init__(self, url: str, message: str, status: int | None = None,
                 cause: str | None = None):
        super().__init__(f"{url}: {message}")
        self.url = url
        self.status = status
        self.cause = cause or message  # as DownloadResult.cause: without the URL


class Retryable(Exception):
    """One attempt failed in a way worth retrying; `cause` as in DownloadResult."""

    def __init__(self, message: str, retry_after: float | None = None,
                 cause: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.cause = cause or message


class Fatal(Exception):
    """One attempt failed in a way that retrying cannot fix (404, refused URL...)."""

    def __init__(self, message: str, status: int | None = None, cause: str | None = None):
        super().__init__(message)
        self.status = status
        self.cause = cause or message


class DiskFull(CasError):
    """Not enough free space to go on; raised to stop the whole download. The message may
    name a file; `cause` is the condition alone ("no space left on device")."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def stopped_cause(cause: str | None) -> str:
    """The cause of a job the run's stop left undone: no other file's name in it."""
    return f"run stopped ({cause})" if cause else "run stopped"


def left_by_stop(error: str | None) -> bool:
    """Whether a job's error says only that the run's stop left it undone."""
    return bool(error) and error.startswith(f"not downloaded: {stopped_cause(None)}")


class ProgressReporter:
    """What the downloader tells about its progress; the default says nothing."""

    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, result: DownloadResult) -> None: ...
    def finish(self) -> None: ...

