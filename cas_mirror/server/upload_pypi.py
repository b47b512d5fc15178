"""`POST /<pypi folder>/legacy/`: the legacy upload API twine speaks, into the private index.

The request is checked in the order that reads the least: the token (401/403) and the
declared size (413) before the body; then the body is streamed to `.incoming/` (413 once it
passes the limit, 400 when it is cut off), parsed as multipart/form-data, and its file part
checked against the form: `:action=file_upload`, `name` and `version` agree with the file
name, every digest the form sends (`sha256_digest`, `md5_digest`, `blake2_256_digest`)
matches, and the file is a real wheel or sdist of that project (pypi_archive.py). Then,
under the private index's lock, it is published (private_index.py): 409 when the file name
exists already. Every refusal is one line of text; nothing half-written becomes visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from packaging.utils import canonicalize_name

from cas_index.errors import LockHeldError

from ..errors import is_disk_full, os_problem
from . import audit
from .app import Handled
from .auth import Refusal, authorize, client_address, reply
from .private_index import PrivateIndex
from .pypi_archive import check_filename, inspect, same_version
from .reqbody import Form, boundary_of, copy_range, declared_length, parse_form, receive
from .tokens import Token, TokenStore

log = logging.getLogger(__name__)

SCOPE = "pypi:upload"
# form field -> hashlib constructor for the digests twine sends
DIGESTS = {
    "sha256_digest": hashlib.sha256,
    "md5_digest": hashlib.md5,
    "blake2_256_digest": lambda: hashlib.blake2b(digest_size=32),
}


class PypiUploadHandler:
    """Answers `/<pypi folder>/legacy/`."""

    def __init__(self, pypi_folder: str, index: PrivateIndex, store: TokenStore,
                 state_dir: Path, limit: int):
        self.path = f"/{pypi_folder}/legacy"
        self.index, self.store, self.state_dir, self.limit = index, store, state_dir, limit

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        if scope.path.rstrip("/") != self.path:
            return None
        if scope.method != "POST":
            return reply(protocol, 405, "the upload API takes POST (twine upload "
                         f"--repository-url http://HOST:PORT{self.path}/)", (("allow", "POST"),))
        client = client_address(scope)
        try:
            token = authorize(self.store, headers, SCOPE)
            boundary = boundary_of(headers.get("content-type"))
            declared_length(headers, self.limit)
            self.index.incoming.mkdir(parents=True, exist_ok=True)
            body = self.index.incoming / f"body-{secrets.token_hex(8)}"
            try:
                await receive(protocol, headers, self.limit, body)
                loop = asyncio.get_running_loop()
                message = await loop.run_in_executor(None, self._publish, body, boundary,
                                                     token, client)
            finally:
                body.unlink(missing_ok=True)
        except Refusal as refusal:
            log.info("upload refused (%d): %s", refusal.status, refusal.reason)
            return reply(protocol, refusal.status, refusal.reason, refusal.headers)
        except OSError as exc:
            status = 507 if is_disk_full(exc) else 500
            log.error("upload failed: %s: %s", exc.filename or self.index.root, exc)
            return reply(protocol, status, f"cannot store the upload: {os_problem(exc)}")
        return reply(protocol, 200, message)

    def _publish(self, body: Path, boundary: bytes, token: Token, client: str) -> str:
        form = parse_form(body, boundary)
        part, filename = self._check_form(form)
        copy = self.index.incoming / f"file-{secrets.token_hex(8)}"
        try:
            copy_range(body, part.offset, part.length, copy)
            self._check_digests(form, copy, filename)
            dist = inspect(copy, filename)
            try:
                with self.index.lock():
                    placed = self.index.add(copy, dist)
            except LockHeldError:
                raise Refusal(503, "the private index is busy (its lock is held); try "
                              "again") from None
        finally:
            copy.unlink(missing_ok=True)
        audit.record(self.state_dir, token=token.name, action="pypi-upload",
                     path=f"{self.index.folder}/{placed.relpath}", sha256=placed.sha256,
                     size=placed.size, client=client)
        return f"OK: {filename} is published in /{self.index.folder}/simple/{dist.normalized}/"

    @staticmethod
    def _check_form(form: Form):
        action = form.one(":action")
        if action != "file_upload":
            raise Refusal(400, f"unsupported :action {action!r}; this server takes "
                          "file_upload")
        part = form.files.get("content")
        if part is None:
            raise Refusal(400, "the form has no file in its 'content' field")
        if part.length == 0:
            raise Refusal(400, f"{part.filename}: empty file")
        filename = part.filename
        normalized, version, filetype = check_filename(filename)
        name, form_version = form.one("name"), form.one("version")
        if not name or not form_version:
            raise Refusal(400, "the form lacks 'name' or 'version'")
        if canonicalize_name(name) != normalized:
            raise Refusal(400, f"the form says project {name!r}, the file name "
                          f"{filename!r} says {normalized!r}")
        if not same_version(form_version, version):
            raise Refusal(400, f"the form says version {form_version!r}, the file name "
                          f"{filename!r} says {version}")
        said = form.one("filetype")
        if said and said != filetype:
            raise Refusal(400, f"the form says filetype {said!r}, {filename!r} is a "
                          f"{filetype}")
        return part, filename

    @staticmethod
    def _check_digests(form: Form, path: Path, filename: str) -> None:
        wanted = {field: form.one(field).strip().lower() for field in DIGESTS
                  if form.one(field)}
        if not wanted:
            return
        hashers = {field: DIGESTS[field]() for field in wanted}
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                for hasher in hashers.values():
                    hasher.update(chunk)
        for field, expected in wanted.items():
            if not hmac.compare_digest(hashers[field].hexdigest(), expected):
                raise Refusal(400, f"{filename}: {field} does not match the file (corrupted "
                              "in transit?)")
