"""cas-server with `--root s3://bucket/prefix`: the mirror tree read from a bucket.

Owns the `Handler` that answers every request when the root is a bucket, with the same
URL mapping and answers as `files.MirrorTree` gives a folder: ``/<pypi folder>/...`` is
``<prefix>/<pypi folder>/web/...``; hidden names and ``..`` refused (`files.url_segments`);
content types, shard caching headers; ETag (the object's own) and Last-Modified with 304,
single ``bytes=`` ranges (206/416) and If-Range (conditional.py); PEP 691 negotiation in
``simple/`` folders (`negotiate.choose` over `files.SIMPLE_VARIANTS`); folders redirected
to their slash form, their index.html or a listing.

Bodies come from one GET each, whose validators are the ones sent, so an object replaced
while it is served reaches the client whole, old or new. Bodies up to
`app.STREAM_THRESHOLD` are sent in one piece, larger ones streamed chunk by chunk (a
worker never holds a whole large package). A failing bucket answers 502 with one line in
the server's log.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import logging
import multiprocessing
import os
import sys
import time
from urllib.parse import quote

from ..storage import (
    Body,
    ObjectInfo,
    S3Settings,
    Storage,
    StorageError,
    join_key,
    open_storage,
)
from . import negotiate
from .app import CHUNK_SIZE, STREAM_THRESHOLD, Handled
from .conditional import UNSATISFIABLE, if_range_allows, not_modified, parse_range
from .files import (
    ALLOWED_METHODS,
    SIMPLE_CONTENT_TYPE,
    SIMPLE_VARIANTS,
    Refused,
    cache_control,
    content_type_for,
    error,
    not_acceptable,
    present_variants,
    url_segments,
)

log = logging.getLogger(__name__)

ENV_S3_SETTINGS = "CAS_SERVER_S3_SETTINGS"
# An object replaced between our HEAD and our ranged GET: read it again, this many times.
_RANGE_ATTEMPTS = 3


def bucket_handler(root: str, pypi_folder: str) -> BucketHandler:
    """The handler a worker runs for the bucket `root` (settings from the environment the
    `cas-server` command prepared)."""
    text = os.environ.get(ENV_S3_SETTINGS)
    settings = S3Settings.from_json(text) if text else S3Settings()
    return BucketHandler(open_storage(root, settings, "--root"), pypi_folder)


class BucketHandler:
    """Answers every request from `storage` (see the module docstring)."""

    def __init__(self, storage: Storage, pypi_folder: str = "pypi"):
        self.storage = storage
        self.pypi_folder = pypi_folder

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled:
        method = scope.method
        if method not in ("GET", "HEAD"):
            return _send_error(protocol, method, 405, [("allow", ALLOWED_METHODS)])
        try:
            return await self._respond(method, scope.path, scope.query_string, headers,
                                       protocol)
        except Refused as exc:
            return _send_error(protocol, method, exc.status)
        except StorageError as exc:
            print(f"cas-server: {exc}", file=sys.stderr, flush=True)
            return _send_error(protocol, method, 502)

    async def _respond(self, method, path, query, headers, protocol) -> Handled:
        segments = url_segments(path)
        if segments and segments[0] == self.pypi_folder:
            key = join_key(self.pypi_folder, "web", *segments[1:])
            simple = len(segments) > 1 and segments[1] == "simple"
        else:
            key, simple = join_key(*segments), False
        if path.endswith("/") or not key:
            return await self._folder(method, path, key, simple, headers, protocol)
        extra = cache_control(segments, segments[-1])
        handled = await self._object(method, key, headers, protocol, extra=extra)
        if handled is not None:
            return handled
        if await self._is_folder(key):
            location = quote(path) + "/" + (f"?{query}" if query else "")
            protocol.response_empty(301, [("location", location)])
            return Handled(301, 0)
        return _send_error(protocol, method, 404)

    # ------------------------------------------------------------------ objects
    async def _object(self, method, key, headers, protocol, content_type=None,
                      extra=None) -> Handled | None:
        """Send the object `key`; None when there is none."""
        conditional = "if-none-match" in headers or "if-modified-since" in headers
        byte_range = headers.get("range")
        if method == "HEAD" or conditional or byte_range is not None:
            for _ in range(_RANGE_ATTEMPTS):
                info = await _run(self.storage.head, key)
                if info is None:
                    return None
                out = _validators(info, content_type or content_type_for(key), extra)
                if not_modified(headers, info.etag, info.modified):
                    protocol.response_empty(304, out[1:])
                    return Handled(304, 0)
                wanted = None
                if byte_range is not None and if_range_allows(
                        headers.get("if-range"), info.etag, out[2][1]):
                    wanted = parse_range(byte_range, info.size)
                if wanted == UNSATISFIABLE:
                    return _send_error(protocol, method, 416, [
                        ("content-range", f"bytes */{info.size}"), *out[1:]])
                if method == "HEAD":
                    status, length = 200, info.size
                    if wanted is not None:
                        status, length = 206, wanted[1] - wanted[0] + 1
                        out.append(("content-range",
                                    f"bytes {wanted[0]}-{wanted[1]}/{info.size}"))
                    protocol.response_empty(status, [*out, ("content-length", str(length))])
                    return Handled(status, 0)
                body = await (self.storage.get_async(key, *wanted) if wanted is not None
                              else self.storage.get_async(key))
                if body is None:
                    return None
                if body.info.etag != info.etag:  # replaced since the HEAD: decide again
                    await body.chunks.aclose()
                    continue
                if wanted is None:
                    return await _send_body(protocol, 200, out, body)
                out.append(("content-range", f"bytes {wanted[0]}-{wanted[1]}/{info.size}"))
                return await _send_body(protocol, 206, out, body)
            return _send_error(protocol, method, 503)
        body = await self.storage.get_async(key)
        if body is None:
            return None
        out = _validators(body.info, content_type or content_type_for(key), extra)
        return await _send_body(protocol, 200, out, body)

    # ------------------------------------------------------------------ folders
    async def _is_folder(self, key: str) -> bool:
        return await _run(self.storage.has_any, key + "/")

    async def _folder(self, method, path, key, simple, headers, protocol) -> Handled:
        if simple:
            handled = await self._simple_index(method, key, headers, protocol)
            if handled is not None:
                return handled
        handled = await self._object(method, join_key(key, "index.html"), headers, protocol)
        if handled is not None:
            return handled
        folder = await _run(self.storage.list_folder, key + "/" if key else "")
        if key and not (folder.folders or folder.objects):
            return _send_error(protocol, method, 404)
        page = _listing(path, folder.folders, folder.objects)
        out = [("content-type", "text/html; charset=utf-8")]
        if method == "HEAD":
            protocol.response_empty(200, [*out, ("content-length", str(len(page)))])
            return Handled(200, 0)
        protocol.response_bytes(200, out, page)
        return Handled(200, len(page))

    async def _simple_index(self, method, key, headers, protocol) -> Handled | None:
        names = sorted({n for variant in SIMPLE_VARIANTS.values() for n in variant})
        found = await asyncio.gather(*(_run(self.storage.head, join_key(key, n))
                                       for n in names))
        exists = {name for name, info in zip(names, found, strict=True) if info is not None}
        present = present_variants(exists.__contains__)
        if not present:
            return None
        vary = [("vary", "Accept")]
        media_type = negotiate.choose(headers.get("accept"), list(present))
        if media_type is None:
            return _send_error(protocol, method, 406, vary, not_acceptable(present))
        handled = await self._object(method, join_key(key, present[media_type]), headers,
                                     protocol, content_type=SIMPLE_CONTENT_TYPE[media_type],
                                     extra=vary)
        return handled if handled is not None else _send_error(protocol, method, 404, vary)


def _validators(info: ObjectInfo, content_type: str, extra) -> list[tuple[str, str]]:
    """content-type, etag, last-modified (in that order), accept-ranges and `extra`."""
    return [
        ("content-type", content_type),
        ("etag", info.etag),
        ("last-modified", email.utils.formatdate(info.modified, usegmt=True)),
        ("accept-ranges", "bytes"),
        *(extra or ()),
    ]


async def _send_body(protocol, status: int, headers, body: Body) -> Handled:
    if body.length <= STREAM_THRESHOLD:
        data = b"".join([chunk async for chunk in body.chunks])
        protocol.response_bytes(status, headers, data)
        return Handled(status, len(data))
    transport = protocol.response_stream(status, [*headers,
                                                  ("content-length", str(body.length))])
    sent = 0
    try:
        async for chunk in body.chunks:
            for start in range(0, len(chunk), CHUNK_SIZE):
                await transport.send_bytes(chunk[start:start + CHUNK_SIZE])
            sent += len(chunk)
    except RuntimeError:  # the client went away (granian's RSGIProtocolClosed)
        pass
    except StorageError as exc:  # the bucket failed mid-body: the client sees a short body
        print(f"cas-server: {exc}", file=sys.stderr, flush=True)
    finally:
        await body.chunks.aclose()
    return Handled(status, sent)


def _send_error(protocol, method: str, status: int, headers=None, detail: str = "") -> Handled:
    response = error(status, headers, detail)
    if method == "HEAD":
        protocol.response_empty(status, [*response.headers,
                                         ("content-length", str(len(response.body)))])
        return Handled(status, 0)
    protocol.response_bytes(status, response.headers, response.body)
    return Handled(status, len(response.body))


def _listing(path: str, folders: list[str], objects: list[ObjectInfo]) -> bytes:
    """The HTML listing of a folder, in the layout of the folder listings (files.py)."""
    title = html.escape(path)
    rows = [] if path == "/" else ['<a href="../">../</a>']
    entries = [(f + "/", None) for f in folders if not f.startswith(".")]
    entries += [(o.key.rsplit("/", 1)[-1], o) for o in objects]
    for name, info in entries:
        if name.startswith("."):
            continue
        modified = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.modified)) if info else ""
        size = "-" if info is None else str(info.size)
        pad = " " * max(1, 60 - len(name))
        rows.append(f'<a href="{html.escape(quote(name))}">{html.escape(name)}</a>{pad}'
                    f"{modified:16} {size:>12}")
    return (
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
        f"<title>Index of {title}</title></head>\n"
        f"<body>\n<h1>Index of {title}</h1>\n<hr>\n<pre>\n"
        + "\n".join(rows)
        + "\n</pre>\n<hr>\n</body>\n</html>\n"
    ).encode("utf-8", "surrogateescape")


async def _run(function, *args):
    """A blocking storage call (HEAD, LIST) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def prepare_bucket_root(root: str, config, host: str, port: int, workers: int,
                        quiet: bool) -> str:
    """Check that the bucket `root` can be read with the configured settings (one clear
    line, exit 2, when not), hand the settings to the worker processes through the
    environment, and return the line announcing what is served where."""
    from concurrent.futures import ProcessPoolExecutor

    from .app import ENV_ACCESS_LOG, ENV_PYPI_FOLDER, ENV_ROOT

    settings = S3Settings.from_config(config)
    pypi_folder = str(config.pypi.get("user", "pypi"))
    # granian forks its workers from this process, and obstore's I/O runtime does not
    # survive a fork: the check runs in a spawned process so this one never starts it.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        described, has_pypi = pool.submit(_probe, root, settings, pypi_folder).result()
    os.environ[ENV_ROOT] = root
    os.environ[ENV_PYPI_FOLDER] = pypi_folder
    os.environ[ENV_ACCESS_LOG] = "0" if quiet else "1"
    os.environ[ENV_S3_SETTINGS] = settings.to_json()
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    pip = f" (pip index: {url}/{pypi_folder}/simple/)" if has_pypi else ""
    return (f"cas-server: serving {described} at {url}/ with {workers} worker"
            f"{'s' if workers != 1 else ''}{pip}; Ctrl-C stops")


def _probe(root: str, settings: S3Settings, pypi_folder: str) -> tuple[str, bool]:
    """(how to name the bucket, whether it holds a PyPI tree); StorageAccessError when it
    cannot be read."""
    storage = open_storage(root, settings, "--root")
    storage.check_access()
    simple = storage.list_folder(join_key(pypi_folder, "web", "simple") + "/")
    return storage.describe(), bool(simple.folders or simple.objects)
