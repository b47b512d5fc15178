"""Planning: what one platform folder needs, from the selected records and what is on disk.

A pure function: `plan_platform(selected, local, bad_hashes)` says which files to
download (missing, wrong size, or failing `--verify`), which are up to date, which to
delete (package files in the folder that are no longer selected or no longer upstream),
and which interrupted downloads (`.NAME.part`) belong to no planned download and are
stale. Gathering the local inventory and hashing are I/O, done by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

from cas_index.plain import Plain

from .repodata import EXTENSIONS

record_size = attrgetter("size")  # of a record with attributes (repodata.RecordView)


class PlatformPlan(Plain):
    _fields = (
        "download", "up_to_date", "delete", "stale_partials", "download_bytes", "delete_bytes")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {
        "download": list, "up_to_date": list, "delete": list, "stale_partials": list,
        "download_bytes": 0, "delete_bytes": 0}
    _factories: ClassVar[frozenset] = frozenset({
        "download", "up_to_date", "delete", "stale_partials"})
    if TYPE_CHECKING:
        download: list[str]  # file names
        up_to_date: list[str]
        delete: list[str]
        stale_partials: list[str]  # targets of useless .part files
        download_bytes: int
        delete_bytes: int


def is_package_file(name: str) -> bool:
    """A file the mirror owns in a platform folder (hidden and temporary files are not)."""
    return not name.startswith(".") and name.endswith(EXTENSIONS)


def plan_platform(selected: Mapping[str, Any], local: Mapping[str, int],
                  bad_hashes: frozenset[str] = frozenset(),
                  published: Mapping[str, Any] | None = None,
                  partials: Mapping[str, int] | None = None,
                  keep_removed: bool = False) -> PlatformPlan:
    """`selected`: file name -> record (with `.get("size")`, `.get("sha256")`...); `local`:
    file name -> size of the package files present; `bad_hashes`: local files whose hash
    was checked and did not match; `published`: file name -> record of what we published
    last time (the hashes of the files we verified then); `partials`: target file name ->
    size of its `.part` file (a download a killed run left behind); `keep_removed`: package
    files no longer selected stay (nothing in `delete`).

    A local file is up to date when its size matches and nothing says its content differs:
    upstream may rebuild a file under the same name and size, so a record whose hash is
    not the one we published means a download. `download` and `up_to_date` list their
    files in `selected`'s order."""
    plan = PlatformPlan()
    published = published or {}
    if not local:  # a new folder: everything is downloaded (a C-level pass, no test each)
        plan.download = list(selected)
        plan.download_bytes = _total_size(selected.values())
        selected = {}
    for fn, record in selected.items():
        size = record.get("size")
        have = local.get(fn)
        if have is None or (size is not None and have != size) or fn in bad_hashes \
                or _content_changed(record, published.get(fn)):
            plan.download.append(fn)
            plan.download_bytes += size or 0
        else:
            plan.up_to_date.append(fn)
    for fn in sorted(local):
        if not keep_removed and fn not in selected and is_package_file(fn):
            plan.delete.append(fn)
            plan.delete_bytes += local[fn]
    planned = set(plan.download) if partials else set()
    for fn in sorted(partials or {}):
        if fn not in planned:  # a planned download resumes its .part; others never will
            plan.stale_partials.append(fn)
            plan.delete_bytes += partials[fn]
    return plan


def _total_size(records: Any) -> int:
    """The sum of the records' sizes (unknown ones count 0)."""
    try:  # records with attributes (repodata.RecordView): read in C
        return sum(filter(None, map(record_size, records)))
    except AttributeError:
        return sum(r.get("size") or 0 for r in records)


def _content_changed(record: Any, before: Any) -> bool:
    if before is None:
        return False  # the caller hashed files it has no record of (bad_hashes)
    for algorithm in ("sha256", "md5"):
        now, then = record.get(algorithm), getattr(before, algorithm, None)
        if now and then:
            return now.lower() != then.lower()
    return False
