"""`Storage` on an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2), through
obstore (the Rust object_store crate: its own connection pool, retries with backoff on 5xx
and SlowDown, multipart uploads, conditional PUTs).

Keys are relative to the location's prefix. Verified files are uploaded straight to their
final key: S3 makes an object visible only when its PUT or its CompleteMultipartUpload
succeeds, so readers never see a partial one (files above `MULTIPART_CHUNK` go as
multipart uploads, `MULTIPART_CONCURRENCY` parts at a time). Metadata is replaced with
If-Match / If-None-Match (`put_bytes(expect=...)`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import obstore
import obstore.exceptions as oe
from obstore.store import S3Store

from .base import (
    NEW,
    Body,
    Conflict,
    Folder,
    ObjectInfo,
    StorageAccessError,
    StorageError,
    join_key,
    write_file_atomically,
)
from .settings import CredentialChain, S3Settings
from .urls import BucketURL

log = logging.getLogger(__name__)

MULTIPART_CHUNK = 8 * 1024 * 1024
MULTIPART_CONCURRENCY = 8
STREAM_CHUNK = 1024 * 1024

T = TypeVar("T")


class S3Storage:
    """The tree under `s3://bucket/prefix`."""

    def __init__(self, url: BucketURL, settings: S3Settings):
        self.url = url
        self.settings = settings
        credentials = CredentialChain(settings)
        endpoint = settings.endpoint_url
        client_options = {
            "timeout": datetime.timedelta(seconds=max(settings.timeout, 1.0) * 10),
            "connect_timeout": datetime.timedelta(seconds=settings.timeout),
        }
        if endpoint and endpoint.lower().startswith("http://"):
            client_options["allow_http"] = True
        self._store = S3Store(
            url.bucket,
            endpoint=endpoint,
            region=credentials.region,
            client_options=client_options,
            retry_config={
                "max_retries": settings.retries,
                "retry_timeout": datetime.timedelta(seconds=settings.timeout * 4),
                "backoff": {"init_backoff": datetime.timedelta(milliseconds=100),
                            "max_backoff": datetime.timedelta(seconds=10), "base": 2},
            },
            credential_provider=credentials,
        )

    # ------------------------------------------------------------------ naming
    def describe(self, key: str = "") -> str:
        return f"s3://{self.url.bucket}/{self._key(key)}" if key or self.url.prefix \
            else f"s3://{self.url.bucket}"

    def _key(self, key: str) -> str:
        return join_key(self.url.prefix, key)

    def _relative(self, full: str) -> str:
        return full[len(self.url.prefix) + 1:] if self.url.prefix else full

    def _info(self, meta: dict) -> ObjectInfo:
        return ObjectInfo(self._relative(meta["path"]), int(meta["size"]),
                          meta.get("e_tag") or "", meta["last_modified"].timestamp())

    def check_access(self) -> None:
        """Fail now, in one line, when the bucket cannot be read (credentials, bucket name,
        endpoint): one LIST of at most one level of the prefix."""
        self.list_folder("")

    # ------------------------------------------------------------------ reading
    def head(self, key: str) -> ObjectInfo | None:
        try:
            return self._info(self._call("read", key, obstore.head, self._store,
                                         self._key(key)))
        except FileNotFoundError:
            return None

    def read(self, key: str) -> tuple[bytes, ObjectInfo] | None:
        def get(store, path):
            result = obstore.get(store, path)
            return result.meta, result.bytes().to_bytes()

        try:
            meta, data = self._call("read", key, get, self._store, self._key(key))
        except FileNotFoundError:
            return None
        return data, self._info(meta)

    def download(self, key: str, path: Path) -> ObjectInfo | None:
        def fetch(store, full):
            result = obstore.get(store, full)
            write_file_atomically(path, (bytes(c) for c in result.stream(STREAM_CHUNK)))
            return result.meta

        try:
            return self._info(self._call("read", key, fetch, self._store, self._key(key)))
        except FileNotFoundError:
            return None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # object_store matches prefixes by whole segments: "a/b" lists a/b/..., not a/bc
        log.debug("listing %s", self.describe(prefix))
        stream = obstore.list(self._store, prefix=self._key(prefix) or None, chunk_size=1000)
        try:
            for batch in stream:
                for meta in batch:
                    yield self._info(meta)
        except oe.BaseError as exc:
            raise self._error("list", prefix, exc) from None

    def has_any(self, prefix: str) -> bool:
        def first_page(store, full):
            for batch in obstore.list(store, prefix=full, chunk_size=1):
                return bool(batch)
            return False

        return self._call("list", prefix, first_page, self._store, self._key(prefix) or None)

    def list_folder(self, prefix: str) -> Folder:
        full = self._key(prefix)
        result = self._call("list", prefix, obstore.list_with_delimiter, self._store,
                            full or None)
        cut = len(full) + 1 if full else 0
        folders = sorted(p[cut:].rstrip("/") for p in result["common_prefixes"])
        objects = [self._info(m) for m in result["objects"]]
        return Folder(folders, sorted(objects, key=lambda o: o.key))

    async def get_async(self, key: str, start: int | None = None,
                        end: int | None = None) -> Body | None:
        options = {} if start is None else {"range": (start, (end or start) + 1)}
        try:
            result = await obstore.get_async(self._store, self._key(key), options=options)
        except FileNotFoundError:
            return None
        except oe.BaseError as exc:
            raise self._error("read", key, exc) from None
        first, stop = result.range
        return Body(self._info(result.meta), first, stop - first,
                    _chunks(result.stream(min_chunk_size=STREAM_CHUNK)))

    # ------------------------------------------------------------------ writing
    def put_file(self, key: str, path: Path) -> ObjectInfo:
        size = path.stat().st_size
        log.debug("uploading %s (%d bytes%s)", self.describe(key), size,
                  ", multipart" if size > MULTIPART_CHUNK else "")
        result = self._call("write", key, obstore.put, self._store, self._key(key), path,
                            chunk_size=MULTIPART_CHUNK, max_concurrency=MULTIPART_CONCURRENCY)
        return ObjectInfo(key, size, result.get("e_tag") or "", 0.0)

    def put_bytes(self, key: str, data: bytes, expect: str | None = None) -> ObjectInfo:
        mode = ("overwrite" if expect is None else "create" if expect == NEW
                else {"e_tag": expect})
        try:
            result = self._call("write", key, obstore.put, self._store, self._key(key), data,
                                mode=mode, use_multipart=False)
        except (oe.AlreadyExistsError, oe.PreconditionError):
            raise Conflict(f"{self.describe(key)} was changed by another writer while this "
                           "run was working on it; it stopped without overwriting it") from None
        return ObjectInfo(key, len(data), result.get("e_tag") or "", 0.0)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, obstore.delete, self._store, self._key(key))

    # ------------------------------------------------------------------ errors
    def _call(self, what: str, key: str, function: Callable[..., T], *args, **kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(what, key, exc) from None
            raise
        except (oe.AlreadyExistsError, oe.PreconditionError):
            raise
        except oe.BaseError as exc:
            raise self._error(what, key, exc) from None

    def _error(self, what: str, key: str, exc: Exception) -> Exception:
        text = str(exc)
        reason = _reason(text)
        place = self.describe(key)
        if isinstance(exc, oe.PermissionDeniedError | oe.UnauthenticatedError) or any(
                code in text for code in _ACCESS_CODES):
            return StorageAccessError(f"cannot {what} {place}: access denied ({reason}); "
                                      "check the AWS credentials, s3_profile and s3_region")
        if "NoSuchBucket" in text:
            return StorageAccessError(f"cannot {what} {place}: the bucket "
                                      f"{self.url.bucket!r} does not exist")
        return StorageError(f"cannot {what} {place}: {reason}")


_ACCESS_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                 "403 Forbidden", "ExpiredToken")


def _reason(text: str) -> str:
    """What went wrong, in a few words: the HTTP status and S3 error code when the service
    answered ('HTTP 500 Internal Server Error, InternalError'), else the transport error."""
    status = re.search(r"status code: (\d{3}[^:<]*)", text)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    retries = re.search(r"after (\d+) retries", text)
    if status:
        reason = f"HTTP {status.group(1).strip()}" + (f", {code.group(1)}" if code else "")
    else:
        first = text.strip().splitlines()[0] if text.strip() else "error"
        reason = first.removeprefix("Generic S3 error: ").strip()
        reason = re.sub(r" in [0-9.]+m?s\b", "", reason)
    if retries and int(retries.group(1)):
        reason += f" (after {retries.group(1)} retries)"
    return reason


async def _chunks(stream):
    async for chunk in stream:
        yield chunk if isinstance(chunk, bytes) else bytes(chunk)
