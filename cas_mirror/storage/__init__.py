"""Where trees live: the local filesystem and S3-compatible buckets, behind one small
interface (`base.Storage`: put verified, replace conditionally, delete, list, read). The
code above it asks `open_storage(location)` and does not know which one it has.

Modules: `base` (the interface, object info), `errors`, `urls` (``s3://bucket/prefix``),
`settings` (endpoint, region, profile; the AWS credential chain), `local`, `s3`.
"""

from __future__ import annotations

from ..lazy import lazy_names

# What each name is imported from, when first asked for (PEP 562): a run that only asks
# whether a location is a bucket (every conda sync) imports urls.py alone.
_FROM = {
    "NEW": "base", "Body": "base", "Conflict": "errors", "Folder": "base",
    "ObjectInfo": "base", "Storage": "base", "StorageAccessError": "errors",
    "StorageError": "errors", "join_key": "base",
    "S3Settings": "settings",
    "BucketURL": "urls", "is_bucket_url": "urls", "parse_bucket_url": "urls",
}

__all__ = sorted([*_FROM, "open_storage"])

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .base import Storage
    from .settings import S3Settings

__getattr__, __dir__ = lazy_names(__name__, _FROM, globals())


def open_storage(location: str, settings: S3Settings | None = None,
                 where: str = "location") -> Storage:
    """The tree at `location`: an ``s3://bucket/prefix`` URL or a folder. `where` names
    the option or key it came from, for messages."""
    from .urls import is_bucket_url, parse_bucket_url

    if is_bucket_url(location):
        from .s3 import S3Storage
        from .settings import S3Settings

        return S3Storage(parse_bucket_url(location, where), settings or S3Settings())
    from .local import LocalStorage

    return LocalStorage(location)
