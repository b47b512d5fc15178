"""Retry policy and the classification of failures: what is worth another attempt.

`RetryPolicy` says how long to wait; `raise_for_status` and `classify` turn an HTTP status
or a libcurl error into `Retryable` or `Fatal` with a short message for people.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pycurl

from .types import Fatal, Retryable

MAX_RETRY_AFTER = 120.0  # never wait longer than this for one Retry-After
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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


def classify(code: int, message: str) -> Exception:
    """A libcurl error as Retryable or Fatal, with a short message for people."""
    if code in _TLS_ERRORS:
        return Fatal(f"TLS verification failed ({message}); set ssl_verify to a CA bundle, "
                      "or false to skip verification")
    if code in _FATAL_ERRORS:
        return Fatal(_FATAL_ERRORS[code])
    return Retryable(_MESSAGES.get(code, message or f"libcurl error {code}"))


