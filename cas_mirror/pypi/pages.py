"""The index pages we publish, as bytes. Pure functions, no I/O.

HTML follows PEP 503 with `#<digest>=` fragments, PEP 592 `data-yanked` (with the
reason), `data-requires-python`, PEP 658/714 `data-core-metadata` plus the older
`data-dist-info-metadata`, PEP 740 `data-provenance`, and PEP 629's
`pypi:repository-version` meta tag, with PEP 708's `pypi:tracks` /
`pypi:alternate-locations` and PEP 792's `pypi:project-status` meta tags. JSON follows
PEP 691 at API version 1.4 (PEP 700: `versions`, `size`, `upload-time`; PEP 708 `tracks`
in `meta` and `alternate-locations`; PEP 740 `provenance`; PEP 792 `project-status`), with
PEP 714's `core-metadata` key only (the old JSON key breaks old pips). The project list carries each
project's `_last-serial` (PEP 700 reserves underscore keys for index servers), so another
mirror can chain from ours.

Everything copied from upstream is escaped here: HTML attribute values and text with
`html.escape`, link paths percent-encoded; JSON by the encoder.
"""

from __future__ import annotations

import html
from typing import NamedTuple
from urllib.parse import quote

import msgspec

API_VERSION = "1.4"  # the newest of PEP 700 (1.1), 708 (1.2), 740 (1.3) and 792 (1.4)


class ProjectMarkers(NamedTuple):  # not a dataclass: start-up (model.py)
    """What a project page says about the project as a whole: PEP 792 status and reason,
    PEP 708 tracks and alternate locations (URLs of other indexes, kept as upstream said)."""

    status: str = "active"
    reason: str | None = None
    tracks: tuple[str, ...] = ()
    alternate_locations: tuple[str, ...] = ()


ACTIVE = ProjectMarkers()  # what a page says without PEP 792 / 708 markers


class PageFile(NamedTuple):
    filename: str
    href: str  # relative or absolute, not yet escaped, without fragment
    hashes: dict[str, str]
    size: int | None = None
    requires_python: str | None = None
    yanked: bool | str = False
    core_metadata: dict[str, str] | bool = False
    upload_time: str | None = None
    provenance: str | None = None  # PEP 740: relative or absolute, not yet escaped


def link_href(href: str) -> str:
    """Percent-encode a link's path characters that HTML or URLs would misread."""
    if "://" in href:
        scheme, rest = href.split("://", 1)
        return f"{scheme}://{quote(rest, safe='/:@!$&()*+,;=~%')}"
    return quote(href, safe="/~")


def _fragment(hashes: dict[str, str], digest_name: str) -> str:
    for name in (digest_name, "sha256"):
        if name in hashes:
            return f"#{name}={hashes[name]}"
    return ""


def _metadata_attr(core: dict[str, str] | bool) -> str | None:
    if isinstance(core, dict) and core:
        name = "sha256" if "sha256" in core else sorted(core)[0]
        return f"{name}={core[name]}"
    return "true" if core else None


def _marker_tags(markers: ProjectMarkers) -> list[str]:
    tags = [f'    <meta name="pypi:tracks" content="{html.escape(url)}">'
            for url in markers.tracks]
    tags += [f'    <meta name="pypi:alternate-locations" content="{html.escape(url)}">'
             for url in markers.alternate_locations]
    if markers.status != "active":
        tags.append(f'    <meta name="pypi:project-status" content="{markers.status}">')
        if markers.reason:
            tags.append(f'    <meta name="pypi:project-status-reason" '
                        f'content="{html.escape(markers.reason)}">')
    return tags


def project_html(name: str, files: list[PageFile], digest_name: str = "sha256",
                 markers: ProjectMarkers = ACTIVE) -> bytes:
    title = html.escape(f"Links for {name}")
    out = ["<!DOCTYPE html>", "<html>", "  <head>",
           f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
           *_marker_tags(markers),
           f"    <title>{title}</title>", "  </head>", "  <body>", f"    <h1>{title}</h1>"]
    for f in files:
        attrs = [f'href="{html.escape(link_href(f.href) + _fragment(f.hashes, digest_name))}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
        if f.yanked:
            reason = f.yanked if isinstance(f.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        metadata = _metadata_attr(f.core_metadata)
        if metadata:
            value = html.escape(metadata)
            attrs.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
        if f.provenance:
            attrs.append(f'data-provenance="{html.escape(link_href(f.provenance))}"')
        out.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>")
    out.extend(["  </body>", "</html>", ""])
    return "\n".join(out).encode()


def project_json(name: str, files: list[PageFile], versions: list[str],
                 serial: int | None, markers: ProjectMarkers = ACTIVE) -> bytes:
    meta: dict = {"api-version": API_VERSION}
    if serial is not None:
        meta["_last-serial"] = serial
    if markers.tracks:
        meta["tracks"] = list(markers.tracks)
    entries = []
    for f in files:
        entry: dict = {"filename": f.filename, "url": link_href(f.href), "hashes": f.hashes}
        if f.requires_python:
            entry["requires-python"] = f.requires_python
        if f.core_metadata:
            entry["core-metadata"] = f.core_metadata
        entry["yanked"] = f.yanked
        if f.size is not None:
            entry["size"] = f.size
        if f.upload_time:
            entry["upload-time"] = f.upload_time
        if f.provenance:
            entry["provenance"] = link_href(f.provenance)
        entries.append(entry)
    document: dict = {"meta": meta, "name": name, "files": entries, "versions": versions}
    if markers.alternate_locations:
        document["alternate-locations"] = list(markers.alternate_locations)
    if markers.status != "active":
        document["project-status"] = {"status": markers.status}
        if markers.reason:
            document["project-status"]["reason"] = markers.reason
    return msgspec.json.encode(document)


def root_html(projects: list[tuple[str, str]]) -> bytes:
    """`projects`: (normalized name, display name), in the order to list them."""
    out = ["<!DOCTYPE html>", "<html>", "  <head>",
           f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
           "    <title>Simple index</title>", "  </head>", "  <body>"]
    for normalized, display in projects:
        out.append(f'    <a href="{html.escape(quote(normalized))}/">{html.escape(display)}</a>'
                   "<br/>")
    out.extend(["  </body>", "</html>", ""])
    return "\n".join(out).encode()


def root_json(projects: list[tuple[str, int | None]], last_serial: int | None) -> bytes:
    """`projects`: (display name, serial)."""
    meta: dict = {"api-version": API_VERSION}
    if last_serial is not None:
        meta["_last-serial"] = last_serial
    listed = []
    for name, serial in projects:
        entry: dict = {"name": name}
        if serial is not None:
            entry["_last-serial"] = serial
        listed.append(entry)
    return msgspec.json.encode({"meta": meta, "projects": listed})
