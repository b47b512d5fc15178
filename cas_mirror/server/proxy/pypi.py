"""The proxied PyPI index: `/<path>/simple/`, `/<path>/simple/<project>/` and the files
at `/<path>/files/<project>/<filename>` (and their PEP 658 `.metadata`).

Upstream is asked for PEP 691 JSON first and HTML otherwise; every answer, in either
representation, is read and checked by the sync's own parser
(`pypi.client.parse_project_page`, `parse_listing`: names, URLs, hashes, yanked,
requires-python, upload-time) and filtered by the sync's own filters (`pypi.filters`),
then kept in the metadata cache as `.page.json` and rendered for each client in the
representation it negotiates (`server.negotiate`, `pypi.pages`), with file links
rewritten to this proxy. A file is fetched through the `Store` and kept only when it
matches the page's digest (sha256, else another the page gives) and its size when the
page lists one. Files the filters drop are refused with 403.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from cas_index.atomic import write_atomic

from ...pypi import pages
from ...pypi.client import ACCEPT, UpstreamError, parse_listing, parse_project_page
from ...pypi.filters import FilterSpec, project_decision
from ...pypi.model import is_valid_name, normalize
from ...pypi.selection import select_files
from .. import negotiate
from ..app import Handled, send
from ..files import SIMPLE_VARIANTS, Response
from . import metadata
from .settings import ProxySettings
from .stats import Stats
from .store import Store, Wanted, answer, error_response
from .upstream import Upstream, UpstreamFailure

log = logging.getLogger(__name__)

PAGE_FILE = ".page.json"
ROOT_FILE = ".root.json"
_CONTENT_TYPES = {negotiate.JSON_V1: negotiate.JSON_V1, negotiate.HTML_V1: negotiate.HTML_V1,
                  negotiate.HTML_LEGACY: "text/html; charset=utf-8"}


def build_page(data: bytes, headers: dict[str, str], url: str, project: str,
               spec: FilterSpec) -> dict:
    """Upstream's page for `project`, checked and filtered, as the cached document."""
    page = parse_project_page(data, url, project, headers)
    selection = select_files(spec, project, page.files)
    kept_versions = {f.version for f in selection.kept}
    return {"name": project, "serial": page.serial,
            "versions": [v for v in page.versions if v in kept_versions],
            "files": [f._asdict() for f in selection.kept], "dropped": selection.dropped,
            "refused": dict(page.refused)}


def render_page(page: dict, media_type: str) -> bytes:
    project = page["name"]
    files = [pages.PageFile(f["filename"], f"../../files/{project}/{f['filename']}",
                            f["hashes"], f["size"], f["requires_python"], f["yanked"],
                            f["core_metadata"], f["upload_time"]) for f in page["files"]]
    if media_type == negotiate.JSON_V1:
        return pages.project_json(project, files, page["versions"], page["serial"])
    return pages.project_html(project, files)


def digests_of(hashes: dict[str, str]) -> dict[str, str]:
    """The digest to verify a file with: sha256 when the page gives it, else the first
    other one hashlib knows."""
    if "sha256" in hashes:
        return {"sha256": hashes["sha256"]}
    for name in sorted(hashes):
        if name in hashlib.algorithms_available:
            return {name: hashes[name]}
    return {}


class PypiProxy:
    """The `Handler` of the proxied index."""

    def __init__(self, settings: ProxySettings, upstream: Upstream, store: Store,
                 stats: Stats):
        assert settings.pypi is not None
        self.settings = settings
        self.index = settings.pypi
        self.prefix = f"/{self.index.path}/"
        self.spec = FilterSpec.from_settings(self.index.filters)
        self.upstream = upstream
        self.store = store
        self.stats = stats
        self.meta_root = os.path.join(settings.cache_dir, metadata.META_FOLDER,
                                      *self.index.path.split("/"))
        self._pages: dict[str, tuple[int, dict]] = {}

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        path = scope.path
        if not (path.startswith(self.prefix) or path == self.prefix[:-1]):
            return None
        method = scope.method
        if method not in ("GET", "HEAD"):
            return await answer(method, protocol, error_response(405, "GET or HEAD only"))
        segments = [s for s in path[len(self.prefix):].split("/") if s]
        if segments == ["simple"]:
            return await self._root(method, path, headers, protocol)
        if len(segments) == 2 and segments[0] == "simple":
            return await self._project(method, path, segments[1], headers, protocol)
        if len(segments) == 3 and segments[0] == "files":
            return await self._file(method, path, segments[1], segments[2], headers, protocol)
        return await answer(method, protocol, error_response(
            404, f"not found; pip's index URL is {self.prefix}simple/"))

    # ------------------------------------------------------------------ pages
    async def _ensure(self, folder: str, url: str, build) -> metadata.Freshness:
        return await metadata.refresh(
            self.upstream, folder, self.settings.metadata_ttl, url, build, (UpstreamError,),
            prefix=f"{url}: ", headers={"Accept": ACCEPT},
            on_stale=lambda: self.stats.add("stale"))

    async def _root(self, method, path, headers, protocol) -> Handled:
        if not path.endswith("/"):
            return await answer(method, protocol, Response(301, [("location", path + "/")]))
        folder = os.path.join(self.meta_root, "simple")
        url = self.index.upstream

        def build(document) -> None:
            listing = parse_listing(document.data, url, dict(document.headers))
            names = [p.name for p in listing.projects.values()]
            kept = sorted({normalize(n): n for n in names
                           if project_decision(self.spec, normalize(n)).kept}.items())
            os.makedirs(folder, exist_ok=True)
            write_atomic(os.path.join(folder, ROOT_FILE), json.dumps(kept).encode())

        try:
            freshness = await self._ensure(folder, url, build)
            with open(os.path.join(folder, ROOT_FILE), "rb") as f:
                projects = json.loads(f.read())
        except UpstreamFailure as exc:
            return await answer(method, protocol, error_response(exc.status, str(exc)), "MISS")
        media_type = negotiate.choose(headers.get("accept"), list(SIMPLE_VARIANTS))
        if media_type is None:
            return await answer(method, protocol, error_response(406, "not acceptable"))
        body = pages.root_json([(display, None) for _, display in projects], None) \
            if media_type == negotiate.JSON_V1 else pages.root_html(projects)
        return await self._page_response(method, protocol, media_type, body, freshness)

    async def _page(self, project: str) -> tuple[dict, metadata.Freshness]:
        folder = os.path.join(self.meta_root, "simple", project)
        url = f"{self.index.upstream}{project}/"

        def build(document) -> None:
            page = build_page(document.data, dict(document.headers), url, project, self.spec)
            os.makedirs(folder, exist_ok=True)
            write_atomic(os.path.join(folder, PAGE_FILE), json.dumps(page).encode())

        freshness = await self._ensure(folder, url, build)
        page_path = os.path.join(folder, PAGE_FILE)
        stamp = os.stat(page_path).st_mtime_ns
        cached = self._pages.get(project)
        if cached is None or cached[0] != stamp:
            with open(page_path, "rb") as f:
                cached = (stamp, json.loads(f.read()))
            self._pages[project] = cached
        return cached[1], freshness

    async def _project(self, method, path, name, headers, protocol) -> Handled:
        project = normalize(name)
        if not is_valid_name(name):
            return await answer(method, protocol, error_response(404, "not a project name"))
        if project != name or not path.endswith("/"):
            location = f"{self.prefix}simple/{project}/"
            return await answer(method, protocol, Response(301, [("location", location)]))
        decision = project_decision(self.spec, project)
        if not decision.kept:
            self.stats.add("refused")
            return await answer(method, protocol, error_response(
                404, f"project {project} is not served by this proxy ({decision.reason})"))
        try:
            page, freshness = await self._page(project)
        except UpstreamFailure as exc:
            return await answer(method, protocol, error_response(exc.status, str(exc)), "MISS")
        media_type = negotiate.choose(headers.get("accept"), list(SIMPLE_VARIANTS))
        if media_type is None:
            return await answer(method, protocol, error_response(406, "not acceptable"))
        return await self._page_response(method, protocol, media_type,
                                         render_page(page, media_type), freshness)

    async def _page_response(self, method, protocol, media_type, body: bytes,
                             freshness: metadata.Freshness) -> Handled:
        if freshness.note == "HIT":
            self.stats.add("hits")
        response = Response(200, [("content-type", _CONTENT_TYPES[media_type]),
                                  ("vary", "Accept"), *freshness.headers()], body)
        return Handled(200, await send(method, response, protocol), freshness.note)

    # ------------------------------------------------------------------ files
    async def _file(self, method, path, project, filename, headers, protocol) -> Handled:
        if project != normalize(project) or not project_decision(self.spec, project).kept:
            return await answer(method, protocol, error_response(404, "not found"))
        try:
            page, _ = await self._page(project)
        except UpstreamFailure as exc:
            return await answer(method, protocol, error_response(exc.status, str(exc)), "MISS")
        wanted = self._wanted(page, filename)
        if wanted is None:
            base = filename.removesuffix(".metadata")
            if base in page["dropped"]:
                self.stats.add("refused")
                return await answer(method, protocol, error_response(
                    403, f"{base} is not served by this proxy ({page['dropped'][base]})"))
            return await answer(method, protocol, error_response(
                404, f"{filename} is not on {project}'s page"))
        return await self.store.serve(method, path, wanted, headers, protocol)

    @staticmethod
    def _wanted(page: dict, filename: str) -> Wanted | None:
        files = {f["filename"]: f for f in page["files"]}
        f = files.get(filename)
        if f is not None:
            return Wanted(f["url"], f["size"], digests_of(f["hashes"]))
        base = files.get(filename.removesuffix(".metadata"))
        if filename.endswith(".metadata") and base is not None and base["core_metadata"]:
            core = base["core_metadata"]
            return Wanted(base["url"] + ".metadata", None,
                          digests_of(core) if isinstance(core, dict) else {})
        return None
