"""Talking to the upstream index, through the shared downloader: the project list (PEP 691
JSON `/simple/` with `_last-serial`, or XML-RPC `list_packages_with_serial` /
`changelog_since_serial`), project pages (PEP 691 JSON), and the JSON API document.

Everything upstream says is checked here before it reaches the rest of the sync: project
names must be valid and distinct after normalization; a page must be about the project
asked for; each file name must belong to that project, and each file URL must map to a
path inside `web/packages/` (no `..`, no absolute or hidden segments, the URL's last
segment being the file name). What fails is refused and reported, never written.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import msgspec

from ..net import Downloader, HttpError
from .model import ListedProject, Listing, ProjectPage, UpstreamFile, is_valid_name, normalize

log = logging.getLogger(__name__)

ACCEPT_JSON = "application/vnd.pypi.simple.v1+json"
# JSON first; PEP 503 HTML (devpi, Artifactory, static trees) when that is all there is.
ACCEPT = (f"{ACCEPT_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.01")
SERIAL_HEADER = "x-pypi-last-serial"
MAX_DOCUMENT = 1_000_000_000  # a full PyPI project list is ~40 MB; a page far less
GONE = (404, 410)
REMOVE_PROJECT = "remove project"  # the changelog action of a project deleted upstream
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_UPLOAD_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f\\/]")


class UpstreamError(Exception):
    """Upstream's answer cannot be used (the message says why)."""


class XmlRpcUnavailable(UpstreamError):
    """The XML-RPC endpoint did not answer usefully; the Simple API is used instead."""


class PageGone(UpstreamError):
    """A project page answered 404 or 410."""


class Refused(ValueError):
    """A name, file or URL from upstream that would land outside the tree or elsewhere."""


# --------------------------------------------------------------------------- listing


def fetch_listing(downloader: Downloader, simple_url: str) -> Listing:
    response = downloader.get(simple_url, {"Accept": ACCEPT}, max_bytes=MAX_DOCUMENT)
    return parse_listing(response.data, simple_url, response.headers)


def parse_listing(data: bytes, simple_url: str, headers: dict[str, str]) -> Listing:
    """Upstream's `/simple/` answer, PEP 691 JSON or PEP 503 HTML (by its content type)."""
    if _is_html(headers.get("content-type"), data):
        from . import html

        document = html.root_document(data, simple_url)
    else:
        document = _json_object(data, simple_url)
    projects = document.get("projects")
    if not isinstance(projects, list):
        raise UpstreamError(f"{simple_url}: the project list has no 'projects' array")
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    last = _int(meta.get("_last-serial")) or _int(headers.get(SERIAL_HEADER))
    pairs = []
    for entry in projects:
        if isinstance(entry, dict):
            pairs.append((entry.get("name"), _int(entry.get("_last-serial"))))
        else:
            pairs.append((entry, None))
    return _listing(pairs, last, complete=True, source="simple")


def _listing(pairs, last_serial, complete: bool, source: str) -> Listing:
    listing = Listing({}, last_serial, complete, source)
    for listed_name, listed_serial in pairs:
        if not isinstance(listed_name, str) or not is_valid_name(listed_name):
            listing.refused.append((repr(listed_name)[:200], "refused: not a valid project name"))
            continue
        name, serial = listed_name, listed_serial
        key = normalize(name)
        other = listing.projects.get(key)
        if other is not None:
            if complete:
                listing.refused.append((name, (f"refused: normalizes to {key!r}, already "
                                               f"listed as {other.name!r}")))
                continue
            serial = max(serial or 0, other.serial or 0) or None
            name = other.name
        listing.projects[key] = ListedProject(name, serial)
    return listing


WHITELIST_SOURCE = "whitelist"


def whitelist_listing(names: tuple[str, ...], state) -> Listing:
    """An exact-name whitelist needs no project list: the listed names are the projects,
    with no serials (each page is then asked for conditionally, see fetch_project)."""
    projects = {}
    for name in names:
        previous = state.projects.get(name)
        projects[name] = ListedProject(previous.name if previous else name, None)
    return Listing(projects, None, complete=False, source=WHITELIST_SOURCE)


def _xmlrpc(downloader: Downloader, url: str, method: str, *params: Any) -> Any:
    import xmlrpc.client  # only with use_xml_rpc: true

    body = xmlrpc.client.dumps(params, method, allow_none=False).encode()
    try:
        response = downloader.get(url, {"Content-Type": "text/xml", "Accept": "text/xml"},
                                  method="POST", body=body, max_bytes=MAX_DOCUMENT)
        return xmlrpc.client.loads(response.data, use_builtin_types=True)[0][0]
    except HttpError as exc:
        raise XmlRpcUnavailable(f"XML-RPC {method}: {exc}") from None
    except xmlrpc.client.Fault as exc:
        raise XmlRpcUnavailable(f"XML-RPC {method} at {url}: fault {exc.faultCode}: "
                                f"{exc.faultString}") from None
    except (xmlrpc.client.ResponseError, ValueError, IndexError, TypeError) as exc:
        raise XmlRpcUnavailable(f"XML-RPC {method} at {url}: malformed answer ({exc})") from None
    except Exception as exc:  # expat errors have no public base class
        if type(exc).__name__ == "ExpatError":
            raise XmlRpcUnavailable(f"XML-RPC {method} at {url}: not XML ({exc})") from None
        raise


def fetch_listing_xmlrpc(downloader: Downloader, url: str, since: int | None) -> Listing:
    """Every project with its serial (since None), or the projects changed after `since`."""
    if since is None:
        answer = _xmlrpc(downloader, url, "list_packages_with_serial")
        if not isinstance(answer, dict):
            raise XmlRpcUnavailable(f"XML-RPC list_packages_with_serial at {url}: not a mapping")
        pairs = [(name, _int(serial)) for name, serial in answer.items()]
        last = max((s for _, s in pairs if s is not None), default=None)
        return _listing(pairs, last, complete=True, source="xmlrpc-list")
    answer = _xmlrpc(downloader, url, "changelog_since_serial", since)
    if not isinstance(answer, list):
        raise XmlRpcUnavailable(f"XML-RPC changelog_since_serial at {url}: not a list")
    rows = []
    for row in answer:
        if not isinstance(row, (list, tuple)) or len(row) < 5:
            raise XmlRpcUnavailable(f"XML-RPC changelog_since_serial at {url}: malformed row")
        rows.append((row[0], row[3], _int(row[4])))
    # A project whose last change is its removal is dropped from the list; any other
    # change lists it (several changes of one project merge to the highest serial).
    last_action: dict[str, tuple[int, str, str]] = {}  # normalized -> (serial, action, name)
    for name, action, serial in rows:
        if isinstance(name, str) and serial is not None:
            key = normalize(name)
            if key not in last_action or serial >= last_action[key][0]:
                last_action[key] = (serial, action, name)
    dropped = {key: name for key, (_, action, name) in last_action.items()
               if action == REMOVE_PROJECT}
    pairs = [(name, serial) for name, _, serial in rows
             if not (isinstance(name, str) and normalize(name) in dropped)]
    last = max([s for _, _, s in rows if s is not None] + [since])
    listing = _listing(pairs, last, complete=False, source="xmlrpc-changelog")
    listing.dropped.update(dropped)
    log.debug("changelog since serial %s: %d changes, %d projects changed, %d removed",
              since, len(rows), len(listing.projects), len(dropped))
    return listing


# --------------------------------------------------------------------------- pages


def fetch_project(downloader: Downloader, simple_url: str, name: str,
                  want_serial: int | None,
                  validators: dict[str, str] | None = None) -> ProjectPage | None:
    """The project's page. A page older than `want_serial` (a stale cache) is asked for
    again, then reported. A 404/410 is an error like any other: the project is listed, so
    its page must exist (only the project list removes a project).

    With `validators` (the previous page's ETag / Last-Modified / body digest, given when
    no serial says whether the page changed), the request is conditional, and None is
    returned when upstream answers 304 or the same body."""
    url = f"{simple_url}{name}/"
    attempts = downloader.policy.retries + 1
    for attempt in range(1, attempts + 1):
        # Retries carry a query string, as bandersnatch does, to get past stale caches.
        ask = url if attempt == 1 else f"{url}?serial={want_serial}"
        log.debug("fetching the page %s", ask)
        headers = {"Accept": ACCEPT}
        if validators and attempt == 1:
            if validators.get("etag"):
                headers["If-None-Match"] = validators["etag"]
            if validators.get("last-modified"):
                headers["If-Modified-Since"] = validators["last-modified"]
        try:
            response = downloader.get(ask, headers, max_bytes=MAX_DOCUMENT)
        except HttpError as exc:
            if exc.status in GONE:
                raise PageGone(f"{exc}, though upstream's project list names the "
                               "project; the mirrored copy is kept") from None
            raise
        if response.status == 304:
            return None
        digest = hashlib.sha256(response.data).hexdigest()
        if validators and validators.get("sha256") == digest:
            log.debug("%s: the same page as last time", url)
            return None
        page = parse_project_page(response.data, url, name, response.headers)
        page.validators = {"sha256": digest, **{
            k: response.headers[k] for k in ("etag", "last-modified") if k in response.headers}}
        if want_serial is None or page.serial is None or page.serial >= want_serial:
            return page
        log.info("%s answered serial %s, older than the %s listed; asking again", url,
                 page.serial, want_serial)
        if attempt < attempts:
            downloader.backoff(attempt)
    raise UpstreamError(f"{url}: upstream answered serial {page.serial}, older than the "
                        f"{want_serial} it listed (a stale cache?), after {attempts} attempts")


def fetch_json_api(downloader: Downloader, json_api_url: str, name: str) -> bytes:
    url = f"{json_api_url}/{name}/json"
    response = downloader.get(url, {"Accept": "application/json"}, max_bytes=MAX_DOCUMENT)
    _json_object(response.data, url)
    return response.data


def parse_project_page(data: bytes, url: str, project: str,
                       headers: dict[str, str] | None = None) -> ProjectPage:
    from .selection import file_project_and_version

    if _is_html((headers or {}).get("content-type"), data):
        from . import html

        document = html.project_document(data, url, project)
    else:
        document = _json_object(data, url)
    named = document.get("name")
    if not isinstance(named, str) or normalize(named) != project:
        raise UpstreamError(f"{url}: refused: the page names project {str(named)[:100]!r}, "
                            f"not {project!r}")
    files = document.get("files")
    if not isinstance(files, list):
        raise UpstreamError(f"{url}: the page has no 'files' array")
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    serial = _int(meta.get("_last-serial")) or _int((headers or {}).get(SERIAL_HEADER))
    page = ProjectPage(project, serial, [], [])
    seen_names: set[str] = set()
    seen_paths: set[str] = set()
    for entry in files:
        try:
            f = _parse_file(entry, url, project, file_project_and_version)
        except Refused as exc:
            label = entry.get("filename") if isinstance(entry, dict) else None
            page.refused.append((str(label or entry)[:200], f"refused: {exc}"))
            continue
        if f.filename in seen_names or f.relpath in seen_paths:
            page.refused.append((f.filename, "refused: listed twice"))
            continue
        seen_names.add(f.filename)
        seen_paths.add(f.relpath)
        page.files.append(f)
    # A file may not sit where another file's PEP 658 metadata goes.
    clash = {f.relpath for f in page.files} & {f"{f.relpath}.metadata" for f in page.files}
    if clash:
        page.refused.extend((p, "refused: collides with another file's .metadata") for p in clash)
        page.files = [f for f in page.files if f.relpath not in clash]
    _project_markers(page, document, meta)
    versions = document.get("versions")
    if isinstance(versions, list) and all(isinstance(v, str) for v in versions):
        page.versions = list(dict.fromkeys(versions))
    else:
        page.versions = list(dict.fromkeys(f.version for f in page.files if f.version))
    return page


STATUSES = ("active", "archived", "quarantined", "deprecated")


def _project_markers(page: ProjectPage, document: dict, meta: dict) -> None:
    """PEP 792 status (top-level `project-status`, or the `meta` spelling of early
    drafts) and PEP 708 `tracks` / `alternate-locations`: kept only when well-formed."""
    status = document.get("project-status")
    if isinstance(status, dict):
        value, reason = status.get("status"), status.get("reason")
    else:
        value, reason = meta.get("project-status"), meta.get("project-status-reason")
    if isinstance(value, str) and value.strip().lower() in STATUSES:
        page.status = value.strip().lower()
        page.status_reason = reason.strip() or None if isinstance(reason, str) else None
    for attr, raw in (("tracks", meta.get("tracks")),
                      ("alternate_locations", document.get("alternate-locations"))):
        if isinstance(raw, list):
            setattr(page, attr, [u for u in raw if isinstance(u, str)
                                 and urlsplit(u).scheme in ("http", "https")])


def _parse_file(entry: Any, page_url: str, project: str, name_check) -> UpstreamFile:
    if not isinstance(entry, dict):
        raise Refused("a file entry that is not an object")
    filename, href = entry.get("filename"), entry.get("url")
    if not isinstance(filename, str) or not isinstance(href, str):
        raise Refused("a file entry without filename or url")
    _check_segment(filename, "file name")
    belongs, version = name_check(filename, project)
    if not belongs:
        raise Refused(f"file name {filename!r} does not belong to project {project!r}")
    url = urljoin(page_url, href).split("#", 1)[0]
    hashes = _hashes(entry.get("hashes"))
    relpath = local_relpath(url, filename, project, hashes)
    size = entry.get("size")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    requires = entry.get("requires-python")
    yanked = entry.get("yanked", False)
    if not isinstance(yanked, (bool, str)):
        yanked = bool(yanked)
    if isinstance(yanked, str) and not yanked.strip():
        yanked = True
    core = entry.get("core-metadata")
    if core is None:  # PEP 714: the old spellings, when the new key is absent
        core = entry.get("dist-info-metadata", entry.get("data-dist-info-metadata", False))
    if isinstance(core, dict):
        core = _hashes(core) or True
    elif not isinstance(core, bool):
        core = False
    upload = entry.get("upload-time")
    provenance = entry.get("provenance")
    if isinstance(provenance, str) and provenance:
        provenance = urljoin(page_url, provenance)
        if urlsplit(provenance).scheme not in ("http", "https"):
            provenance = None
    else:
        provenance = None
    return UpstreamFile(
        filename=filename, url=url, relpath=relpath, hashes=hashes, size=size,
        requires_python=requires.strip() or None if isinstance(requires, str) else None,
        yanked=yanked, core_metadata=core,
        upload_time=upload if isinstance(upload, str) and _UPLOAD_TIME.match(upload) else None,
        version=version, provenance=provenance)


def _hashes(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k.lower(): v.lower() for k, v in value.items()
            if isinstance(k, str) and isinstance(v, str) and _HEX.match(v)
            and k.lower() in ("sha256", "md5", "sha1", "sha224", "sha384", "sha512",
                              "blake2b", "blake2s", "sha3_256", "sha3_512")}


def _check_segment(segment: str, what: str) -> None:
    if not segment or segment in (".", "..") or segment.startswith(".") \
            or _BAD_SEGMENT.search(segment) or len(segment) > 255:
        raise Refused(f"{what} {segment[:100]!r} is not a plain, visible name")


def local_relpath(url: str, filename: str, project: str, hashes: dict[str, str]) -> str:
    """Where the file of `url` lives under web/packages/: the URL's path after its first
    `packages` segment (PyPI's hashed layout, so links stay relative), else
    <sha256[:2]>/<sha256[2:4]>/<sha256[4:]>/<filename>, else <project>/<filename>."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Refused(f"URL {url[:200]!r} is not http(s)")
    segments = [unquote(s) for s in parts.path.split("/")]
    if segments and segments[-1] != filename:
        raise Refused(f"URL {url[:200]!r} does not end in the file name {filename!r}")
    if "packages" in segments[:-1]:
        rel = segments[segments.index("packages") + 1:]
    elif "sha256" in hashes and len(hashes["sha256"]) == 64:
        digest = hashes["sha256"]
        rel = [digest[:2], digest[2:4], digest[4:], filename]
    else:
        rel = [project, filename]
    for segment in rel:
        _check_segment(segment, "URL path segment")
    return "/".join(rel)


# --------------------------------------------------------------------------- helpers


def _json_object(data: bytes, url: str) -> dict:
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise UpstreamError(f"{url}: malformed JSON") from None
    if not isinstance(document, dict):
        raise UpstreamError(f"{url}: expected a JSON object")
    return document


_HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")


def _is_html(content_type: str | None, data: bytes) -> bool:
    """A PEP 503 HTML answer (html.py parses it; imported only then)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind:
        return kind in _HTML_TYPES
    return data[:200].lstrip().lower().startswith((b"<!doctype", b"<html"))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
