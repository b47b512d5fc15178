"""A conda sync into a bucket (`mirror_dir: s3://bucket/prefix`): the `BucketTarget` the
sync and the publisher call instead of writing a folder (target.py).

The sync works in a local staging tree (`state_dir`, default
~/.cache/cas-mirror/sync/<bucket>/<prefix>) laid out like a mirror_dir: its hidden
`.cas-sync/` holds the upstream state, quiet records and shard caches as for a folder,
its platform folders hold the repodata the last run published (so the publisher and the
quiet check work unchanged) and, for a moment, the packages being uploaded.

- **Packages** are downloaded into the staging folder by the shared downloader (verified
  against upstream's size and hashes), in batches; each batch is uploaded under its final
  key (`put_file`: whole or not at all) while the next one downloads, and removed from
  the disk, so the disk holds about two batches, whatever the mirror's size.
- **What the bucket holds** is the platform's `Inventory` (storage/inventory.py), kept in
  its state folder: the plan reads it instead of scanning a folder, so a run makes no
  LIST request. A lost inventory, and `--verify`, cost one LIST of the platform prefix.
- **Metadata** is uploaded after its packages, in the order clients need: shards, other
  outputs (run_exports.json), the shard index, repodata.json.zst/.bz2, repodata.json
  last; metadata the folder no longer has (shards past their grace period) is deleted
  after it; stale packages after that (publish.py). Each object is written with If-Match
  on the ETag the inventory holds (If-None-Match for a new key); a lost race is a
  `Conflict` (exit 3) unless the bucket already holds exactly the bytes this run would
  write (two machines syncing noarch of one channel, say), which is adopted.
- **channeldata.json** is merged: read, this run's platforms replaced, written back with
  If-Match, retried a few times when another platform's run wrote it in between.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cas_index.atomic import write_if_changed
from cas_index.layout import SHARDS_DIR, publishing_rank

from ..net import DownloadResult, ProgressReporter
from ..storage import NEW, Conflict, Storage, StorageError
from ..storage.base import write_file_atomically
from ..storage.inventory import Entry, Inventory, md5_of_etag
from ..text import safe
from .local import LocalFolder, scan_folder
from .plan import is_package_file
from .state import STATE_ROOT

if TYPE_CHECKING:
    from .retired import Retired
    from .work import Work

log = logging.getLogger(__name__)

INVENTORY = "bucket-inventory.json"
UPLOADING = "bucket-uploads.json"  # keys of multipart uploads under way (in .cas-sync/)
BATCH_FILES = 200
BATCH_BYTES = 256 * 1024 * 1024
UPLOAD_WORKERS = 8
CHANNELDATA_ATTEMPTS = 5


class BucketTarget:
    """The tree in `storage`, synced through the local staging tree `staging`."""

    remote = True

    def __init__(self, storage: Callable[[], Storage], staging: Path, location: str):
        self._open = storage
        self._storage: Storage | None = None
        self.staging = staging
        self.location = location.rstrip("/")  # s3://bucket/prefix
        self._inventories: dict[Path, tuple[Path, Inventory]] = {}  # folder -> (file, inv)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = self._open()
        return self._storage

    def _key(self, path: str | Path) -> str:
        return Path(path).relative_to(self.staging).as_posix()

    def published_name(self, path: str | Path) -> str:
        return f"{self.location}/{self._key(path)}"

    # ------------------------------------------------------------------ planning
    def inventory(self, folder: Path, state_folder: Path, verify: bool = False) -> Inventory:
        """The inventory of the platform staged in `folder`: saved (in `state_folder`) by
        the last run, else (and with --verify) from one LIST of the platform prefix."""
        known = self._inventories.get(folder)
        if known is not None and not verify:
            return known[1]
        path = state_folder / INVENTORY
        saved = Inventory.load(path)
        inventory = saved
        if saved is None or verify:
            prefix = self._key(folder) + "/"
            log.info("listing %s (%s)", self.storage.describe(prefix),
                     "--verify" if verify else "no inventory of it in the local state")
            inventory = Inventory.from_listing(self.storage.list(prefix), prefix, saved)
        self._inventories[folder] = (path, inventory)
        return inventory

    def scan(self, w: Work, verify: bool) -> LocalFolder:
        """What the bucket holds for the platform; a listing that keeps failing fails the
        platform alone (its published state stays)."""
        try:
            inventory = self.inventory(w.folder, w.state_folder, verify)
        except StorageError as exc:
            w.report.error = str(exc)
            return LocalFolder()
        local = scan_folder(w.folder)
        for fn in local.packages:  # staged by a killed run, never uploaded: download again
            (w.folder / fn).unlink(missing_ok=True)
            log.info("%s/%s: removed %s a killed run left in the staging folder",
                     w.source.path, w.platform, safe(fn))
        return LocalFolder({n: e.size for n, e in inventory.entries.items()
                            if is_package_file(n)}, local.partials)

    def bad_hashes(self, w: Work, records: dict[str, Any], present: dict[str, int],
                   workers: int) -> frozenset[str]:
        """Objects whose known content differs from upstream's record: the sha256 of what
        we uploaded, else the MD5 a single-part ETag states. An object listed (not
        uploaded by us) under a multipart ETag cannot be checked without reading it: it
        counts as bad only under --verify when the listing replaced what we uploaded."""
        entries = self.inventory(w.folder, w.state_folder).entries
        bad = set()
        for fn, record in records.items():
            entry = entries.get(fn)
            if fn not in present or entry is None:
                continue
            sha256, md5 = record.get("sha256"), record.get("md5")
            if entry.sha256 and sha256:
                ok = entry.sha256 == sha256.lower()
            elif (stated := md5_of_etag(entry.etag)) and md5:
                ok = stated == md5.lower()
            else:
                ok = True
            if not ok:
                bad.add(fn)
        return frozenset(bad)

    # ------------------------------------------------------------------ packages
    def prepare(self, work: list[Work]) -> None:
        """Before anything is uploaded (unless every platform is quiet): fail at once, in
        one line (exit 2), when the bucket refuses us (one HEAD, not a LIST); abort the
        multipart uploads a killed run left (storage/multipart.py), whose keys were noted
        in UPLOADING before they started."""
        if all(w.quiet is not None or not w.usable for w in work):
            return
        sources = [w.source for w in work]
        if sources:
            self.storage.head(f"{sources[0].path}/channeldata.json")
        marker = self.staging / STATE_ROOT / UPLOADING
        try:
            keys = json.loads(marker.read_bytes())
        except (OSError, ValueError):
            return
        from ..storage.multipart import abort_uploads

        try:
            abort_uploads(self.storage, [k for k in keys if isinstance(k, str)],
                          datetime.datetime.now(datetime.timezone.utc))
        except StorageError as exc:  # costs storage, not correctness: tried again next run
            log.warning("%s", exc)
            return
        marker.unlink(missing_ok=True)

    def _note_uploads(self, jobs) -> None:
        """Remember the keys of the multipart uploads about to start (for `prepare`)."""
        from ..storage.s3 import MULTIPART_CHUNK

        keys = [self._key(j.dest) for j in jobs if (j.size or 0) > MULTIPART_CHUNK]
        marker = self.staging / STATE_ROOT / UPLOADING
        try:
            known = json.loads(marker.read_bytes())
        except (OSError, ValueError):
            known = []
        if keys and not set(keys) <= set(known):
            write_file_atomically(marker, [json.dumps(sorted({*known, *keys})).encode()])

    def download(self, downloader, jobs, progress, alongside=None) -> list[DownloadResult]:
        """Download in batches; each batch is uploaded (and its local copies removed)
        while the next one downloads. `alongside` runs beside the first batch."""
        self._note_uploads(jobs)
        batches, batch, size = [], [], 0
        for index, job in enumerate(jobs):
            batch.append(index)
            size += job.size or 0
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                batches.append(batch)
                batch, size = [], 0
        if batch:
            batches.append(batch)
        results: list[DownloadResult | None] = [None] * len(jobs)
        progress.start(len(jobs), sum(job.size or 0 for job in jobs))
        each = _Batch(progress)
        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
            uploading = None
            try:
                for batch in batches:
                    got = downloader.download([jobs[i] for i in batch], each, alongside)
                    alongside = None
                    if uploading is not None:
                        uploading.result()
                    uploading = pool.submit(self._upload_batch, pool, batch, got, results)
                if uploading is not None:
                    uploading.result()
            finally:
                progress.finish()
        (self.staging / STATE_ROOT / UPLOADING).unlink(missing_ok=True)
        return results

    def _upload_batch(self, pool, batch, got, results) -> None:
        def upload(result: DownloadResult) -> DownloadResult:
            if not result.ok:
                return result
            path = Path(result.job.dest)
            try:
                info = self.storage.put_file(self._key(path), path)
            except StorageError as exc:
                return result._replace(ok=False, error=str(exc), cause="upload failed")
            finally:
                path.unlink(missing_ok=True)
            inventory = self._inventories[path.parent][1]
            inventory.entries[path.name] = Entry(result.job.size or info.size, info.etag,
                                                 (result.job.sha256 or "").lower() or None)
            return result

        try:
            for index, result in zip(batch, pool.map(upload, got), strict=True):
                results[index] = result
        finally:
            for folder in {Path(result.job.dest).parent for result in got}:
                path, inventory = self._inventories[folder]
                inventory.save(path)

    # ------------------------------------------------------------------ metadata
    def publish(self, w: Work) -> None:
        """Upload the platform's metadata that changed, in order, then delete what it no
        longer has. Raises `Conflict` when another writer changed one of them."""
        path, inventory = self._inventories[w.folder]
        prefix = self._key(w.folder)
        names = _outputs(w.folder)
        try:
            for name in names:
                data = (w.folder / name).read_bytes()
                sha256 = hashlib.sha256(data).hexdigest()
                entry = inventory.entries.get(name)
                if entry is not None and (entry.sha256 == sha256 or (
                        entry.sha256 is None and
                        md5_of_etag(entry.etag) == hashlib.md5(data).hexdigest())):
                    # what the bucket holds (known, or listed under its MD5)
                    inventory.entries[name] = Entry(len(data), entry.etag, sha256)
                    continue
                key = f"{prefix}/{name}"
                expect = entry.etag if entry is not None else NEW
                log.info("publishing %s", self.storage.describe(key))
                try:
                    info = self.storage.put_bytes(key, data, expect=expect)
                except Conflict:
                    info = self._same_bytes(key, sha256)
                    if info is None:
                        raise
                inventory.entries[name] = Entry(len(data), info.etag, sha256)
            for name in sorted(set(inventory.entries) - set(names)):
                if not is_package_file(name):
                    self.storage.delete(f"{prefix}/{name}")
                    del inventory.entries[name]
        finally:
            inventory.save(path)

    def _same_bytes(self, key: str, sha256: str):
        """The object under `key` when it already holds bytes with this sha256."""
        got = self.storage.read(key)
        if got is None or hashlib.sha256(got[0]).hexdigest() != sha256:
            return None
        log.info("%s: another writer published the same bytes; kept", self.storage.describe(key))
        return got[1]

    def delete(self, w: Work, fn: str) -> bool:
        inventory = self._inventories[w.folder][1]
        self.storage.delete(f"{self._key(w.folder)}/{fn}")
        return inventory.entries.pop(fn, None) is not None

    def settle(self, w: Work) -> None:
        path, inventory = self._inventories[w.folder]
        inventory.save(path)

    def write_channeldata(self, path: str, target: Path, data: bytes,
                          doc: dict, owned: set[str]) -> bool:
        """Merge this run's platforms (`owned`: those it syncs or retires) into the
        bucket's channeldata.json with a conditional write; retried when another run
        wrote it in between. The staging copy is kept for reference."""
        key = f"{path}/channeldata.json"
        for _ in range(CHANNELDATA_ATTEMPTS):
            got = self.storage.read(key)
            current = _decode(got[0]) if got is not None else None
            merged = _merge(current, doc, owned)
            body = json.dumps(merged, indent=2).encode()
            if got is not None and got[0] == body:
                return False
            try:
                self.storage.put_bytes(key, body, expect=got[1].etag if got else NEW)
            except Conflict:
                log.info("%s: written by another run meanwhile; merging again",
                         self.storage.describe(key))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            write_if_changed(target, body)
            return True
        raise Conflict(f"{self.storage.describe(key)} kept changing under "
                       f"{CHANNELDATA_ATTEMPTS} attempts to update it; it stopped without "
                       "overwriting it")

    def remove_platform(self, retired: Retired) -> int:
        """A platform no longer configured: its metadata objects (repodata.json first),
        then its packages, then the staging folder and state."""
        from .retired import remove_platform

        entries = self.inventory(retired.folder, retired.state_folder).entries
        prefix = self._key(retired.folder)
        order = sorted(entries, key=lambda n: (n != "repodata.json", is_package_file(n), n))
        for name in order:
            self.storage.delete(f"{prefix}/{name}")
        self._inventories.pop(retired.folder, None)
        remove_platform(retired)
        return len(order)


def _outputs(folder: Path) -> list[str]:
    """The metadata in a staging platform folder, in publishing order (`publishing_rank`)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file() and not e.name.startswith(".")
                 and not is_package_file(e.name)]
    if (folder / SHARDS_DIR).is_dir():
        names += [f"{SHARDS_DIR}/{n}" for n in os.listdir(folder / SHARDS_DIR)
                  if not n.startswith(".")]
    return sorted(names, key=lambda name: (publishing_rank(name), name))


def _decode(data: bytes) -> dict | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _merge(current: dict | None, ours: dict, owned: set[str]) -> dict:
    """channeldata.json with the platforms in `owned` as `ours` says, the others as the
    bucket has them."""
    if not current or not isinstance(current.get("packages"), dict):
        current = {"channeldata_version": 1, "packages": {}, "subdirs": []}
    subdirs = {s for s in current.get("subdirs") or [] if isinstance(s, str)} - owned
    packages: dict[str, dict] = {}
    for name, package in current["packages"].items():
        if not isinstance(package, dict):
            continue
        kept = [s for s in package.get("subdirs") or [] if s not in owned]
        if kept:
            packages[name] = {**package, "subdirs": kept}
    for name, package in ours["packages"].items():
        entry = packages.setdefault(name, {**package, "subdirs": []})
        entry["subdirs"] = sorted({*entry["subdirs"], *package["subdirs"]})
    return {**current, "subdirs": sorted(subdirs | set(ours["subdirs"])),
            "packages": dict(sorted(packages.items()))}


class _Batch(ProgressReporter):
    """The run's progress reporter, seen by one batch: it started once for the whole."""

    def __init__(self, progress: ProgressReporter):
        self.progress = progress

    def advance(self, nbytes: int) -> None:
        self.progress.advance(nbytes)

    def file_done(self, result: DownloadResult) -> None:
        self.progress.file_done(result)
