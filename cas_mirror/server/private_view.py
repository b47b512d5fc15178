"""The merged PyPI view, and read access to trees marked private.

`MergedView` answers `/<pypi folder>/simple/` and its project folders when the private
index (private_index.py) has projects, without touching the mirror's files:

- a project that exists privately is served from the private index only: the mirror's
  files of the same name never appear (dependency-confusion protection), unless its name
  is in `pypi_merge_allowed`, in which case the page lists the private files and then the
  mirror's (from the mirror's PEP 691 JSON page; a private file wins a name clash);
- the project list is the mirror's (its JSON list, or its HTML list when it has no JSON)
  with the private names added, computed when either list changes and kept in memory;
- everything else goes on to the tree.

`ReadGuard` refuses GET and HEAD under a folder listed in `private_paths` without a token
of scope `read:<folder>` (401/403), and the merged view does the same for private projects
when the private index's folder is such a folder: their names never fall through to the
mirror's project of the same name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

import msgspec

from ..pypi import pages
from ..pypi.model import normalize
from . import negotiate
from .app import Handled, send
from .auth import Refusal, authorize, reply
from .conditional import not_modified
from .files import MirrorTree, Response, error
from .private_index import PrivateIndex
from .tokens import TokenStore

log = logging.getLogger(__name__)

_ANCHOR = re.compile(r'<a\s[^>]*href="([^"]*)"[^>]*>([^<]*)</a>')
_TYPES = {negotiate.JSON_V1: negotiate.JSON_V1, negotiate.HTML_V1: negotiate.HTML_V1,
          negotiate.HTML_LEGACY: "text/html; charset=utf-8"}


class ReadGuard:
    """401/403 for reads under `paths` (folders of the served tree) without `read:` scope."""

    def __init__(self, paths: tuple[str, ...], store: TokenStore):
        self.paths = tuple(tuple(p.strip("/").split("/")) for p in paths)
        self.store = store

    def scope_for(self, path: str) -> str | None:
        segments = tuple(s for s in path.split("/") if s)
        for prefix in self.paths:
            if segments[:len(prefix)] == prefix:
                return "read:" + "/".join(prefix)
        return None

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        if scope.method not in ("GET", "HEAD"):
            return None
        wanted = self.scope_for(scope.path)
        if wanted is None:
            return None
        try:
            authorize(self.store, headers, wanted)
        except Refusal as refusal:
            return reply(protocol, refusal.status, refusal.reason, refusal.headers)
        return None


class MergedView:
    def __init__(self, tree: MirrorTree, pypi_folder: str, index: PrivateIndex,
                 merge_allowed: tuple[str, ...], guard: ReadGuard | None):
        self.tree, self.index, self.guard = tree, index, guard
        self.simple = f"/{pypi_folder}/simple/"
        self.private_simple = f"/{index.folder}/simple/"
        self.mirror_simple = os.path.join(tree.root, pypi_folder, "web", "simple")
        self.merge_allowed = frozenset(normalize(n) for n in merge_allowed)
        # the scope private projects need when the private folder is in private_paths
        self.read_scope = guard.scope_for("/" + index.folder) if guard is not None else None
        self._root_key: tuple | None = None
        self._root_pages: dict[str, bytes] = {}
        self._root_mtime = 0.0

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        path, method = scope.path, scope.method
        if method not in ("GET", "HEAD"):
            return None
        if path.startswith(self.private_simple) and path.endswith("/"):
            # the private tree's own pages, negotiated as the mirror's are
            folder = path.strip("/")
            return await self._send(method, self.tree.respond_simple(method, folder, headers),
                                    protocol)
        if not path.startswith(self.simple):
            return None
        rest = path[len(self.simple):]
        if rest == "":
            return await self._root(method, headers, protocol)
        name = rest.rstrip("/")
        if "/" in name or not self.index.has_project(name):
            return None
        if self.read_scope is not None:
            try:
                authorize(self.guard.store, headers, self.read_scope)
            except Refusal as refusal:  # never the mirror's project of that name instead
                return reply(protocol, refusal.status, refusal.reason, refusal.headers)
        if not rest.endswith("/"):
            return await self._send(method, Response(301, [("location", path + "/")]),
                                    protocol)
        normalized = normalize(name)
        if normalized in self.merge_allowed:
            return await self._send(method, self._merged_project(normalized, headers),
                                    protocol)
        folder = f"{self.index.folder}/simple/{normalized}"
        return await self._send(method, self.tree.respond_simple(method, folder, headers),
                                protocol)

    @staticmethod
    async def _send(method: str, response: Response, protocol) -> Handled:
        return Handled(response.status, await send(method, response, protocol))

    # ---------------------------------------------------------------- the project list
    async def _root(self, method: str, headers: dict[str, str], protocol) -> Handled | None:
        if self.read_scope is not None:
            try:
                authorize(self.guard.store, headers, self.read_scope)
            except Refusal:
                return None  # no access to the private names: the mirror's list alone
        stamps = (_stamp(os.path.join(self.mirror_simple, "index.v1_json")),
                  _stamp(os.path.join(self.mirror_simple, "index.html")),
                  _stamp(str(self.index.simple / "index.v1_json")))
        if stamps[2] is None:
            return None
        if stamps != self._root_key:
            self._root_pages = self._merged_root()
            self._root_key = stamps
            self._root_mtime = max(s[1] for s in stamps if s is not None) / 1e9
        body_etag = hashlib.sha256(self._root_pages[negotiate.JSON_V1]).hexdigest()[:20]
        media_type = negotiate.choose(headers.get("accept"), list(_TYPES))
        vary = [("vary", "Accept")]
        if media_type is None:
            return await self._send(method, error(406, vary), protocol)
        etag = f'"merged-{body_etag}-{list(_TYPES).index(media_type)}"'
        out = [("content-type", _TYPES[media_type]), ("etag", etag), *vary]
        if not_modified(headers, etag, self._root_mtime):
            return await self._send(method, Response(304, out[1:]), protocol)
        return await self._send(method, Response(200, out, self._root_pages[media_type]),
                                protocol)

    def _merged_root(self) -> dict[str, bytes]:
        listed: dict[str, tuple[str, int | None]] = {}
        json_page = os.path.join(self.mirror_simple, "index.v1_json")
        try:
            with open(json_page, "rb") as handle:
                doc = msgspec.json.decode(handle.read())
            for entry in doc.get("projects", []):
                listed[normalize(entry["name"])] = (entry["name"], entry.get("_last-serial"))
        except FileNotFoundError:
            try:
                with open(os.path.join(self.mirror_simple, "index.html"), "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
                for _href, display in _ANCHOR.findall(text):
                    listed[normalize(display)] = (display, None)
            except FileNotFoundError:
                pass
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError) as exc:
            log.warning("%s: cannot read the mirror's project list (%s); listing the "
                        "private projects only", json_page, exc)
        for normalized, display in self.index.project_names():
            listed[normalized] = (display, None)
        names = sorted(listed)
        html = pages.root_html([(n, listed[n][0]) for n in names])
        return {negotiate.JSON_V1: pages.root_json([listed[n] for n in names], None),
                negotiate.HTML_V1: html, negotiate.HTML_LEGACY: html}

    # ---------------------------------------------------------------- merged projects
    def _merged_project(self, normalized: str, headers: dict[str, str]) -> Response:
        state = self.index.project(normalized)
        if state is None:
            return error(404)
        files = {f.filename: f for f in self.index.page_files(state)}
        versions = list(dict.fromkeys(f["version"] for f in state["files"]))
        mirror_page = os.path.join(self.mirror_simple, normalized, "index.v1_json")
        try:
            with open(mirror_page, "rb") as handle:
                doc = msgspec.json.decode(handle.read())
            for f in doc.get("files", []):
                if f["filename"] not in files:
                    files[f["filename"]] = pages.PageFile(
                        f["filename"], f["url"], f.get("hashes", {}), f.get("size"),
                        f.get("requires-python"), f.get("yanked", False),
                        f.get("core-metadata", False), f.get("upload-time"))
            versions += [v for v in doc.get("versions", []) if v not in versions]
        except FileNotFoundError:
            pass
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError) as exc:
            log.warning("%s: cannot read the mirror's page (%s); serving the private files "
                        "only", mirror_page, exc)
        listed = list(files.values())
        media_type = negotiate.choose(headers.get("accept"), list(_TYPES))
        vary = [("vary", "Accept")]
        if media_type is None:
            return error(406, vary)
        if media_type == negotiate.JSON_V1:
            body = pages.project_json(state["name"], listed, versions, None)
        else:
            body = pages.project_html(state["name"], listed)
        return Response(200, [("content-type", _TYPES[media_type]), *vary], body)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
