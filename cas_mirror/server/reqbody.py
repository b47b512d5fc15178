"""Request bodies of uploads: streamed to a hidden temporary file, never held in memory,
under a size limit; and the `multipart/form-data` of the legacy PyPI upload API, parsed
from that file.

A body whose Content-Length passes the limit is refused (413) before a byte of it is read;
one without a length is read until it passes the limit, then refused. A body that ends
before its Content-Length (the client went away) is refused (400) and its file removed.
The multipart parser maps the file and finds boundaries with `mmap.find`: small fields
come back as text, the file part as a byte range of the same file.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cas_index.atomic import write_all

from .auth import Refusal

MAX_FIELD = 1 << 20  # bytes of one text field, and of all of them together (x4)
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def declared_length(headers: dict[str, str], limit: int) -> int | None:
    """The Content-Length, checked against `limit` (413 before reading)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise Refusal(400, f"Content-Length {raw!r} is not a number")
    length = int(raw)
    if length > limit:
        raise Refusal(413, f"the upload is {length} bytes; this server takes at most "
                      f"{limit} bytes (upload_max_size)")
    return length


async def receive(protocol, headers: dict[str, str], limit: int, path: Path) -> int:
    """Stream the body into the new file `path`; return its size. The file is removed when
    the body is refused."""
    length = declared_length(headers, limit)
    got = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            async for chunk in protocol:
                got += len(chunk)
                if got > limit:
                    raise Refusal(413, f"the upload passed {limit} bytes, the most this "
                                  "server takes (upload_max_size)")
                write_all(fd, chunk)
        except (Refusal, OSError):  # OSError: writing failed (a full disk), not the client
            raise
        except Exception as exc:  # noqa: BLE001 - granian's errors when the client goes away
            raise Refusal(400, f"the upload was cut off after {got} bytes ({exc})") from None
        if length is not None and got != length:
            raise Refusal(400, f"the upload was cut off: {got} of {length} bytes arrived")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return got


@dataclass(frozen=True)
class FilePart:
    filename: str
    offset: int
    length: int


@dataclass
class Form:
    fields: dict[str, list[str]]
    files: dict[str, FilePart]

    def one(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


def boundary_of(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise Refusal(400, "expected a multipart/form-data body (the legacy upload API "
                      "twine speaks)")
    params = _params(content_type)
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise Refusal(400, "multipart/form-data without a usable boundary")
    return boundary.encode("latin-1", "replace")


def _params(header: str) -> dict[str, str]:
    out = {}
    for name, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[name.lower()] = value
    return out


def parse_form(path: Path, boundary: bytes) -> Form:
    """The fields and file parts of the multipart body in `path`."""
    size = path.stat().st_size
    if size == 0:
        raise Refusal(400, "empty form")
    fields: dict[str, list[str]] = {}
    files: dict[str, FilePart] = {}
    text_total = 0
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                               access=mmap.ACCESS_READ) as data:
        delimiter = b"--" + boundary
        if data[:len(delimiter)] != delimiter:
            raise Refusal(400, "malformed multipart body (it does not start with its "
                          "boundary)")
        separator = b"\r\n" + delimiter
        position = len(delimiter)
        while True:
            if data[position:position + 2] == b"--":
                return Form(fields, files)
            if data[position:position + 2] != b"\r\n":
                raise Refusal(400, "malformed multipart body (bad boundary line)")
            head_end = data.find(b"\r\n\r\n", position + 2, position + 2 + 16384)
            if head_end < 0:
                raise Refusal(400, "malformed multipart body (part headers too long or "
                              "unterminated)")
            part_headers = _part_headers(data[position + 2:head_end])
            body_start = head_end + 4
            body_end = data.find(separator, body_start)
            if body_end < 0:
                raise Refusal(400, "malformed multipart body (a part has no closing "
                              "boundary: the upload is incomplete)")
            disposition = _params(";" + part_headers.get("content-disposition", "")
                                  .partition(";")[2])
            name = disposition.get("name")
            if name is None:
                raise Refusal(400, "malformed multipart body (a part has no name)")
            if "filename" in disposition:
                if name in files:
                    raise Refusal(400, f"form field {name!r} holds more than one file")
                files[name] = FilePart(disposition["filename"], body_start,
                                       body_end - body_start)
            else:
                length = body_end - body_start
                text_total += length
                if length > MAX_FIELD or text_total > 4 * MAX_FIELD:
                    raise Refusal(400, f"form field {name!r} is too long")
                value = data[body_start:body_end].decode("utf-8", "replace")
                fields.setdefault(name, []).append(value)
            position = body_end + len(separator)
            if position > size:
                raise Refusal(400, "malformed multipart body")


def _part_headers(raw: bytes) -> dict[str, str]:
    out = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def copy_range(source: Path, offset: int, length: int, target: Path) -> None:
    """Copy `length` bytes of `source` from `offset` into the new file `target` (fsynced)."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        os.fchmod(dst.fileno(), 0o644)
        src.seek(offset)
        left = length
        while left > 0:
            data = src.read(min(left, 1 << 20))
            if not data:
                raise Refusal(400, "malformed multipart body (the file part is short)")
            dst.write(data)
            left -= len(data)
        dst.flush()
        os.fsync(dst.fileno())
