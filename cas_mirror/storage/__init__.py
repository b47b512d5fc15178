"""Where trees live: the local filesystem and S3-compatible buckets, behind one small
interface (`base.Storage`: put verified, replace conditionally, delete, list, read). The
code above it asks `open_storage(location)` and does not know which one it has.

Modules: `base` (the interface, object info, errors), `urls` (``s3://bucket/prefix``),
`settings` (endpoint, region, profile; the AWS credential chain), `local`, `s3`.
"""

from __future__ import annotations

from .base import (
    NEW,
    Body,
    Conflict,
    Folder,
    ObjectInfo,
    Storage,
    StorageAccessError,
    StorageError,
    join_key,
)
from .settings import S3Settings
from .urls import BucketURL, is_bucket_url, parse_bucket_url

__all__ = [
    "NEW", "Body", "BucketURL", "Conflict", "Folder", "ObjectInfo", "S3Settings", "Storage",
    "StorageAccessError", "StorageError", "is_bucket_url", "join_key", "open_storage",
    "parse_bucket_url",
]


def open_storage(location: str, settings: S3Settings | None = None,
                 where: str = "location") -> Storage:
    """The tree at `location`: an ``s3://bucket/prefix`` URL or a folder. `where` names
    the option or key it came from, for messages."""
    if is_bucket_url(location):
        from .s3 import S3Storage

        return S3Storage(parse_bucket_url(location, where), settings or S3Settings())
    from .local import LocalStorage

    return LocalStorage(location)
