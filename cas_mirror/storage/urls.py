"""Telling a bucket location from a folder, and splitting ``s3://bucket/prefix``."""

from __future__ import annotations

from cas_index.plain import Frozen

from ..errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

SCHEME = "s3://"


def is_bucket_url(location: str | object) -> bool:
    """Whether a configured location (mirror_dir, --root, a cas-index argument) is a bucket."""
    return isinstance(location, str) and location[:5].lower() == SCHEME


class BucketURL(Frozen):
    """`s3://bucket/prefix`: the bucket name and the key prefix ('' or without slashes at
    either end)."""

    _fields = ("bucket", "prefix")
    __slots__ = _fields
    if TYPE_CHECKING:
        bucket: str
        prefix: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_bucket_url(location: str, where: str) -> BucketURL:
    """The parts of `location`, or a ConfigError naming `where` (the key or option)."""
    rest = location[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if not bucket or any(c in bucket for c in "?#\\ ") or "//" in prefix:
        raise ConfigError(f"{where}: {location!r} is not a bucket location such as "
                          "s3://bucket or s3://bucket/prefix")
    segments = [s for s in prefix.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ConfigError(f"{where}: {location!r}: '.' and '..' are not allowed in the prefix")
    return BucketURL(bucket, "/".join(segments))
