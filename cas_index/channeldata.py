"""`channeldata.json`: one entry per package name across the channel's platform folders.

Built the way conda-index builds it, from the published (patched) records plus the facts
read from each package (about.json fields, recipe source URLs, link-script flags,
run_exports):

- Per platform folder, records are taken as conda sees them (`.conda` first, `.tar.bz2`
  only without a `.conda` twin), and per (name, version) the record with the newest
  timestamp represents that version.
- Folders are folded in name order. A version newer than the one already held (conda
  version order; equal versions: newer timestamp) replaces description, home, license,
  summary, URLs, ... wherever it has a value; values are otherwise only filled in where
  missing. Flags such as `post_link` are true when any version sets them. `run_exports`
  is kept per version, `subdirs` lists every folder holding the name, and `timestamp`
  (seconds) is that of the last version folded, as conda-index does.

Unlike conda-index, the document is rebuilt from the current packages every time rather
than merged into the previous channeldata.json, so names whose files are gone leave it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CHANNELDATA_VERSION = 1
# about.json fields channeldata.json carries (the newest version's value wins).
ABOUT_FIELDS = ("description", "dev_url", "doc_url", "doc_source_url", "home", "license",
                "source_url", "source_git_url", "summary", "icon_url", "icon_hash", "tags",
                "identifiers", "keywords", "recipe_origin")
NEWEST_WINS = (*ABOUT_FIELDS, "version")
ANY_TRUE = ("binary_prefix", "text_prefix", "activate.d", "deactivate.d", "pre_link",
            "post_link", "pre_unlink")
_KEPT = frozenset({"name", "timestamp", "run_exports", *NEWEST_WINS, *ANY_TRUE})


def _conda_name(fn: str) -> str:
    return fn[: -len(".tar.bz2")] + ".conda"


def subdir_entries(doc: dict[str, Any], facts: dict[str, dict[str, Any]]) -> list[dict]:
    """The per-version entries one platform folder contributes, in folding order.

    `doc` is the published repodata document, `facts` maps file names to what
    `package.channeldata_facts` read from them."""
    conda, legacy = doc.get("packages.conda", {}), doc.get("packages", {})
    order = sorted(conda) + sorted(fn for fn in legacy if _conda_name(fn) not in conda)
    newest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for fn in order:
        record = conda[fn] if fn in conda else legacy[fn]
        key = (record.get("name"), record.get("version"))
        held = newest.get(key)
        if held is None or held[1].get("timestamp", 0) < record.get("timestamp", 0):
            newest[key] = (fn, record)
    entries = []
    for fn, record in newest.values():
        data = {**facts.get(fn, {}), **record}
        entries.append({k: v for k, v in data.items() if k in _KEPT})
    return entries


def build_channeldata(entries_by_subdir: dict[str, list[dict]],
                      subdirs: Iterable[str]) -> dict[str, Any]:
    """Fold the platform folders' entries into the channeldata document."""
    packages: dict[str, dict[str, Any]] = {}
    newer = _VersionOrder()
    for subdir in sorted(entries_by_subdir):
        for data in entries_by_subdir[subdir]:
            name = data["name"]
            entry = packages.setdefault(name, {})
            data_version = data.get("version", "0")
            held_version = entry.get("version", "0")
            data_newer = not entry or newer(data_version, held_version) or (
                data_version == held_version
                and _seconds(data.get("timestamp", 0)) > _seconds(entry.get("timestamp", 0)))
            for key in NEWEST_WINS:
                if data.get(key) and (data_newer or not entry.get(key)):
                    entry[key] = data[key]
                else:
                    entry[key] = entry.get(key)
            for key in ANY_TRUE:
                entry[key] = bool(data.get(key) or entry.get(key))
            entry["subdirs"] = sorted(set(entry.get("subdirs", [])) | {subdir})
            run_exports = entry.get("run_exports", {})
            if data.get("run_exports"):
                run_exports[data_version] = data["run_exports"]
            entry["run_exports"] = run_exports
            entry["timestamp"] = _seconds(max(data.get("timestamp", 0) or 0, 0))
    return {
        "channeldata_version": CHANNELDATA_VERSION,
        "packages": {name: {k: v for k, v in entry.items() if v is not None}
                     for name, entry in sorted(packages.items())},
        "subdirs": sorted(set(subdirs)),
    }


def _seconds(timestamp: Any) -> int:
    """Record timestamps are milliseconds (old ones seconds); channeldata wants seconds."""
    try:
        value = int(timestamp)
    except (TypeError, ValueError):
        return 0
    return value // 1000 if value > 253402300799 else value  # 9999-12-31 in seconds


class _VersionOrder:
    """`newer(a, b)`: version string a sorts after b in conda's order. rattler is imported
    only when two different versions of one name meet."""

    def __init__(self):
        self._parsed: dict[str, Any] = {}
        self._version = None

    def _parse(self, text: str) -> Any:
        if text not in self._parsed:
            if self._version is None:
                from rattler import Version

                self._version = Version
            try:
                self._parsed[text] = self._version(str(text))
            except Exception:  # noqa: BLE001 - rattler raises several types
                self._parsed[text] = None
        return self._parsed[text]

    def __call__(self, a: str, b: str) -> bool:
        if a == b:
            return False
        pa, pb = self._parse(a), self._parse(b)
        if pa is None or pb is None:
            return pa is not None
        return pa > pb
