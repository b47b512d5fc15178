"""One file transfer: its way through URLs and attempts, and one attempt on a curl handle
(streaming into the hidden .part file while hashing, resuming, verifying, renaming).

The .part file is a bare descriptor written with `write_all`: write(2) may take less than
it is given (a filesystem filling up mid-write, a file size limit), and an unbuffered
file object only returns that count, so the tail of a file could go missing unnoticed
while the size and hash, counted on what curl delivered, still matched."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from time import monotonic

from cas_index.atomic import remove_if_present, write_all

from ..errors import is_disk_full, os_problem
from ..text import safe
from .curl import Headers
from .partial import (
    RECORD_FROM,
    forget_validator,
    part_name,
    remember_validator,
    response_validator,
    same_validator,
    usable_partial,
)
from .retry import classify, raise_for_status
from .types import (
    DiskFull,
    DownloadJob,
    DownloadResult,
    Fatal,
    ProgressReporter,
    Retryable,
)

log = logging.getLogger(__name__)


class JobState:
    """A job's way through its URLs and attempts."""

    __slots__ = ("attempts_allowed", "errors", "job", "result", "url_attempts", "url_index",
                 "urls", "validator")

    def __init__(self, job: DownloadJob, attempts_allowed: int):
        self.job = job
        self.result = DownloadResult(job, False, 0, 0, None, None)  # (positional: per job)
        self.urls = (job.url, *job.fallback_urls)
        self.url_index = 0
        self.url_attempts = 0
        self.attempts_allowed = attempts_allowed
        self.errors: list[str] = []
        self.validator: str | None = None  # of the response that wrote the .part (this run)

    @property
    def url(self) -> str:
        return self.urls[self.url_index]

    @property
    def budget(self) -> int:
        """Attempts allowed at the current URL: only the last URL gets the retries."""
        return self.attempts_allowed if self.url_index == len(self.urls) - 1 else 1


class Attempt:
    """One transfer of one job on one curl handle: the write callback streams into the
    .part file while hashing; `finish` verifies and renames."""

    __slots__ = ("dest", "error", "fd", "headers", "job", "md5", "offset", "part",
                 "prepared", "progress", "remembered", "result", "sha256", "state",
                 "status_checked", "unrecorded", "validator", "written")

    def __init__(self, state: JobState, progress: ProgressReporter):
        self.state = state
        self.job = state.job
        self.result = state.result
        self.progress = progress
        self.dest = os.fspath(self.job.dest)  # (text: os calls on it, no Path per call)
        self.part = part_name(self.dest)
        # The validator of the response that wrote the partial file: from the file itself
        # (an earlier run), else from this run's earlier attempt.
        verifiable = bool(self.job.sha256 or self.job.md5)
        self.offset, self.validator = usable_partial(self.part, self.job.size,
                                                     state.validator, verifiable)
        if self.offset:
            log.info("resuming %s from byte %d (%s)", safe(state.url), self.offset,
                     f"If-Range: {safe(self.validator)}" if self.validator
                     else "no validator known; the hash will check the result")
        self.written = self.offset
        self.fd: int | None = None  # the open .part
        self.error: BaseException | None = None
        self.headers = Headers()
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5() if (self.job.md5 and not self.job.sha256) else None
        self.status_checked = False
        self.remembered = False  # the .part may carry a validator (xattr)
        self.unrecorded = False  # a new .part's validator, recorded from RECORD_FROM bytes
        self.prepared: tuple[str, str] | None = None  # the handle's set-up (multi.py)

    def request_headers(self) -> dict[str, str]:
        if not self.offset:
            return {}
        headers = {"Range": f"bytes={self.offset}-"}
        if self.validator:  # else a hash checks the result
            headers["If-Range"] = self.validator
        return headers

    def write(self, data: bytes) -> int | None:
        self.headers.last_read = monotonic()  # per chunk: one global lookup
        try:
            if not self.status_checked:
                self.status_checked = True
                self._open()
            if self.fd is None:
                return None  # an error page: read and dropped, the status tells
            self.written += len(data)
            if self.job.size is not None and self.written > self.job.size:
                raise Retryable(f"received more than the expected {self.job.size} bytes",
                                cause="received more than expected")
            if self.job.max_size is not None and self.written > self.job.max_size:
                raise self._too_large()
            if self.unrecorded and self.written > RECORD_FROM:
                self.unrecorded = False
                self.remembered = True
                remember_validator(self.fd, self.validator)
            write_all(self.fd, data)
            self.sha256.update(data)
            if self.md5 is not None:
                self.md5.update(data)
            self.result.received += len(data)
            self.progress.advance(len(data))
            return None
        except OSError as exc:
            problem = os_problem(exc)
            self.error = (DiskFull(f"the disk is full: {problem} writing {self.job.dest}",
                                   problem) if is_disk_full(exc)
                          else Fatal(f"cannot write {self.part}: {problem}",
                                     cause=f"cannot write: {problem}"))
        except (Retryable, Fatal) as exc:
            self.error = exc
        return -1  # stop this transfer; finish() reports self.error

    def _open(self) -> None:
        status = self.headers.status
        if status in (200, 206):
            self._check_size(upstream_size(status, self.headers.values))
        if status == 206 and self.offset:
            match = RANGE_RE.match(self.headers.values.get("content-range", ""))
            if not match or int(match.group(1)) != self.offset:
                self.offset = self.written = 0
                raise Retryable("server answered an unexpected range")
            if self.validator and not same_validator(self.validator, self.headers.values):
                self.offset = self.written = 0  # it ignored If-Range: the file changed
                self.state.validator = None
                remove_if_present(self.part)
                raise Retryable("upstream file changed during the resume; starting over")
            self.fd = os.open(self.part, os.O_RDWR | os.O_CLOEXEC)  # closed in finish
            self.remembered = True
            hash_prefix(self.fd, self.offset, self.sha256, self.md5)
            os.ftruncate(self.fd, self.offset)
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            self.progress.advance(self.offset)  # the bar counts what is on disk
        elif status == 200:
            # A full answer: the file changed since the partial one (If-Range), or the
            # server ignores Range. Over an old partial file the validator is recorded
            # before any byte is written; a new file's once it is worth resuming.
            fresh = not self.offset  # no partial file was there, nor a validator on it
            if not fresh:
                log.info("%s answered the whole file to a resume (changed upstream, or no "
                         "Range support); starting over", safe(self.state.url))
            self.offset = self.written = 0
            self.fd = _create(self.part)  # closed in finish
            self.validator = self.state.validator = response_validator(self.headers.values)
            if fresh:  # recorded once the file is worth resuming (partial.py)
                self.unrecorded = self.validator is not None
            else:  # replaces (or removes) the one the old partial file carries
                remember_validator(self.fd, self.validator)
                self.remembered = True

    def _check_size(self, upstream: int | None) -> None:
        """A file whose size upstream is not the one the index gives is not worth
        retrying, and is not a refused resume: say what is true."""
        if upstream is not None and self.job.size is not None and upstream != self.job.size:
            remove_if_present(self.part)
            raise Fatal(f"size mismatch: upstream file is {upstream} bytes, "
                        f"the index says {self.job.size}", cause="size mismatch")
        if upstream is not None and self.job.max_size is not None \
                and upstream > self.job.max_size:
            raise self._too_large(upstream)

    def _too_large(self, announced: int | None = None) -> Fatal:
        remove_if_present(self.part)
        said = f" (upstream announces {announced})" if announced is not None else ""
        return Fatal(f"larger than the limit of {self.job.max_size} bytes{said}",
                     cause=f"larger than the limit of {self.job.max_size} bytes")

    def finish(self, curl_error: tuple[int, str, int] | None, status: int) -> None:
        """Raise what went wrong, or verify and rename the file into place."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.error is not None:
            if isinstance(self.error, (Fatal, DiskFull)) or "more than" in str(self.error):
                remove_if_present(self.part)
            raise self.error
        if curl_error is not None:
            raise classify(*curl_error)
        if status == 416 and self.offset:
            remove_if_present(self.part)  # our partial is not a prefix of theirs
            self._check_size(upstream_size(status, self.headers.values))
            raise Retryable("server refused to resume the partial file (HTTP 416)")
        if status not in (200, 206):
            raise_for_status(status, self.headers.values)
            raise Fatal(f"unexpected HTTP {status}", status)
        if not self.status_checked:  # an empty body: the file is empty
            os.close(_create(self.part))
        if self.job.size is not None and self.written != self.job.size:
            raise Retryable(f"truncated: received {self.written} of {self.job.size} bytes",
                            cause="truncated")
        if self.job.sha256 and self.sha256.hexdigest() != self.job.sha256.lower():
            remove_if_present(self.part)
            raise Retryable(f"sha256 mismatch: expected {self.job.sha256}, "
                            f"got {self.sha256.hexdigest()}", cause="sha256 mismatch")
        if self.md5 is not None and self.md5.hexdigest() != self.job.md5.lower():
            remove_if_present(self.part)
            raise Retryable(f"md5 mismatch: expected {self.job.md5}, got {self.md5.hexdigest()}",
                            cause="md5 mismatch")
        if self.remembered:
            forget_validator(self.part)  # the published file carries no download state
        os.replace(self.part, self.dest)  # open() created it with the umask's permissions


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _create(path: str) -> int:
    """A new (or emptied) .part file, with the permissions the umask gives."""
    return os.open(path, _CREATE, 0o666)


def hash_prefix(fd: int, length: int, *hashes) -> None:
    """Hash the first `length` bytes of the open file `fd` (a partial file resumed)."""
    done = 0
    while done < length:
        chunk = os.pread(fd, min(1 << 20, length - done), done)
        if not chunk:
            break
        done += len(chunk)
        for h in hashes:
            if h is not None:
                h.update(chunk)


RANGE_RE = re.compile(r"bytes\s+(\d+)-")
_TOTAL_RE = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d+)")


def upstream_size(status: int, headers: dict[str, str]) -> int | None:
    """The whole file's size as an answer states it: Content-Length of a 200, the total in
    Content-Range of a 206 or 416 ("bytes 0-9/1234", "bytes */1234"); None if unstated."""
    if status == 200:
        value = headers.get("content-length", "")
        return int(value) if value.isdigit() else None
    match = _TOTAL_RE.match(headers.get("content-range", ""))
    return int(match.group(1)) if match else None

