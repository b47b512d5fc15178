"""A small Simple-API upstream for tests and the benchmark: real wheels and sdists built
here, served as PyPI serves them (PEP 691 JSON pages with `_last-serial` and the
X-PyPI-Last-Serial header, PEP 658 `.metadata` files, yanked files, the Warehouse JSON
API and an XML-RPC endpoint built with `xmlrpc.client.dumps`), plus a static server with
PEP 691 content negotiation over a mirrored tree (as cas-server or nginx would serve it).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
import xmlrpc.client
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cas_mirror.server.negotiate import choose
from tests.support.http_server import LoggedRequest, Response, TestHTTPServer

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata(name: str, version: str, requires_python: str | None,
              requires_dist: tuple[str, ...] = ()) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: {name} for tests"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {r}" for r in requires_dist)
    return ("\n".join(lines) + "\n\n").encode()


def _filler(size: int, seed: int) -> str:
    """`size` characters that compress like real code and data do (poorly), from `seed`."""
    import random

    return random.Random(seed).randbytes(size // 2 + 1).hex()[:size]


def build_wheel(name: str, version: str, tag: str = "py3-none-any",
                requires_python: str | None = None, payload: int = 2000,
                seed: int = 0, requires_dist: tuple[str, ...] = ()) -> tuple[str, bytes, bytes]:
    """(file name, wheel bytes, METADATA bytes) of a real, installable wheel."""
    dist = re.sub(r"[-_.]+", "_", name)
    filename = f"{dist}-{version}-{tag}.whl"
    metadata = _metadata(name, version, requires_python, tuple(requires_dist))
    info = f"{dist}-{version}.dist-info"
    module = f"{dist.lower()}/__init__.py"
    body = f"VERSION = {version!r}\nDATA = {_filler(payload, seed)!r}\n".encode()
    wheel = (f"Wheel-Version: 1.0\nGenerator: cas-mirror-tests\nRoot-Is-Purelib: true\n"
             f"Tag: {tag}\n").encode()
    entries = {module: body, f"{info}/METADATA": metadata, f"{info}/WHEEL": wheel}
    record = []
    for path, data in entries.items():
        digest = hashlib.sha256(data).digest()
        import base64

        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(data)}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries.items():
            archive.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), data)
    return filename, buffer.getvalue(), metadata


def build_sdist(name: str, version: str, requires_python: str | None = None,
                payload: int = 2000, seed: int = 0,
                requires_dist: tuple[str, ...] = ()) -> tuple[str, bytes]:
    dist = re.sub(r"[-_.]+", "_", name).lower()
    base = f"{dist}-{version}"
    members = {f"{base}/PKG-INFO": _metadata(name, version, requires_python,
                                             tuple(requires_dist)),
               f"{base}/{dist}/__init__.py":
                   f"VERSION = {version!r}\nDATA = {_filler(payload, seed + 1)!r}\n".encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), 1704067200
            archive.addfile(info, io.BytesIO(data))
    return f"{base}.tar.gz", buffer.getvalue()


@dataclass
class UpFile:
    filename: str
    version: str
    relpath: str  # under packages/
    sha256: str
    size: int
    requires_python: str | None = None
    yanked: bool | str = False
    metadata: bytes | None = None
    upload_time: str = "2024-01-01T00:00:00.000000Z"

    @property
    def packagetype(self) -> str:
        return "bdist_wheel" if self.filename.endswith(".whl") else "sdist"


@dataclass
class UpProject:
    name: str
    serial: int
    files: list[UpFile] = field(default_factory=list)


class SimpleUpstream:
    """Projects, files and serials on disk under `root`, served by `serve(server)`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.projects: dict[str, UpProject] = {}
        self.serial = 100
        self.changelog: list[tuple[str, str, int, str, int]] = []
        self.url = ""
        self.xmlrpc_enabled = True

    # ------------------------------------------------------------------ content
    def _bump(self, name: str, version: str, action: str) -> int:
        self.serial += 1
        self.changelog.append((name, version, int(time.time()), action, self.serial))
        return self.serial

    def _store(self, filename: str, data: bytes) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        relpath = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"
        target = self.root / "packages" / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return relpath, digest

    def add_file(self, name: str, filename: str, data: bytes, version: str, *,
                 metadata: bytes | None = None, requires_python: str | None = None,
                 yanked: bool | str = False) -> UpFile:
        relpath, digest = self._store(filename, data)
        if metadata is not None:
            (self.root / "packages" / f"{relpath}.metadata").write_bytes(metadata)
        key = normalize(name)
        project = self.projects.setdefault(key, UpProject(name, 0))
        project.files = [f for f in project.files if f.filename != filename]
        record = UpFile(filename, version, relpath, digest, len(data), requires_python,
                        yanked, metadata)
        project.files.append(record)
        project.serial = self._bump(name, version, f"add file {filename}")
        return record

    def add(self, name: str, version: str, kinds=("wheel", "sdist"),
            tag: str = "py3-none-any", requires_python: str | None = None,
            payload: int = 2000, seed: int = 0, metadata: bool = True,
            requires_dist: tuple[str, ...] = ()) -> list[UpFile]:
        out = []
        for kind in kinds:
            if kind == "wheel":
                filename, data, meta = build_wheel(name, version, tag, requires_python,
                                                   payload, seed, tuple(requires_dist))
                out.append(self.add_file(name, filename, data, version,
                                         metadata=meta if metadata else None,
                                         requires_python=requires_python))
            else:
                filename, data = build_sdist(name, version, requires_python, payload, seed,
                                             tuple(requires_dist))
                out.append(self.add_file(name, filename, data, version,
                                         requires_python=requires_python))
        return out

    def find(self, filename: str) -> tuple[UpProject, UpFile]:
        for project in self.projects.values():
            for f in project.files:
                if f.filename == filename:
                    return project, f
        raise KeyError(filename)

    def yank(self, filename: str, reason: str | bool = True) -> None:
        project, f = self.find(filename)
        f.yanked = reason
        project.serial = self._bump(project.name, f.version, f"yank {filename}")

    def remove_file(self, filename: str) -> None:
        project, f = self.find(filename)
        project.files.remove(f)
        project.serial = self._bump(project.name, f.version, f"remove file {filename}")

    def remove_project(self, name: str) -> None:
        project = self.projects.pop(normalize(name))
        self._bump(project.name, "", "remove project")

    # ------------------------------------------------------------------ documents
    def root_json(self) -> bytes:
        return json.dumps({
            "meta": {"api-version": "1.1", "_last-serial": self.serial},
            "projects": [{"name": p.name, "_last-serial": p.serial}
                         for p in self.projects.values()],
        }).encode()

    def file_entry(self, f: UpFile, base: str = "../../") -> dict:
        entry = {"filename": f.filename, "url": f"{base}packages/{f.relpath}",
                 "hashes": {"sha256": f.sha256}, "size": f.size,
                 "upload-time": f.upload_time, "yanked": f.yanked}
        if f.requires_python:
            entry["requires-python"] = f.requires_python
        if f.metadata is not None:
            entry["core-metadata"] = {"sha256": hashlib.sha256(f.metadata).hexdigest()}
        return entry

    def project_json(self, key: str) -> bytes:
        project = self.projects[key]
        return json.dumps({
            "meta": {"api-version": "1.1", "_last-serial": project.serial},
            "name": key,
            "files": [self.file_entry(f) for f in project.files],
            "versions": sorted({f.version for f in project.files}),
        }).encode()

    def warehouse_json(self, key: str, base_url: str) -> bytes:
        """The Warehouse JSON API document (/pypi/<name>/json), as bandersnatch reads it."""
        project = self.projects[key]
        releases: dict[str, list] = {}
        for f in project.files:
            releases.setdefault(f.version, []).append({
                "filename": f.filename, "url": f"{base_url}/packages/{f.relpath}",
                "digests": {"sha256": f.sha256, "md5": ""}, "size": f.size,
                "packagetype": f.packagetype, "requires_python": f.requires_python,
                "upload_time_iso_8601": f.upload_time, "yanked": bool(f.yanked),
                "yanked_reason": f.yanked if isinstance(f.yanked, str) else None})
        latest = max(releases, default="0")
        return json.dumps({"info": {"name": project.name, "version": latest},
                           "last_serial": project.serial, "releases": releases,
                           "urls": releases.get(latest, [])}).encode()

    # ------------------------------------------------------------------ serving
    def serve(self, server: TestHTTPServer) -> SimpleUpstream:
        self.url = server.url
        server.route("/simple/", self._root)
        server.route("/simple/*", self._page)
        server.route("/pypi", self._xmlrpc)
        server.route("/pypi/*/json", self._warehouse)
        return self

    def _root(self, request: LoggedRequest) -> Response:
        return Response(200, self.root_json(), {"Content-Type": JSON_TYPE,
                                                "X-PyPI-Last-Serial": str(self.serial)})

    def _page(self, request: LoggedRequest) -> Response:
        key = request.path.split("?")[0].strip("/").split("/")[-1]
        if key not in self.projects:
            return Response(404, b"no such project\n")
        return Response(200, self.project_json(key), {
            "Content-Type": JSON_TYPE,
            "X-PyPI-Last-Serial": str(self.projects[key].serial)})

    def _warehouse(self, request: LoggedRequest) -> Response:
        key = normalize(request.path.split("/")[2])
        if key not in self.projects:
            return Response(404, b"no such project\n")
        return Response(200, self.warehouse_json(key, self.url), {
            "Content-Type": "application/json",
            "X-PyPI-Last-Serial": str(self.projects[key].serial)})

    def _xmlrpc(self, request: LoggedRequest) -> Response:
        if request.method != "POST" or not self.xmlrpc_enabled:
            return Response(404 if not self.xmlrpc_enabled else 405, b"no XML-RPC here\n")
        params, method = xmlrpc.client.loads(request.body)
        if method == "list_packages_with_serial":
            result = {p.name: p.serial for p in self.projects.values()}
        elif method == "changelog_since_serial":
            result = [list(row) for row in self.changelog if row[4] > params[0]]
        else:
            fault = xmlrpc.client.Fault(1, f"unknown method {method}")
            return Response(200, xmlrpc.client.dumps(fault).encode(),
                            {"Content-Type": "text/xml"})
        body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        return Response(200, body.encode(), {"Content-Type": "text/xml"})

    # ------------------------------------------------------------------ static copy
    def write_static(self, base_url: str) -> None:
        """The documents as files (simple/index.v1_json, simple/<p>/index.v1_json,
        pypi/<p>/json) so a static server such as nginx can serve this upstream."""
        from cas_index.atomic import write_atomic

        simple = self.root / "simple"
        simple.mkdir(parents=True, exist_ok=True)
        write_atomic(simple / "index.v1_json", self.root_json(), fsync=False)
        for key in self.projects:
            (simple / key).mkdir(exist_ok=True)
            write_atomic(simple / key / "index.v1_json", self.project_json(key), fsync=False)
            (self.root / "pypi" / key).mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / "pypi" / key / "json",
                         self.warehouse_json(key, base_url), fsync=False)


# --------------------------------------------------------------------------- the mirror


def serve_mirror(server: TestHTTPServer, web: Path, prefix: str) -> list[str]:
    """Serve the tree `web` at `prefix` (e.g. /pypi/) the way a static server with PEP 691
    content negotiation does (cas-server's own rules). Returns a list that records each
    content type served."""
    served: list[str] = []
    choices = {JSON_TYPE: "index.v1_json",
               "application/vnd.pypi.simple.v1+html": "index.v1_html",
               "text/html": "index.html"}

    def handler(request: LoggedRequest) -> Response:
        path = request.path.split("?")[0][len(prefix):]
        target = (web / path).resolve()
        if web.resolve() not in (target, *target.parents):
            return Response(403, b"outside the tree\n")
        if target.is_dir():
            available = {t: n for t, n in choices.items() if (target / n).is_file()}
            chosen = choose(request.headers.get("Accept"), list(available))
            if chosen is None:
                return Response(406 if available else 404, b"not acceptable\n")
            served.append(chosen)
            return Response(200, (target / available[chosen]).read_bytes(),
                            {"Content-Type": chosen, "Vary": "Accept"})
        if not target.is_file():
            return Response(404, b"not found\n")
        return Response(200, target.read_bytes(), {"Content-Type": "application/octet-stream"})

    server.route(prefix + "*", handler)
    return served
