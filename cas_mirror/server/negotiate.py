"""PEP 691 content negotiation for the PyPI Simple API: which index file answers a request.

Owns parsing an ``Accept`` header and choosing one of the representations a simple-API
folder offers. Pure functions, no I/O: the server passes in the header and the variants that
exist on disk and gets back the one to serve, or ``None`` for ``406 Not Acceptable``.

The rules, in order:

1. Each representation takes the quality value of the most specific ``Accept`` range that
   matches it: its exact media type, then the ``latest`` alias of that type
   (``application/vnd.pypi.simple.latest+json`` means the v1 JSON), then ``type/*``, then
   ``*/*``. ``q=0`` means "not acceptable". A missing or empty header means ``*/*``.
2. The highest quality wins.
3. On a tie, a representation the client named explicitly beats one it reached only through
   a wildcard.
4. Still tied: among explicitly named ones, the most featureful wins (v1 JSON, then v1 HTML,
   then legacy ``text/html``), as PEP 691 recommends. Among ones reached only through a
   wildcard, HTML wins (legacy ``text/html`` first): a client that names no PyPI type at all
   (curl, a browser, an old pip) gets the HTML page it has always had, as PyPI does.
"""

from __future__ import annotations

from dataclasses import dataclass

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_LEGACY = "text/html"

# The `latest` meta-version names the newest version of a format; the response must carry
# the concrete type (PEP 691), which is what we offer.
ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}

# Tie-breaking order (rule 4), most preferred first.
EXPLICIT_PREFERENCE = (JSON_V1, HTML_V1, HTML_LEGACY)
WILDCARD_PREFERENCE = (HTML_LEGACY, HTML_V1, JSON_V1)

# How specific a match is: higher wins when several Accept ranges match one type.
_EXACT, _ALIAS, _SUBTYPE_WILDCARD, _ANY = 3, 2, 1, 0


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: `type/subtype` (either may be `*`) and its quality."""

    type: str
    subtype: str
    q: float

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}"


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, in order; malformed entries are skipped.

    Parameters other than ``q`` (``charset=...``, extensions) do not change the match.
    A missing or blank header yields ``*/*`` (RFC 9110 and PEP 691 treat absence so).
    """
    if header is None or not header.strip():
        return [MediaRange("*", "*", 1.0)]
    ranges = []
    for entry in header.split(","):
        parts = [p.strip() for p in entry.split(";")]
        media = parts[0].lower()
        if media.count("/") != 1:
            continue
        type_, subtype = (s.strip() for s in media.split("/"))
        if not type_ or not subtype or (type_ == "*" and subtype != "*"):
            continue
        q = 1.0
        valid = True
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = _parse_q(value.strip())
                if q is None:
                    valid = False
                break  # parameters after q are accept-extensions: ignored
        if valid:
            ranges.append(MediaRange(type_, subtype, q))
    return ranges


def _parse_q(text: str) -> float | None:
    """RFC 9110 qvalue: 0 to 1 with at most three decimals; None when malformed."""
    if not text or len(text) > 5 or text[0] not in "01":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 and text.replace(".", "", 1).isdigit() else None


def quality(media_type: str, ranges: list[MediaRange]) -> tuple[float, int]:
    """(q, specificity) that `ranges` give `media_type`; (0, -1) when nothing matches."""
    type_ = media_type.partition("/")[0]
    best_q, best_level = 0.0, -1
    for rng in ranges:
        if rng.media_type == media_type:
            level = _EXACT
        elif ALIASES.get(rng.media_type) == media_type:
            level = _ALIAS
        elif rng.type == type_ and rng.subtype == "*":
            level = _SUBTYPE_WILDCARD
        elif rng.type == "*":
            level = _ANY
        else:
            continue
        # The most specific range decides; among equally specific ones the first counts.
        if level > best_level:
            best_q, best_level = rng.q, level
    return best_q, best_level


def choose(accept: str | None, available: list[str] | tuple[str, ...]) -> str | None:
    """The media type to answer with, among `available`, or None when none is acceptable."""
    ranges = parse_accept(accept)
    best: tuple | None = None
    chosen = None
    for media_type in available:
        q, level = quality(media_type, ranges)
        if q <= 0:
            continue
        explicit = level >= _ALIAS
        order = EXPLICIT_PREFERENCE if explicit else WILDCARD_PREFERENCE
        rank = order.index(media_type) if media_type in order else len(order)
        key = (q, explicit, -rank)
        if best is None or key > best:
            best, chosen = key, media_type
    return chosen
