"""Serving one file or folder of the mirror tree: what a request maps to and what it gets back.

Owns the mapping from URL path to file (``/<pypi folder>/...`` is ``<root>/<pypi
folder>/web/...``, everything else is ``<root>/...``), the refusals (hidden names, ``..``,
backslashes, NUL, symlinks that lead outside the root or to hidden names, anything inside
a Python virtual environment: a folder holding ``pyvenv.cfg``), content types,
validators (``ETag``, ``Last-Modified``) with conditional and range requests
(conditional.py), PEP 691 negotiation in the PyPI ``simple/`` folders (with
bandersnatch's hash-index layout, ``simple/<first letter>/<name>/``, found for
``simple/<name>/``: `hash_index_segments`), redirects of
folders to their slash form, and HTML listings. No networking: `MirrorTree.respond` turns a
method, a decoded path and the request headers into a `Response`; the server sends it.

Every file is opened once and everything about the answer (size, validators, body) comes
from that descriptor, so a file replaced by rename while it is being served reaches the
client whole, either the old or the new one, never a mix.
"""

from __future__ import annotations

import email.utils
import html
import os
import stat
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from cas_index.shards import SHARDS_DIR, is_shard_file

from . import negotiate
from .conditional import UNSATISFIABLE, if_range_allows, not_modified, parse_range

ALLOWED_METHODS = "GET, HEAD"

# Content types by file name ending; anything else is application/octet-stream (packages,
# .zst, .bz2, wheels, sdists). We do not consult the system's mime.types: it varies between
# machines and maps .bz2 to application/x-bzip2, which clients do not expect here.
_TYPES_BY_SUFFIX = (
    (".v1_json", negotiate.JSON_V1),
    (".v1_html", negotiate.HTML_V1),
    (".json", "application/json"),
    (".html", "text/html; charset=utf-8"),
    (".htm", "text/html; charset=utf-8"),
    (".txt", "text/plain; charset=utf-8"),
    (".xml", "application/xml"),
    (".css", "text/css"),
    (".svg", "image/svg+xml"),
    (".png", "image/png"),
)
OCTET_STREAM = "application/octet-stream"

# The representations of a simple-API folder: media type -> files that hold it, first found
# wins. bandersnatch writes index.html and index.v1_html with the same content, so either
# serves both HTML types.
SIMPLE_VARIANTS = {
    negotiate.JSON_V1: ("index.v1_json",),
    negotiate.HTML_V1: ("index.v1_html", "index.html"),
    negotiate.HTML_LEGACY: ("index.html", "index.v1_html"),
}
SIMPLE_CONTENT_TYPE = {
    negotiate.JSON_V1: negotiate.JSON_V1,
    negotiate.HTML_V1: negotiate.HTML_V1,
    negotiate.HTML_LEGACY: "text/html; charset=utf-8",
}

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
# A FIFO planted in the tree must not block the worker in open(); it is refused after fstat.
_OPEN_FLAGS |= getattr(os, "O_NONBLOCK", 0)
_PROC_FD = "/proc/self/fd/" if os.path.isdir("/proc/self/fd") else None
# What marks a folder as a Python virtual environment (PEP 405): the program's own venv
# belongs outside the served tree, and is never served should it be put inside.
VENV_MARKER = "pyvenv.cfg"


def content_type_for(name: str) -> str:
    if name == "json":  # web/pypi/<project>/json, the PyPI JSON API document
        return "application/json"
    lower = name.lower()
    for suffix, ctype in _TYPES_BY_SUFFIX:
        if lower.endswith(suffix):
            return ctype
    return OCTET_STREAM


@dataclass
class FileBody:
    """`length` bytes of the open descriptor `fd` from `offset`; the sender closes `fd`."""

    fd: int
    offset: int
    length: int


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: FileBody | None = None

    @property
    def length(self) -> int:
        return self.file.length if self.file is not None else len(self.body)

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file.fd)
            self.file = None


_REASONS = {
    301: "Moved Permanently",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    416: "Range Not Satisfiable",
}


def error(status: int, headers: list[tuple[str, str]] | None = None, detail: str = "") -> Response:
    text = f"{status} {_REASONS.get(status, '')}\n{detail}"
    return Response(
        status,
        [("content-type", "text/plain; charset=utf-8"), *(headers or [])],
        text.encode(),
    )


class Refused(Exception):
    """The request names something that is not served: answer with `status` (404 or 403)."""

    def __init__(self, status: int = 404):
        self.status = status


def url_segments(path: str) -> list[str]:
    """The segments of a decoded URL path, or Refused when one of them may not be served.

    Empty segments (``//``) are dropped, as static servers do. A segment that starts with a
    dot covers hidden files and folders as well as ``.`` and ``..``; the path arrives
    percent-decoded exactly once, so ``%2e%2e`` is refused here and ``%252e%252e`` stays the
    literal name ``%2e%2e`` (which the tree does not hold).
    """
    if not path.startswith("/"):
        raise Refused()
    segments = []
    for segment in path.split("/"):
        if not segment:
            continue
        if segment[0] == "." or "\\" in segment or "\x00" in segment:
            raise Refused()
        segments.append(segment)
    return segments


class MirrorTree:
    """The mirror tree as HTTP resources: `respond(method, path, query, headers)`."""

    def __init__(self, root: str | os.PathLike, pypi_folder: str = "pypi"):
        self.root = os.path.realpath(root)
        # What every served real path starts with ("/" itself when the root is "/").
        self._prefix = self.root.rstrip("/") + "/"
        self.pypi_folder = pypi_folder

    # ------------------------------------------------------------------ entry point
    def respond(self, method: str, path: str, query: str, headers: dict[str, str]) -> Response:
        """The response for a request; `headers` have lower-case names, repeats joined."""
        if method not in ("GET", "HEAD"):
            return error(405, [("allow", ALLOWED_METHODS)])
        try:
            segments = url_segments(path)
            if segments and segments[0] == self.pypi_folder:
                base = os.path.join(self.root, self.pypi_folder, "web")
                rest = segments[1:]
                simple = bool(rest) and rest[0] == "simple"
                if simple:
                    rest = hash_index_segments(base, rest)
            else:
                base, rest, simple = self.root, segments, False
            fd, st, real = self._open(os.path.join(base, *rest))
        except Refused as exc:
            return error(exc.status)
        if stat.S_ISREG(st.st_mode):
            name = os.path.basename(real)
            return self._file(fd, st, name, headers, extra=cache_control(segments, name))
        try:
            if not path.endswith("/"):
                location = quote(path) + "/" + (f"?{query}" if query else "")
                return Response(301, [("location", location)])
            if simple:
                response = self._simple_index(fd, headers)
                if response is not None:
                    return response
            try:
                index_fd, index_st, _ = self._open("index.html", dir_fd=fd)
            except Refused:
                return self._listing(fd, real, path, headers)
            if not stat.S_ISREG(index_st.st_mode):
                os.close(index_fd)
                return self._listing(fd, real, path, headers)
            return self._file(index_fd, index_st, "index.html", headers)
        finally:
            os.close(fd)

    def respond_simple(self, method: str, folder: str, headers: dict[str, str]) -> Response:
        """The negotiated simple-API index of `folder` (relative to the root), answered as
        the folders under `/<pypi folder>/simple/` are: for pages served at another URL
        (the private index merged into the mirror's `simple/`, server/private_view.py)."""
        if method not in ("GET", "HEAD"):
            return error(405, [("allow", ALLOWED_METHODS)])
        try:
            fd, st, _ = self._open(os.path.join(self.root, *url_segments("/" + folder)))
        except Refused as exc:
            return error(exc.status)
        try:
            response = self._simple_index(fd, headers) if stat.S_ISDIR(st.st_mode) else None
            return response if response is not None else error(404)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ opening
    def _open(self, path: str, dir_fd: int | None = None) -> tuple[int, os.stat_result, str]:
        """Open `path` (a folder or regular file inside the root) and return (fd, stat, real
        path). The check runs on what was actually opened (/proc/self/fd), so a symlink
        swapped in between a check and the open cannot lead outside the root."""
        try:
            fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
        except PermissionError:
            raise Refused(403) from None
        except (OSError, ValueError):  # missing, not a folder, symlink loop, NUL, too long
            raise Refused(404) from None
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise Refused(404)
            real = self._real_path(fd, path, dir_fd)
            if real != self.root and not self._served(real):
                raise Refused(404)
            if self._in_venv(real, stat.S_ISDIR(st.st_mode)):
                raise Refused(404)
        except BaseException:
            os.close(fd)
            raise
        return fd, st, real

    def _real_path(self, fd: int, path: str, dir_fd: int | None) -> str:
        if _PROC_FD is not None:
            real = os.readlink(f"{_PROC_FD}{fd}")
            # A file replaced by rename after we opened it reads "<path> (deleted)".
            return real.removesuffix(" (deleted)")
        if dir_fd is not None:  # pragma: no cover - systems without /proc
            path = os.path.join(os.readlink(f"/dev/fd/{dir_fd}"), path)
        return os.path.realpath(path)  # pragma: no cover

    # ------------------------------------------------------------------ files
    def _file(self, fd: int, st: os.stat_result, name: str, headers: dict[str, str],
              content_type: str | None = None, extra: list[tuple[str, str]] | None = None,
              ) -> Response:
        """Answer with the open file `fd` (taking ownership of it)."""
        size = st.st_size
        etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        out = [
            ("content-type", content_type or content_type_for(name)),
            ("etag", etag),
            ("last-modified", last_modified),
            ("accept-ranges", "bytes"),
            *(extra or ()),
        ]
        if not_modified(headers, etag, st.st_mtime):
            os.close(fd)
            return Response(304, out[1:])
        byte_range = headers.get("range")
        if byte_range is not None and if_range_allows(headers.get("if-range"), etag,
                                                      last_modified):
            wanted = parse_range(byte_range, size)
            if wanted == UNSATISFIABLE:
                os.close(fd)
                return error(416, [("content-range", f"bytes */{size}"), *out[1:]])
            if wanted is not None:
                start, end = wanted
                out.append(("content-range", f"bytes {start}-{end}/{size}"))
                return Response(206, out, file=FileBody(fd, start, end - start + 1))
        return Response(200, out, file=FileBody(fd, 0, size))

    # ------------------------------------------------------------------ PEP 691
    def _simple_index(self, dir_fd: int, headers: dict[str, str]) -> Response | None:
        """The negotiated index of a simple-API folder; None when it holds no index file."""
        present = present_variants(lambda name: _exists(name, dir_fd))
        if not present:
            return None
        vary = [("vary", "Accept")]
        media_type = negotiate.choose(headers.get("accept"), list(present))
        if media_type is None:
            return error(406, vary, not_acceptable(present))
        try:
            fd, st, _ = self._open(present[media_type], dir_fd=dir_fd)
        except Refused as exc:
            return error(exc.status, vary)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return error(404, vary)
        return self._file(fd, st, present[media_type], headers,
                          content_type=SIMPLE_CONTENT_TYPE[media_type], extra=vary)

    # ------------------------------------------------------------------ listings
    def _listing(self, dir_fd: int, real: str, path: str, headers: dict[str, str]) -> Response:
        folders, files = [], []
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    if entry.is_symlink() and not self._inside(os.path.join(real, name)):
                        continue
                    info = entry.stat()
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if not _exists(VENV_MARKER, os.path.join(real, name)):
                        folders.append((name + "/", info))
                elif stat.S_ISREG(info.st_mode):
                    files.append((name, info))
        title = html.escape(path)
        rows = [] if path == "/" else ['<a href="../">../</a>']
        for name, info in sorted(folders) + sorted(files):
            shown = html.escape(name)
            modified = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.st_mtime))
            size = "-" if name.endswith("/") else str(info.st_size)
            pad = " " * max(1, 60 - len(name))
            rows.append(f'<a href="{html.escape(quote(name))}">{shown}</a>{pad}'
                        f"{modified} {size:>12}")
        body = (
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
            f"<title>Index of {title}</title></head>\n"
            f"<body>\n<h1>Index of {title}</h1>\n<hr>\n<pre>\n"
            + "\n".join(rows)
            + "\n</pre>\n<hr>\n</body>\n</html>\n"
        ).encode("utf-8", "surrogateescape")
        return Response(200, [("content-type", "text/html; charset=utf-8")], body)

    def _in_venv(self, real: str, is_dir: bool) -> bool:
        """Whether `real` (a served real path) is a virtual environment or inside one: a
        folder between the root (excluded) and it holds pyvenv.cfg."""
        rest = real[len(self._prefix):] if real != self.root else ""
        folders = rest.split("/") if rest else []
        if not is_dir:
            folders = folders[:-1]
        folder = self.root
        for name in folders:
            folder = os.path.join(folder, name)
            if _exists(VENV_MARKER, folder):
                return True
        return False

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return self._served(real) and not self._in_venv(real, os.path.isdir(real))

    def _served(self, real: str) -> bool:
        """A real path below the root with no hidden name after it."""
        return real.startswith(self._prefix) and "/." not in real[len(self._prefix) - 1:]


def present_variants(exists) -> dict[str, str]:
    """Media type -> the file that holds it, for the index variants a simple-API folder
    has (`exists(name)`: whether the folder holds that file; asked once per name)."""
    seen: dict[str, bool] = {}
    present = {}
    for media_type, names in SIMPLE_VARIANTS.items():
        for name in names:
            if name not in seen:
                seen[name] = exists(name)
            if seen[name]:
                present[media_type] = name
                break
    return present


def not_acceptable(present: dict[str, str]) -> str:
    """The body of a 406 for a simple-API folder holding the variants `present`."""
    return f"this index is available as: {', '.join(present)}\n"


# A CEP-16 shard is named by the sha256 of its bytes: it never changes, so clients and
# CDNs may keep it for a year without revalidating (everything else is revalidated).
IMMUTABLE = [("cache-control", "public, max-age=31536000, immutable")]


def cache_control(segments: list[str], name: str) -> list[tuple[str, str]] | None:
    """The caching headers of a served file: immutable for shards (`.../shards/<sha256>`)."""
    if len(segments) >= 2 and segments[-2] == SHARDS_DIR and is_shard_file(name):
        return IMMUTABLE
    return None


def hash_index_segments(web: str, rest: list[str]) -> list[str]:
    """bandersnatch's hash-index layout: `simple/<name>/` is served from
    `simple/<first letter>/<name>/` when the tree holds the project there and not in the
    plain layout. `rest` starts with "simple"; anything else is returned unchanged."""
    if len(rest) != 2:
        return rest
    name = rest[1]
    flat = os.path.join(web, "simple", name)
    if any(_exists(index, flat) for index in _INDEX_FILES):
        return rest
    hashed = ["simple", name[0], name]
    if any(_exists(index, os.path.join(web, *hashed)) for index in _INDEX_FILES):
        return hashed
    return rest


_INDEX_FILES = ("index.v1_json", "index.v1_html", "index.html")


def _exists(name: str, folder: int | str) -> bool:
    """Whether `folder` (a descriptor or a path) holds a regular file `name`."""
    try:
        if isinstance(folder, int):
            return stat.S_ISREG(os.stat(name, dir_fd=folder).st_mode)
        return stat.S_ISREG(os.stat(os.path.join(folder, name)).st_mode)
    except OSError:
        return False
