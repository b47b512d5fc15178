"""HTTP conditional and range requests for static files (RFC 9110): If-None-Match /
If-Modified-Since (304), If-Range, and single ``bytes=`` ranges (206, 416). Pure functions
of header values, sizes and validators.
"""

from __future__ import annotations

import email.utils


def not_modified(headers: dict[str, str], etag: str, mtime: float) -> bool:
    """RFC 9110 13.1.2/13.1.3: If-None-Match (weak comparison) decides when present."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        for raw_tag in if_none_match.split(","):
            tag = raw_tag.strip()
            if tag == "*" or tag.removeprefix("W/") == etag:
                return True
        return False
    since = headers.get("if-modified-since")
    if since is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False
    if when is None or when.tzinfo is None:
        return False
    return int(mtime) <= when.timestamp()


def if_range_allows(if_range: str | None, etag: str, last_modified: str) -> bool:
    """If-Range: honour Range only while the client's copy is still current."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith('"'):
        return if_range == etag  # strong comparison
    return if_range == last_modified


UNSATISFIABLE = "unsatisfiable"


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a single ``bytes=`` range, UNSATISFIABLE, or None to ignore it.

    Several ranges and malformed values are ignored (the whole file is sent, which RFC 9110
    allows); a range that starts past the end is unsatisfiable (416).
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not _digits_or_empty(first) or not _digits_or_empty(last):
        return None
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            return UNSATISFIABLE
        return start, min(end, size - 1)
    if not last:
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        return UNSATISFIABLE
    return max(0, size - suffix), size - 1


def _digits_or_empty(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())
