"""The PyPI tree in an S3-compatible bucket (`pypi.mirror_dir: s3://bucket/prefix`, or
bandersnatch's `storage-backend = s3`): the publishing target of target.py for a bucket.

The order is the folder tree's (sync.py decides it): each distribution file is downloaded
by the shared downloader into this machine's staging folder, verified there (size and
sha256 from the index), uploaded under its final key (`put_file`: whole or not at all) and
the local copy removed as soon as it is up, a bounded number at a time, so local disk use
stays near `workers` files; then each project's pages, then the project list, then the
deletions of what the new pages dropped.

Nothing is listed on a normal run: `inventory.py` remembers each object this machine
published (size, sha256, ETag), so a page is rewritten only when its bytes change, with
If-Match on the recorded ETag (If-None-Match for a key never written). A writer that
changed a page in between makes the write fail with `Conflict` (exit 3): the run stops
there, with every object it wrote whole and the project list untouched. `--verify` LISTs
the tree once, adopts what it holds (the ETags of other writers included), re-fetches
what is missing or unknown and deletes what no project owns.

Errors: the storage layer's (credentials, bucket: exit 2; the service failing after its
retries: exit 1), raised out of the run after the inventory is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..config import DEFAULT, Config
from ..digests import file_digest
from ..errors import CasError, ConfigError
from ..storage import NEW, Conflict, S3Settings, open_storage
from .hashindex import project_folder
from .inventory import Inventory, entry
from .local import digest_for
from .settings import PypiSettings
from .target import ALL_PAGE_NAMES, page_folder

log = logging.getLogger(__name__)

WEB = "web"


def check_bucket_settings(s: PypiSettings, config: Config) -> None:
    """The keys that must agree with a bucket tree, each refusal one line naming its key."""
    backend_where = config.where("pypi.storage_backend")
    if s.bucket is None:
        raise ConfigError(f"{backend_where}: storage_backend is s3 but the tree's location "
                          f"{s.mirror_dir} is a folder ({s.where_target(config)}); set "
                          "pypi.mirror_dir to s3://bucket/prefix")
    if s.storage_backend != "s3" and s.origins.get("storage_backend", DEFAULT) != DEFAULT:
        raise ConfigError(f"{backend_where}: storage_backend is {s.storage_backend} but the "
                          f"tree's location is the bucket {s.bucket} "
                          f"({s.where_target(config)}); use s3 or leave it out")
    if s.keep_index_versions:
        raise ConfigError(f"{config.where('pypi.keep_index_versions')}: keeping prior pages "
                          "(hard links in a folder) is not supported in a bucket; set it to 0")
    if s.cleanup:
        raise ConfigError(f"{config.where('pypi.cleanup')}: cleanup (removing legacy folders "
                          "of bandersnatch before 4.0) has no meaning in a bucket; set it to "
                          "false")


class BucketTarget:
    """The tree `s3://bucket/prefix/<user>/web/`, staging under `s.web` on this machine."""

    is_bucket = True

    def __init__(self, s: PypiSettings, config: Config | None):
        self.s = s
        self.location = f"{s.bucket.rstrip('/')}/{s.user}"
        self.settings = S3Settings.from_config(config) if config is not None else S3Settings()
        self.inventory = Inventory.load(s.state_dir)
        self.listed: set[str] | None = None  # --verify: the keys the LIST found
        self._store = None
        self._opening = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(2 * max(1, s.workers))
        self._uploads: list[Future] = []
        self._failure: CasError | None = None

    # ------------------------------------------------------------------ naming
    @property
    def store(self):
        """The bucket, opened on first use (a run with nothing to write sends nothing)."""
        with self._opening:
            if self._store is None:
                self._store = open_storage(self.location, self.settings, "pypi.mirror_dir")
        return self._store

    def describe(self, relpath: str = "") -> str:
        return f"{self.location}/{WEB}/{relpath}" if relpath else f"{self.location}/{WEB}"

    def changed(self, dest: Path, relpath: str) -> str:
        return self.describe(f"packages/{relpath}")

    @staticmethod
    def _key(relpath: str) -> str:
        return f"{WEB}/{relpath}"

    # ------------------------------------------------------------------ files
    def check_file(self, want, cached, verify):
        entry = self.inventory.get(self._key(f"packages/{want.relpath}"))
        if entry is None:
            return None, "missing"
        if want.size is not None and entry.size != want.size:
            return None, f"{entry.size} bytes, upstream says {want.size}"
        if entry.sha256 is None:
            return None, "in the bucket, but not uploaded by this machine's runs"
        if want.sha256 and entry.sha256 != want.sha256.lower():
            return None, "sha256 mismatch"
        algorithm, expected = digest_for(self.s, want)
        return [entry.size, 0, algorithm, expected], None

    def digest(self, relpath: str) -> str:
        entry = self.inventory.get(self._key(f"packages/{relpath}"))
        if entry is None or entry.sha256 is None:
            raise FileNotFoundError(self.describe(f"packages/{relpath}"))
        return entry.sha256

    def file_downloaded(self, result) -> None:
        """A verified download: upload it in the background (at most 2 x workers waiting,
        so the staging folder stays small), then remove the local copy."""
        if not result.ok:
            return
        path = result.job.dest
        if self._failure is not None:
            path.unlink(missing_ok=True)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.s.workers),
                                            thread_name_prefix="pypi-upload")
        self._slots.acquire()
        self._uploads.append(self._pool.submit(self._upload, path, result.job.sha256))

    def _upload(self, path: Path, verified_sha256: str | None) -> None:
        """Upload `path`; `verified_sha256` is the digest the downloader checked it against
        (None when upstream gave another hash only: then it is read once more here)."""
        try:
            if self._failure is not None:
                return
            relpath = path.relative_to(self.s.web).as_posix()
            sha256 = (verified_sha256 or "").lower() or file_digest(path, "sha256")
            info = self.store.put_file(self._key(relpath), path)
            self.inventory.put(info.key, entry(info.size, sha256, info.etag))
            log.debug("uploaded %s", self.describe(relpath))
        except CasError as exc:
            if self._failure is None:
                self._failure = exc
        finally:
            path.unlink(missing_ok=True)  # (folders go at the end: others may be used)
            self._slots.release()

    def downloads_done(self) -> None:
        """Wait for the uploads; the first that failed stops the run (before any page)."""
        for future in self._uploads:
            future.result()
        self._uploads.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        _remove_empty_folders(self.s.web / "packages")
        if self._failure is not None:
            raise self._failure

    def stored(self, want, result) -> list | None:
        entry = self.inventory.get(self._key(f"packages/{want.relpath}"))
        if entry is None:
            return None
        algorithm, expected = digest_for(self.s, want)
        if algorithm == "md5" and not want.sha256 and not want.md5:
            expected = None
        return [entry.size, 0, algorithm, expected]

    def delete_file(self, relpath: str) -> bool:
        key = self._key(f"packages/{relpath}")
        if self.inventory.get(key) is None:
            return False
        self.store.delete(key)
        self.inventory.drop(key)
        return True

    # ------------------------------------------------------------------ pages
    def _put_page(self, key: str, body: bytes) -> bool:
        """Write one page unless it already holds `body`, conditionally; True if written."""
        known = self.inventory.get(key)
        sha256 = hashlib.sha256(body).hexdigest()
        if known is not None and known.sha256 == sha256:
            return False
        try:
            info = self.store.put_bytes(key, body, expect=known.etag if known else NEW)
        except Conflict as exc:
            raise Conflict(f"{exc} (if no other sync writes this tree, `cas-sync pypi "
                           "--verify` adopts what the bucket holds)") from None
        self.inventory.put(key, entry(len(body), sha256, info.etag))
        return True

    def _delete_keys(self, keys) -> None:
        for key in keys:
            self.store.delete(key)
            self.inventory.drop(key)

    def write_pages(self, folder, outputs, report, fsync, keep=()) -> None:
        for filename, body in outputs.items():
            key = self._key(f"{folder}/{filename}")
            if self._put_page(key, body):
                report.changed_files.append(self.describe(f"{folder}/{filename}"))
        self._delete_keys(self._key(f"{folder}/{filename}") for filename in ALL_PAGE_NAMES
                          if filename not in outputs and filename not in keep
                          and self.inventory.get(self._key(f"{folder}/{filename}")))

    def write_json_api(self, name, data, report) -> None:
        # No links in a bucket: /pypi/<name>/json is a copy of /json/<name>.
        for relpath in (f"json/{name}", f"pypi/{name}/json"):
            if self._put_page(self._key(relpath), data):
                report.changed_files.append(self.describe(relpath))

    def remove_other_layout(self, name: str) -> None:
        if self.s.hash_index and len(name) == 1:
            return
        other = project_folder(Path("simple"), name, not self.s.hash_index).as_posix()
        self._delete_keys(self.inventory.keys_under(self._key(f"{other}/")))

    def remove_pages(self, name: str) -> None:
        keys = self.inventory.keys_under(self._key(f"{page_folder(self.s, name)}/"))
        keys += [k for k in (self._key(f"pypi/{name}/json"), self._key(f"json/{name}"))
                 if self.inventory.get(k)]
        self._delete_keys(keys)

    # ------------------------------------------------------------------ start, --verify
    def begin(self, verify: bool) -> None:
        """Before the projects are examined. --verify: one LIST of the tree replaces what
        was remembered. Otherwise, when this machine never published the project list,
        one HEAD of it: a tree another machine (or a lost state folder) published is
        refused now, before anything is downloaded, rather than at its first page."""
        if verify:
            self._take_inventory()
            return
        page = "index.html" if self.s.simple_format == "HTML" else "index.v1_json"
        root = self._key(f"simple/{page}")
        if self.inventory.get(root) is None and self.store.head(root) is not None:
            raise Conflict(f"{self.describe(root[len(WEB) + 1:])} exists, but this machine's "
                           f"state ({self.s.state_dir}) does not know it: another machine "
                           "syncs this tree, or the state was lost; run `cas-sync pypi "
                           "--verify` once to adopt what the bucket holds")

    def _take_inventory(self) -> None:
        """One LIST of the tree: what is really there replaces what was remembered."""
        log.info("--verify: listing %s", self.describe())
        objects = [(o.key, o.size, o.etag) for o in self.store.list(f"{WEB}/")]
        self.inventory.adopt_listing(objects)
        self.listed = {key for key, _, _ in objects}

    def remove_strays(self, owned: set[str], report) -> None:
        """--verify: delete the files under packages/ that no project owns."""
        if self.listed is None or self.s.keep_removed:
            return
        prefix = self._key("packages/")
        for key in sorted(self.listed):
            if key.startswith(prefix) and key[len(prefix):] not in owned:
                self.store.delete(key)
                self.inventory.drop(key)
                report.strays.append((key[len(WEB) + 1:], "no project owns it: deleted"))
                log.info("--verify: %s: no project owns it: deleted",
                         self.describe(key[len(WEB) + 1:]))

    def close(self) -> None:
        with contextlib.suppress(CasError):
            self.downloads_done()
        try:
            self.inventory.save()
        except OSError as exc:
            log.warning("cannot save %s: %s", self.s.state_dir, exc)


def _remove_empty_folders(root: Path) -> None:
    """The staging folder's empty folders, once the uploads are done."""
    for folder, _, _ in os.walk(root, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
