"""PEP 691 negotiation as a pure function: Accept header + available types -> chosen type."""

from __future__ import annotations

import pytest

from cas_mirror.server.negotiate import (
    HTML_LEGACY,
    HTML_V1,
    JSON_V1,
    MediaRange,
    choose,
    parse_accept,
)

ALL = [JSON_V1, HTML_V1, HTML_LEGACY]
PIP = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
       "text/html; q=0.01")
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("accept, expected", [
    (PIP, JSON_V1),
    (None, HTML_LEGACY),  # no header means */*: a client naming no PyPI type gets HTML
    ("", HTML_LEGACY),
    ("*/*", HTML_LEGACY),
    (BROWSER, HTML_LEGACY),
    ("text/html", HTML_LEGACY),
    ("text/*", HTML_LEGACY),
    (JSON_V1, JSON_V1),
    (HTML_V1, HTML_V1),
    ("application/vnd.pypi.simple.latest+json", JSON_V1),
    ("application/vnd.pypi.simple.latest+html", HTML_V1),
    # q-values decide, whatever the order of the entries
    (f"{JSON_V1};q=0.5, {HTML_V1}", HTML_V1),
    (f"{HTML_V1}, {JSON_V1};q=0.5", HTML_V1),
    (f"text/html;q=0.9, {JSON_V1};q=0.8", HTML_LEGACY),
    (f"{JSON_V1};q=0.2, text/html;q=0.3", HTML_LEGACY),
    # ties: the most featureful among explicitly named types
    (f"{HTML_V1}, {JSON_V1}", JSON_V1),
    (f"text/html, {HTML_V1}", HTML_V1),
    # an explicit name beats a wildcard at the same q
    (f"*/*, {JSON_V1}", JSON_V1),
    (f"application/*, {HTML_V1}", HTML_V1),
    # q=0 means "not acceptable", also when a wildcard would allow it
    (f"{JSON_V1};q=0, */*", HTML_LEGACY),
    (f"{JSON_V1};q=0, {HTML_V1};q=0.1", HTML_V1),
    ("text/html;q=0, application/*", HTML_V1),
    # the most specific range decides a type's q
    (f"*/*;q=0.1, {JSON_V1};q=0", HTML_LEGACY),
    (f"application/*;q=0, {JSON_V1}", JSON_V1),
    # parameters other than q do not matter; case does not matter
    ("TEXT/HTML; charset=utf-8", HTML_LEGACY),
    (f"{JSON_V1.upper()};Q=0.7, text/html;q=0.6", JSON_V1),
    # nothing fits
    ("application/xml", None),
    ("image/*", None),
    (f"{JSON_V1};q=0, {HTML_V1};q=0, text/html;q=0", None),
    ("*/*;q=0", None),
])
def test_choose_among_all_three(accept, expected):
    assert choose(accept, ALL) == expected


@pytest.mark.parametrize("accept, available, expected", [
    (PIP, [HTML_V1, HTML_LEGACY], HTML_V1),  # JSON missing on disk: pip gets v1 HTML
    (PIP, [HTML_LEGACY], HTML_LEGACY),
    (PIP, [JSON_V1], JSON_V1),
    (None, [JSON_V1], JSON_V1),  # */* accepts the only thing there is
    ("text/html", [JSON_V1], None),
    (JSON_V1, [HTML_V1, HTML_LEGACY], None),
    (PIP, [], None),
])
def test_choose_among_what_exists(accept, available, expected):
    assert choose(accept, available) == expected


def test_parse_accept_skips_malformed_entries():
    ranges = parse_accept("text/html;q=2, garbage, */json, application/json;q=0.50, "
                          "text/plain;q=abc, image/*;q=0.001")
    assert ranges == [MediaRange("application", "json", 0.5), MediaRange("image", "*", 0.001)]


def test_parse_accept_ignores_extensions_after_q():
    assert parse_accept("text/html;q=0.3;level=1") == [MediaRange("text", "html", 0.3)]
