"""Retry policy and the classification of failures: what is worth another attempt.

`RetryPolicy` says how long to wait; `raise_for_status` and `classify` turn an HTTP status
or a libcurl error into `Retryable` or `Fatal` with a short message for people.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

import pycurl

from .types import DownloadResult, Fatal, Retryable

MAX_RETRY_AFTER = 120.0  # never wait longer than this for one Retry-After
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class RetryPolicy(NamedTuple):
    retries: int
    backoff: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = min(self.backoff * (2 ** (attempt - 1)), 60.0)
        import random  # (a run without retries does not import it)

        return base * (0.5 + random.random())  # full jitter around the base



def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
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



def raise_for_status(status: int, headers: Mapping[str, str]) -> None:
    if status in RETRY_STATUSES:
        raise Retryable(f"HTTP {status}", retry_after_seconds(headers))
    raise Fatal(f"HTTP {status}", status)


class HostCondition(NamedTuple):
    """Every file from `host` failed the same way: one condition, to be told once."""

    host: str
    cause: str
    files: int


def host_conditions(results: Iterable[DownloadResult]) -> list[HostCondition]:
    """The hosts where every file failed with the same connection-level cause (refused,
    DNS, TLS), in the order first seen. The host is that of the job's last URL (a job
    fails only after its last fallback failed)."""
    seen: dict[str, list[DownloadResult]] = {}
    for result in results:
        host = urlsplit((result.job.url, *result.job.fallback_urls)[-1]).netloc
        seen.setdefault(host, []).append(result)
    conditions = []
    for host, members in seen.items():
        causes = {None if r.ok else r.cause for r in members}
        if len(causes) == 1:
            cause = causes.pop()
            if cause is not None and cause.startswith(CONNECTION_CAUSES):
                conditions.append(HostCondition(host, cause, len(members)))
    return conditions


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


# Causes that are about reaching a host, not about one file (see host_conditions).
CONNECTION_CAUSES = ("cannot connect", "cannot resolve", "TLS ")


def classify(code: int, message: str, os_errno: int = 0) -> Exception:
    """A libcurl error as Retryable or Fatal, with a short message for people (and the
    system's reason for a refused connection, from libcurl's OS_ERRNO)."""
    if code in _TLS_ERRORS:
        return Fatal(f"TLS verification failed ({message}); set ssl_verify to a CA bundle, "
                     "or false to skip verification", cause=f"TLS verification failed ({message})")
    if code == pycurl.E_SSL_CONNECT_ERROR:
        return Retryable(f"TLS handshake failed ({message})")
    if code in _FATAL_ERRORS:
        return Fatal(_FATAL_ERRORS[code])
    text = _MESSAGES.get(code, message or f"libcurl error {code}")
    if code == pycurl.E_COULDNT_CONNECT and os_errno:
        text = f"{text} ({os.strerror(os_errno).lower()})"
    return Retryable(text)


