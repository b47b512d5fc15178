"""Incomplete multipart uploads a killed run left in a bucket: invisible to readers (S3
shows an object only once CompleteMultipartUpload succeeds) but stored, and billed, until
aborted.

obstore aborts the uploads it sees fail, but it can neither list nor abort the uploads of
a process that was killed (object_store has no ListMultipartUploads). botocore, which we
already use for the credential chain, can: `abort_uploads(storage, keys, before)` lists
the incomplete uploads of each key (a ``?uploads`` request, not an object listing) and
aborts those started before `before`, so a live upload of another run is left alone. A
bucket lifecycle rule (AbortIncompleteMultipartUpload) remains the catch-all: README.
"""

from __future__ import annotations

import datetime
import logging

from .base import StorageError

log = logging.getLogger(__name__)


def abort_uploads(storage, keys: list[str], before: datetime.datetime) -> int:
    """Abort the incomplete multipart uploads of `keys` (relative to `storage`, an
    S3Storage) started before `before`; the number aborted."""
    import botocore.config
    import botocore.exceptions
    import botocore.session

    settings = storage.settings
    session = botocore.session.Session(profile=settings.profile)
    client = session.create_client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region or None,
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": settings.retries + 1}))
    aborted = 0
    try:
        for key in keys:
            full = storage._key(key)
            answer = client.list_multipart_uploads(Bucket=storage.url.bucket, Prefix=full)
            for upload in answer.get("Uploads", []):
                if upload["Key"] != full or upload["Initiated"] >= before:
                    continue
                client.abort_multipart_upload(Bucket=storage.url.bucket, Key=full,
                                              UploadId=upload["UploadId"])
                log.info("aborted the incomplete upload of %s a killed run left",
                         storage.describe(key))
                aborted += 1
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise StorageError(f"cannot abort incomplete uploads in {storage.describe()}: "
                           f"{exc}") from None
    return aborted
