"""Where the sync's writes land: the publishing target. publish.py, removal.py, prepare.py
and sync.py decide what to write and in which order; the target does the writing.

`FolderTarget` is the folder tree as it always was (pages written atomically beside
themselves, the JSON API link, hard-linked page versions, files downloaded in place).
`pypi/bucket.py`'s `BucketTarget` is the same operations on an S3-compatible bucket. Both
name things relative to the tree's `web/` folder: pages by their folder
(`simple/<name>`), files by their relpath under `packages/`.

`open_target` picks one; the storage layer (obstore) is imported only for a bucket.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cas_index.atomic import write_if_changed

from ..digests import file_digest
from .local import check_local

if TYPE_CHECKING:
    from ..config import Config
    from ..net import DownloadResult
    from .plan import WantedFile
    from .results import SyncReport
    from .settings import PypiSettings

log = logging.getLogger(__name__)

PAGE_NAMES = {"HTML": ("index.html", "index.v1_html"), "JSON": ("index.v1_json",),
              "ALL": ("index.html", "index.v1_html", "index.v1_json")}
ALL_PAGE_NAMES = PAGE_NAMES["ALL"]


class Target(Protocol):
    """The operations of a publishing target (see the module docstring)."""

    is_bucket: bool

    def check_file(self, want: WantedFile, cached: list | None,
                   verify: bool) -> tuple[list | None, str | None]:
        """(state entry, None) when the wanted file is in place and verified, else (None,
        what is wrong: "missing", a size or digest mismatch)."""
        ...

    def digest(self, relpath: str) -> str:
        """The sha256 of the file `packages/<relpath>` in place."""
        ...

    def file_downloaded(self, result: DownloadResult) -> None:
        """Called as each download finishes (ok or not)."""
        ...

    def downloads_done(self) -> None:
        """Called once all downloads ended: what `file_downloaded` started is finished."""
        ...

    def stored(self, want: WantedFile, result: DownloadResult) -> list | None:
        """The state entry of a file just downloaded, None when it is not in place."""
        ...

    def write_pages(self, folder: str, outputs: dict[str, bytes], report: SyncReport,
                    fsync: bool, keep: tuple[str, ...] = ()) -> None: ...

    def write_versioned(self, folder: str, body: bytes, serial: int | None, keep: int,
                        report: SyncReport) -> None: ...

    def write_json_api(self, name: str, data: bytes, report: SyncReport) -> None: ...

    def remove_other_layout(self, name: str) -> None: ...

    def remove_pages(self, name: str) -> None:
        """A removed project's pages and JSON API copies."""
        ...

    def delete_file(self, relpath: str) -> bool:
        """Delete `packages/<relpath>`; whether there was one."""
        ...

    def describe(self, relpath: str = "") -> str:
        """A path under `web/` as a message names it."""
        ...

    def changed(self, dest: Path, relpath: str) -> Path | str:
        """How the diff file names a file just downloaded to `dest`."""
        ...

    def begin(self, verify: bool) -> None:
        """Before the projects are examined (not in a dry run); with --verify, learn what
        the tree really holds."""
        ...

    def close(self) -> None:
        """At the end of the run, whatever happened: remember what was published."""
        ...


class FolderTarget:
    """The tree in the folder `s.web` (today's behaviour)."""

    is_bucket = False

    def __init__(self, s: PypiSettings):
        self.s = s
        self.web = s.web

    def describe(self, relpath: str = "") -> str:
        return str(self.web / relpath) if relpath else str(self.web)

    def changed(self, dest: Path, relpath: str) -> Path:
        return dest

    def begin(self, verify: bool) -> None:
        pass  # (--verify: prepare.py re-hashes each file in place)

    def close(self) -> None:
        pass

    def check_file(self, want, cached, verify):
        return check_local(self.s, want, cached, verify)

    def digest(self, relpath: str) -> str:
        return file_digest(self.web / "packages" / relpath, "sha256")

    def file_downloaded(self, result) -> None:
        pass

    def downloads_done(self) -> None:
        pass

    def stored(self, want, result) -> list | None:
        from .local import digest_for

        try:
            st = result.job.dest.stat()
        except OSError:
            return None
        algorithm, expected = digest_for(self.s, want)
        if algorithm == "md5" and not want.sha256 and not want.md5:
            expected = None
        return [st.st_size, st.st_mtime_ns, algorithm, expected]

    def write_pages(self, folder, outputs, report, fsync, keep=()) -> None:
        from .publish import writing

        path = self.web / folder
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
        for filename, body in outputs.items():
            with writing(path / filename):
                if write_if_changed(path / filename, body, fsync=fsync):
                    report.changed_files.append(path / filename)
        for filename in ALL_PAGE_NAMES:
            if filename not in outputs and filename not in keep:
                with writing(path / filename):
                    (path / filename).unlink(missing_ok=True)

    def write_versioned(self, folder, body, serial, keep, report) -> None:
        from .publish import writing
        from .versions import publish_versioned

        path = self.web / folder
        with writing(path / "index.html"):
            report.changed_files.extend(publish_versioned(path, body, serial, keep))

    def write_json_api(self, name, data, report) -> None:
        from .publish import writing

        target = self.web / "json" / name
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            if write_if_changed(target, data, fsync=False):
                report.changed_files.append(target)
        link = self.web / "pypi" / name / "json"
        wanted = f"../../json/{name}"
        with writing(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink() or os.readlink(link) != wanted:
                tmp = link.with_name(".json.tmp-link")
                tmp.unlink(missing_ok=True)
                try:
                    os.symlink(wanted, tmp)
                    os.replace(tmp, link)
                finally:
                    tmp.unlink(missing_ok=True)

    def remove_other_layout(self, name: str) -> None:
        from .hashindex import remove_other_layout
        from .publish import writing

        simple = self.web / "simple"
        with writing((self.web / page_folder(self.s, name)).parent):
            remove_other_layout(simple, name, self.s.hash_index)

    def remove_pages(self, name: str) -> None:
        import shutil

        from .hashindex import project_folder

        for folder in (project_folder(self.web / "simple", name, self.s.hash_index),
                       self.web / "pypi" / name):
            if folder.exists():
                shutil.rmtree(folder)
        (self.web / "json" / name).unlink(missing_ok=True)

    def delete_file(self, relpath: str) -> bool:
        from .removal import delete_file

        return delete_file(self.s, relpath)


def open_target(s: PypiSettings, config: Config | None = None) -> Target:
    """The folder target, or the bucket's when the tree's location is s3://..."""
    if s.bucket is None:
        return FolderTarget(s)
    from .bucket import BucketTarget

    return BucketTarget(s, config)


def page_folder(s: PypiSettings, name: str) -> str:
    """A project's page folder below `web/`: `simple/<name>` (`simple/<n>/<name>` with
    hash_index)."""
    from .hashindex import project_folder

    return project_folder(Path("simple"), name, s.hash_index).as_posix()
