"""`PUT` and `DELETE <channel>/<subdir>/<file>`: uploads into the internal conda channels
listed in `upload_channels`, the way Artifactory's and rattler-build's uploaders talk.

A PUT is checked before its body is read (the channel is an upload channel, else 403; the
token has `conda:<channel>`, else 401/403; the platform folder is a known one and the
file name a package name, else 400; the declared size, else 413). The body is streamed to
`<channel>/.cas-uploads/<random>/<file>` (hidden: never served nor indexed; the same file
system, so it is linked into place whole), read as a real package by cas_index (400 when
it is not one, or when its subdir, name, version or build disagree with the path), then
linked to `<subdir>/<file>` (a link never replaces: a file of that name with other bytes
is 409, the same bytes again is 200), and the platform folder is indexed incrementally by
`cas_index.index_channel`, under the channel lock cas-index itself takes, so an upload
racing a cas-index run waits for it and is indexed after it. DELETE removes the file and
indexes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import zipfile
from pathlib import Path

from cas_index.channel import index_channel
from cas_index.errors import CasIndexError, DiskFull, LockHeldError
from cas_index.layout import KNOWN_SUBDIRS, is_package_name
from cas_index.model import Options
from cas_index.package import PackageError, read_package

from ..digests import file_digest
from ..errors import is_disk_full, os_problem
from . import audit
from .app import Handled
from .auth import Refusal, authorize, client_address, reply
from .reqbody import declared_length, receive
from .tokens import Token, TokenStore

log = logging.getLogger(__name__)

STAGING_DIR = ".cas-uploads"
INFLATE_RATIO = 50
MIN_INFLATE_BOUND = 256 << 20
LOCK_TIMEOUT = 120.0


class CondaUploadHandler:
    """Answers PUT and DELETE: into `channels` (folders under `root`), 403 elsewhere."""

    def __init__(self, root: str, channels: tuple[str, ...], store: TokenStore,
                 state_dir: Path, limit: int, shards: bool):
        self.root = Path(root)
        self.channels = {tuple(c.strip("/").split("/")): c.strip("/") for c in channels}
        self.store, self.state_dir, self.limit = store, state_dir, limit
        self.options = Options(shards=shards, lock_timeout=LOCK_TIMEOUT)

    async def __call__(self, scope, protocol, headers: dict[str, str]) -> Handled | None:
        if scope.method not in ("PUT", "DELETE"):
            return None
        client = client_address(scope)
        try:
            channel, subdir, filename = self._target(scope.path)
            token = authorize(self.store, headers, f"conda:{channel}")
            loop = asyncio.get_running_loop()
            if scope.method == "DELETE":
                status, message = await loop.run_in_executor(
                    None, self._delete, channel, subdir, filename, token, client)
            else:
                declared_length(headers, self.limit)
                status, message = await self._put(protocol, headers, channel, subdir,
                                                  filename, token, client)
        except Refusal as refusal:
            log.info("%s %s refused (%d): %s", scope.method, scope.path, refusal.status,
                     refusal.reason)
            return reply(protocol, refusal.status, refusal.reason, refusal.headers)
        except OSError as exc:
            status = 507 if is_disk_full(exc) else 500
            log.error("%s %s failed: %s", scope.method, scope.path, exc)
            return reply(protocol, status, f"cannot store the upload: {os_problem(exc)}")
        return reply(protocol, status, message)

    def _target(self, path: str) -> tuple[str, str, str]:
        segments = [s for s in path.split("/") if s]
        for key, channel in self.channels.items():
            if tuple(segments[:len(key)]) == key and len(segments) == len(key) + 2:
                subdir, filename = segments[len(key):]
                if subdir not in KNOWN_SUBDIRS:
                    raise Refusal(400, f"{subdir!r} is not a platform folder (noarch, "
                                  "linux-64, osx-arm64, ...)")
                if (not is_package_name(filename) or "\\" in filename
                        or "\x00" in filename or filename != filename.strip()):
                    raise Refusal(400, f"{filename!r} is not a package file name "
                                  "(<name>-<version>-<build>.conda or .tar.bz2)")
                return channel, subdir, filename
        if any(tuple(segments[:len(key)]) == key for key in self.channels):
            raise Refusal(400, "upload to <channel>/<platform>/<file name>")
        listed = ", ".join(sorted(self.channels.values())) or "none"
        raise Refusal(403, f"{path} is not in an upload channel (upload_channels: {listed}); "
                      "mirrored channels take no uploads")

    async def _put(self, protocol, headers, channel: str, subdir: str, filename: str,
                   token: Token, client: str) -> tuple[int, str]:
        staging = self.root / channel / STAGING_DIR / secrets.token_hex(8)
        staging.mkdir(parents=True)
        try:
            staged = staging / filename
            await receive(protocol, headers, self.limit, staged)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self._place, staged, channel, subdir,
                                              filename, token, client)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _place(self, staged: Path, channel: str, subdir: str, filename: str, token: Token,
               client: str) -> tuple[int, str]:
        _check_inflation(staged, filename)
        try:
            info = read_package(staged, subdir)
        except PackageError as exc:
            raise Refusal(400, f"{filename}: not a valid package: {exc}") from None
        record = info.record
        stem = filename.removesuffix(".conda").removesuffix(".tar.bz2")
        said = f"{record['name']}-{record['version']}-{record['build']}"
        if said != stem:
            raise Refusal(400, f"{filename}: the package says it is {said}, not {stem}")
        target = self.root / channel / subdir / filename
        target.parent.mkdir(exist_ok=True)
        status, message = 201, f"OK: {channel}/{subdir}/{filename} is published"
        try:
            target.hardlink_to(staged)  # never replaces a file
        except FileExistsError:
            if file_digest(target) != record["sha256"]:
                raise Refusal(409, f"{channel}/{subdir}/{filename} exists already with other "
                              "bytes; delete it first") from None
            status, message = 200, f"OK: {channel}/{subdir}/{filename} was already published"
        try:
            self._index(channel, subdir)
        except Refusal:
            if status == 201:  # not indexed: take it back, and index what is left
                target.unlink(missing_ok=True)
                with contextlib.suppress(Refusal, OSError):
                    self._index(channel, subdir)
            raise
        audit.record(self.state_dir, token=token.name, action="conda-upload",
                     path=f"{channel}/{subdir}/{filename}", sha256=record["sha256"],
                     size=record["size"], client=client)
        return status, message

    def _delete(self, channel: str, subdir: str, filename: str, token: Token,
                client: str) -> tuple[int, str]:
        target = self.root / channel / subdir / filename
        try:
            digest, size = file_digest(target), target.stat().st_size
            target.unlink()
        except FileNotFoundError:
            raise Refusal(404, f"{channel}/{subdir}/{filename} does not exist") from None
        self._index(channel, subdir)
        audit.record(self.state_dir, token=token.name, action="conda-delete",
                     path=f"{channel}/{subdir}/{filename}", sha256=digest, size=size,
                     client=client)
        return 200, f"OK: {channel}/{subdir}/{filename} is deleted"

    def _index(self, channel: str, subdir: str) -> None:
        try:
            index_channel(self.root / channel, [subdir], self.options)
        except DiskFull as exc:
            raise Refusal(507, f"indexing {channel}/{subdir} failed: {exc}") from None
        except LockHeldError:
            raise Refusal(503, f"{channel} is being indexed by another run (its lock is "
                          "held); try again") from None
        except CasIndexError as exc:
            raise Refusal(500, f"indexing {channel}/{subdir} failed: {exc}") from None


def _check_inflation(path: Path, filename: str) -> None:
    """Refuse a .conda whose zip members declare more bytes than a package plausibly holds
    (a zip bomb) before cas_index decompresses anything."""
    if not filename.endswith(".conda"):
        return
    bound = max(MIN_INFLATE_BOUND, INFLATE_RATIO * path.stat().st_size)
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # read_package says what is wrong with it
    if inflated > bound:
        raise Refusal(400, f"{filename}: inflates to {inflated} bytes, more than {bound} "
                      "(a zip bomb?)")


