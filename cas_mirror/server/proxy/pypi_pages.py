"""Reading upstream Simple API answers in either representation: PEP 691 JSON as it is,
PEP 503 HTML (with PEP 592 yanked, PEP 658/714 core metadata, `data-requires-python`)
turned into the same JSON shape, so `pypi.client.parse_project_page` checks both the same
way. Pure functions, no I/O.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec

from ...pypi.client import UpstreamError
from ...pypi.model import is_valid_name

ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.1")


def is_json(headers: dict[str, str], data: bytes) -> bool:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.endswith("json"):
        return True
    if ctype.endswith("html"):
        return False
    return data.lstrip()[:1] == b"{"


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def _anchors(data: bytes) -> list[tuple[dict[str, str | None], str]]:
    parser = _Anchors()
    parser.feed(data.decode("utf-8", "replace"))
    parser.close()
    return parser.anchors


def _digest(value: str | None) -> dict[str, str] | bool:
    """`sha256=<hex>` -> {"sha256": hex}; "true" -> True; absent -> False."""
    if value is None:
        return False
    name, equals, digest = value.partition("=")
    if equals and digest:
        return {name.strip().lower(): digest.strip()}
    return value.strip().lower() == "true"


def project_document(data: bytes, headers: dict[str, str], project: str) -> dict[str, Any]:
    """Upstream's project page as a PEP 691 JSON document (HTML converted)."""
    if is_json(headers, data):
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise UpstreamError("malformed JSON project page") from None
        if not isinstance(document, dict):
            raise UpstreamError("the project page is not a JSON object")
        return document
    files = []
    for attrs, text in _anchors(data):
        href = attrs.get("href")
        if not href:
            continue
        url, _, fragment = href.partition("#")
        name = text or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        entry: dict[str, Any] = {"filename": name, "url": url,
                                 "hashes": _digest(fragment) or {}}
        if attrs.get("data-requires-python"):
            entry["requires-python"] = attrs["data-requires-python"]
        if "data-yanked" in attrs:
            entry["yanked"] = attrs["data-yanked"] or True
        core = _digest(attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata")))
        if core:
            entry["core-metadata"] = core
        files.append(entry)
    return {"meta": {"api-version": "1.0"}, "name": project, "files": files}


def project_names(data: bytes, headers: dict[str, str]) -> list[str]:
    """The project names of upstream's `/simple/` answer (JSON or HTML)."""
    if is_json(headers, data):
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise UpstreamError("malformed JSON project list") from None
        projects = document.get("projects") if isinstance(document, dict) else None
        if not isinstance(projects, list):
            raise UpstreamError("the project list has no 'projects' array")
        names = [p.get("name") for p in projects if isinstance(p, dict)]
    else:
        names = [text for _, text in _anchors(data)]
    return [n for n in names if isinstance(n, str) and is_valid_name(n)]
