"""PEP 503 HTML pages from upstream (devpi, Artifactory, older mirrors, static trees):
the project list and project pages, turned into the same documents the PEP 691 JSON API
gives, so that one code path (client.py) checks and uses both.

The parser is the standard library's `html.parser`: it is maintained with CPython, it
never fails on broken markup (it reports what it can read), it decodes character
references in attribute values, and these pages need nothing but `<a>`, `<meta>` and
`<base>` tags, so a tree builder (lxml, html5lib) would add a dependency for nothing.

What a page says, and where it goes in the JSON document:

- `<a href="URL#<hash>=<hex>">` -> `url` (the fragment removed) and `hashes`; the file name
  is the URL's last path segment (PEP 503 says the text must equal it);
- `data-requires-python` -> `requires-python` (character references decoded);
- `data-yanked` -> `yanked`: the reason, or true when empty (PEP 592);
- `data-core-metadata`, else `data-dist-info-metadata` (PEP 658/714) -> `core-metadata`:
  `true` or `{"<hash>": "<hex>"}`;
- `data-provenance` (PEP 740) -> `provenance`;
- `<meta name="pypi:repository-version">` -> `meta.api-version`; `pypi:tracks` and
  `pypi:alternate-locations` (PEP 708) -> `meta.tracks` / `alternate-locations` (lists);
  `pypi:project-status` and `pypi:project-status-reason` (PEP 792) -> `project-status`;
- `<base href>` changes what relative links resolve against.

HTML pages carry no serials: change is detected with the page's ETag / Last-Modified
(conditional requests) or, when upstream sends neither, the digest of its body (client.py).
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit


class _Links(HTMLParser):
    def __init__(self, base_url: str):
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self.anchors: list[tuple[dict[str, str | None], list[str]]] = []
        self.meta: dict[str, list[str]] = {}
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "base" and values.get("href"):
            self.base = urljoin(self.base, values["href"])
        elif tag == "meta" and values.get("name"):
            self.meta.setdefault(values["name"].strip().lower(), []).append(
                (values.get("content") or "").strip())
        elif tag == "a" and values.get("href") is not None:
            values["href"] = urljoin(self.base, values["href"].strip())
            self._text = []
            self.anchors.append((values, self._text))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a":
            self._text = None


def _parse(data: bytes, url: str) -> _Links:
    parser = _Links(url)
    parser.feed(data.decode("utf-8", "replace"))
    parser.close()
    return parser


def _meta(parser: _Links) -> dict:
    meta: dict = {}
    version = parser.meta.get("pypi:repository-version")
    if version and version[0]:
        meta["api-version"] = version[0]
    return meta


def root_document(data: bytes, url: str) -> dict:
    """The project list as PEP 691 JSON would give it: {"meta", "projects": [{"name"}]}."""
    parser = _parse(data, url)
    projects = []
    for attrs, text in parser.anchors:
        name = "".join(text).strip()
        if not name:  # no text: the link's last segment names the project
            name = unquote(urlsplit(attrs["href"]).path.rstrip("/").rsplit("/", 1)[-1])
        projects.append({"name": name})
    return {"meta": _meta(parser), "projects": projects}


def _core_metadata(value: str | None) -> dict[str, str] | bool:
    if value is None:
        return False
    value = value.strip()
    if value.lower() == "true":
        return True
    name, sep, digest = value.partition("=")
    return {name.strip().lower(): digest.strip()} if sep else False


def project_document(data: bytes, url: str, project: str) -> dict:
    """A project page as PEP 691 JSON would give it (name, files, meta and the PEP 708 /
    792 keys). HTML pages do not name their project: the one asked for is used."""
    parser = _parse(data, url)
    files = []
    for attrs, text in parser.anchors:
        href = attrs["href"] or ""
        link, _, fragment = href.partition("#")
        filename = unquote(urlsplit(link).path.rsplit("/", 1)[-1]) or "".join(text).strip()
        entry: dict = {"filename": filename, "url": link}
        name, sep, digest = fragment.partition("=")
        entry["hashes"] = {name.lower(): digest} if sep and name and digest else {}
        if attrs.get("data-requires-python"):
            entry["requires-python"] = attrs["data-requires-python"]
        if "data-yanked" in attrs:
            entry["yanked"] = (attrs["data-yanked"] or "").strip() or True
        core = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        metadata = _core_metadata(core)
        if metadata:
            entry["core-metadata"] = metadata
        if attrs.get("data-provenance"):
            entry["provenance"] = urljoin(parser.base, attrs["data-provenance"].strip())
        files.append(entry)
    document: dict = {"meta": _meta(parser), "name": project, "files": files}
    tracks = [t for t in parser.meta.get("pypi:tracks", []) if t]
    if tracks:
        document["meta"]["tracks"] = tracks
    alternates = [a for a in parser.meta.get("pypi:alternate-locations", []) if a]
    if alternates:
        document["alternate-locations"] = alternates
    status = parser.meta.get("pypi:project-status")
    if status and status[0]:
        document["project-status"] = {"status": status[0]}
        reason = parser.meta.get("pypi:project-status-reason")
        if reason and reason[0]:
            document["project-status"]["reason"] = reason[0]
    return document
