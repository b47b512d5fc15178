"""Where a conda sync publishes: the few steps that differ between a local folder and a
bucket, behind one small interface the sync and the publisher call.

`LocalTarget` is the folder under `mirror_dir` (the behaviour the sync always had): the
plan scans the platform folder, downloads land under their final names, repodata is
written in place, stale packages are unlinked. `BucketTarget` (bucket.py) keeps the same
order of work on an ``s3://`` mirror_dir, with a local staging folder in place of the
tree. `open_target(config)` says which one a configuration has, and the local folder the
sync works in (the tree itself, or the staging folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cas_index.atomic import write_if_changed

from ..paths import bucket_work_dir
from ..storage.urls import is_bucket_url
from .local import LocalFolder, bad_hashes, scan_folder

if TYPE_CHECKING:
    from .retired import Retired
    from .work import Work


class Target(Protocol):
    """What the sync (sync.py, gather.py) and the publisher (publish.py) ask of where they
    publish; `LocalTarget` and `bucket.BucketTarget` are the two."""

    remote: bool

    def scan(self, w: Work, verify: bool) -> LocalFolder:
        """What the platform holds: package file name -> size, and partial downloads."""
        ...

    def bad_hashes(self, w: Work, records: dict[str, Any], present: dict[str, int],
                   workers: int) -> frozenset[str]:
        """Files of `records` held whose content does not match their record."""
        ...

    def prepare(self, work: list[Work]) -> None:
        """After planning, before the first download (not in a dry run)."""
        ...

    def download(self, downloader, jobs, progress, alongside=None) -> list:
        """Download `jobs` and put them in place; one result per job. `alongside` is
        run beside the transfers (Downloader.download) and has returned by the end."""
        ...

    def publish(self, w: Work) -> None:
        """After publish.py wrote the platform's metadata in its folder."""
        ...

    def delete(self, w: Work, fn: str) -> bool: ...

    def settle(self, w: Work) -> None:
        """After the platform's deletes."""
        ...

    def write_channeldata(self, path: str, target: Path, data: bytes, doc: dict,
                          owned: set[str]) -> bool: ...

    def remove_platform(self, retired: Retired) -> int: ...

    def published_name(self, path: str | Path) -> Path | str:
        """How the diff file names `path`, a file of the local folder the sync works in:
        the path itself, or for a bucket its s3:// URL."""
        ...


class LocalTarget:
    """The platform folders under `mirror_dir` are the published tree."""

    remote = False

    def scan(self, w: Work, verify: bool) -> LocalFolder:
        return scan_folder(w.folder)

    def bad_hashes(self, w: Work, records: dict[str, Any], present: dict[str, int],
                   workers: int) -> frozenset[str]:
        return bad_hashes(w.folder, records, present, workers)

    def prepare(self, work) -> None:
        """Nothing to clean: partial downloads are resumed or removed by the plan."""

    def download(self, downloader, jobs, progress, alongside=None):
        return downloader.download(jobs, progress, alongside)

    def publish(self, w: Work) -> None:
        """Nothing more: publish.py wrote the repodata in the folder itself."""

    def delete(self, w: Work, fn: str) -> bool:
        try:
            (w.folder / fn).unlink()
        except FileNotFoundError:
            return False
        return True

    def settle(self, w: Work) -> None:
        """Nothing to remember: the folder is its own inventory."""

    def write_channeldata(self, path: str, target: Path, data: bytes,
                          doc: dict, owned: set[str]) -> bool:
        return write_if_changed(target, data)

    def remove_platform(self, retired: Retired) -> int:
        from .retired import remove_platform

        return remove_platform(retired)

    def published_name(self, path: str | Path) -> str | Path:
        return path


LOCAL = LocalTarget()


def open_target(config) -> tuple[Path, Target]:
    """(the local folder the sync works in, the target it publishes to)."""
    if not is_bucket_url(config.mirror_dir):
        return Path(config.mirror_dir), LOCAL
    from ..storage import S3Settings, open_storage
    from .bucket import BucketTarget

    def storage():  # opened when first needed: a quiet run needs no credentials at all
        return open_storage(config.mirror_dir, S3Settings.from_config(config),
                            config.where("mirror_dir"))

    staging = Path(config.values.get("state_dir")
                   or bucket_work_dir(config.mirror_dir, "sync", kept=True))
    return staging, BucketTarget(storage, staging, config.mirror_dir)
