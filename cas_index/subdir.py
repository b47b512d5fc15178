"""Indexing one platform folder: list it, compare with its cache, take in what was read,
publish its files.

`SubdirIndex.scan()` decides whether anything changed (the listing, the options, the patch
instructions and the outputs exactly as the previous run left them means nothing to
do); `apply()` takes the results of reading the new and changed files; `publish()` writes
repodata_from_packages.json, repodata.json (+ .zst, .bz2; patched when there are
instructions) and its shards, run_exports.json, current_repodata.json on request and
index.html, each only when its bytes change, and records what it published for the next
run and for channeldata. A folder whose outputs are unchanged is still published again once
a dropped shard's grace period has passed, so that the shard is deleted.
"""

from __future__ import annotations

import os
import time

from .atomic import remove_if_present, write_if_changed
from .cache import CACHE_DIR, SubdirCache
from .errors import UsageError
from .layout import (
    CURRENT,
    FROM_PACKAGES,
    PATCH_FILE,
    RUN_EXPORTS,
    SHARD_INDEX,
    SHARDS_DIR,
    SUBDIR_OUTPUTS,
    channel_name,
    list_packages,
    listing_dict,
    listing_digest,
)
from .model import Options, Skipped, SubdirReport
from .state import SUBDIR_STATE, digest, read_state, write_state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import Any

# Bump when the bytes we publish for the same input change, so old states do not match.
STATE_VERSION = 1


class SubdirIndex:
    """The work on one platform folder during a run."""

    def __init__(self, root: str, subdir: str, options: Options):
        self.root, self.subdir, self.options = root, subdir, options
        self.folder = os.path.join(root, subdir)
        self.report = SubdirReport(subdir)
        self.cache = SubdirCache(self.folder)
        self.listing: dict[str, tuple[int, int]] = {}
        self.cached: dict = {}
        self.to_read: list[str] = []
        self.instructions: dict[str, Any] = {}
        self.token = ""
        self.published_sha256: str | None = None
        self.state: dict[str, Any] | None = None  # what publish() published, for state.py
        self.entries: list[dict] | None = None
        self.records: dict[str, dict[str, Any]] = {}  # file name -> record, after apply()
        self.facts: dict[str, str] = {}  # file name -> channeldata facts (JSON text)

    # -- step 1 and 2
    def scan(self) -> None:
        started = time.perf_counter()
        os.makedirs(self.folder, exist_ok=True)
        leftovers: list[str] = []
        odd: list[tuple[str, str]] = []  # named like packages, not files: reported
        names, numbers = list_packages(self.folder, leftovers, odd)
        odd.sort()
        for name in leftovers:
            remove_if_present(os.path.join(self.folder, name))
        self.instructions, instructions_key = self._instructions()
        # The listing in the order the folder gave it (no sort: 200,000 entries sort and
        # encode in ~0.7 s): an unchanged folder lists in the same order, and another
        # order only costs the slower check against the cache below.
        listing = listing_digest(names, numbers)
        self.token = digest([STATE_VERSION, channel_name(self.root), self.options.signature(),
                              instructions_key, listing, *([odd] if odd else [])])
        state = None if self.options.force else read_state(self.state_path)
        if (state and state.get("token") == self.token
                and state.get("outputs") == self._outputs_stat()
                and not self._shards_due(state.get("shards"))):
            self.report.unchanged = True
            self.report.indexed = state["indexed"]
            shards = state.get("shards")
            if self.options.shards and shards:
                self.report.shards = {"written": 0, "kept": shards["named"], "deleted": 0,
                                      "waiting": shards["waiting"], "index_written": False}
            self.report.skipped = [Skipped(f"{self.subdir}/{fn}", reason)
                                   for fn, reason in state["skipped"]]
            self.published_sha256 = state["sha256"]
        else:
            self.report.skipped.extend(Skipped(f"{self.subdir}/{name}", why)
                                       for name, why in odd)
            self.listing = listing_dict(names, numbers)
            self.cache.open()
            self.cached = self.cache.files()
            self.to_read = sorted(
                fn for fn, st in self.listing.items()
                if self.options.force or fn not in self.cached
                or (self.cached[fn].size, self.cached[fn].mtime_ns) != st)
        self.report.seconds += time.perf_counter() - started

    def _shards_due(self, shards: dict | None) -> bool:
        """True when an unnamed shard's grace period has passed: publish again (the output
        is the same), which deletes it."""
        since = (shards or {}).get("unnamed_since")
        now = time.time() if self.options.now is None else self.options.now
        return since is not None and now - since >= self.options.shard_grace_seconds

    def _instructions(self) -> tuple[dict[str, Any], str | None]:
        if self.options.patch is not None:
            instructions, warning = self.options.patch.for_subdir(self.subdir)
            if warning:
                self.report.warnings.append(warning)
            import json

            return instructions, digest(json.dumps(instructions, sort_keys=True))
        path = os.path.join(self.folder, PATCH_FILE)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
        from .patch import parse_instructions

        instructions, warning = parse_instructions(raw, path)
        if warning:
            self.report.warnings.append(warning)
        from .state import hash_bytes

        return instructions, hash_bytes(raw)

    def _outputs_stat(self) -> dict[str, list[int] | None]:
        out: dict[str, list[int] | None] = {}
        for name in SUBDIR_OUTPUTS:
            try:
                st = os.stat(os.path.join(self.folder, name))
                out[name] = [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                out[name] = None
        return out

    @property
    def state_path(self) -> str:
        return os.path.join(self.folder, CACHE_DIR, SUBDIR_STATE)

    def save_state(self) -> None:
        """Record what publish() published, once the cache holding its records is
        committed (a state naming records the cache lost would make later runs wrong)."""
        if self.state is not None:
            write_state(self.state_path, self.state)

    # -- step 3
    def apply(self, results: dict[str, tuple], read_seconds: float) -> None:
        from json import loads

        started = time.perf_counter()
        report, cached = self.report, self.cached
        report.read = len(results)
        previously = {fn for fn, entry in cached.items() if entry.record is not None}
        gone = [fn for fn in cached if fn not in self.listing]
        rows = []
        for fn, result in results.items():
            if result[0] == "gone":
                gone.append(fn)
                del self.listing[fn]
            elif result[0] == "bad":
                rows.append((fn, *self.listing[fn], None, None, result[1]))
            else:
                rows.append((fn, *result[1:], None))
        self.cache.forget(gone)
        self.cache.store(rows)

        self.records, self.facts = {}, {}
        for fn in sorted(self.listing):
            result = results.get(fn)
            if result is not None:
                if result[0] == "bad":
                    report.skipped.append(Skipped(f"{self.subdir}/{fn}", result[1]))
                    continue
                record_json, facts_json = result[3], result[4]
                if fn not in previously:
                    report.added.append(fn)
                elif cached[fn].record != record_json:
                    report.replaced.append(fn)
            else:
                entry = cached[fn]
                if entry.error is not None:
                    report.skipped.append(Skipped(f"{self.subdir}/{fn}", entry.error))
                    continue
                record_json, facts_json = entry.record, entry.facts
            self.records[fn] = loads(record_json)
            self.facts[fn] = facts_json or "{}"
        report.removed = sorted(previously - set(self.records))
        report.indexed = len(self.records)
        report.seconds += time.perf_counter() - started + read_seconds

    # -- step 4
    def publish(self) -> None:
        import hashlib
        import json
        from pathlib import Path  # the outputs' writers take Paths (not the warm path)

        from .repodata import dumps_repodata, publish_repodata, write_repodata

        started = time.perf_counter()
        options, folder, report = self.options, Path(self.folder), self.report
        doc = {
            "info": {"subdir": self.subdir},
            "packages": {fn: r for fn, r in self.records.items() if fn.endswith(".tar.bz2")},
            "packages.conda": {fn: r for fn, r in self.records.items() if fn.endswith(".conda")},
            "removed": [],
            "repodata_version": 1,
        }
        patched = doc
        if self.instructions:
            from .patch import apply_instructions

            patched = apply_instructions(doc, self.instructions)
        data = dumps_repodata(patched)
        published = publish_repodata(folder, data, shards=options.shards,
                                     shard_grace_seconds=options.shard_grace_seconds,
                                     now=options.now, force=options.force,
                                     shard_state_dir=folder / CACHE_DIR, bz2_variant=options.bz2,
                                     zst_variant=options.zst)
        # shard files are counted, not listed (there can be thousands)
        written = [path for path in published.paths if path.parent == folder]
        report.shards = published.shards.as_dict() if options.shards else None
        if published.shards.index_deleted:
            report.deleted.append(SHARD_INDEX)
        raw = dumps_repodata(doc) if patched is not doc else data
        written += write_repodata(folder, raw, name=FROM_PACKAGES, bz2_variant=False,
                                  zst_variant=False)
        if options.current_repodata:
            from .current import build_current_repodata

            written += write_repodata(folder, dumps_repodata(build_current_repodata(patched)),
                                      name=CURRENT, bz2_variant=options.bz2,
                                      zst_variant=options.zst)
        else:  # a stale current_repodata.json would mislead conda, which reads it first
            self._remove(CURRENT)
        facts = {fn: json.loads(self.facts[fn]) for fn in self.records}
        if options.run_exports:
            written += write_repodata(folder, dumps_repodata(self._run_exports(facts)),
                                      name=RUN_EXPORTS, bz2_variant=options.bz2,
                                      zst_variant=options.zst)
        else:
            self._remove(RUN_EXPORTS)
        if options.patch is not None:
            from .patch import dumps_instructions

            if write_if_changed(folder / PATCH_FILE, dumps_instructions(self.instructions)):
                written.append(folder / PATCH_FILE)

        from .html import subdir_index_html

        listed = [(name, st[0], st[1] / 1e9) for name, st in self._outputs_stat().items()
                  if st is not None and name not in ("index.html", PATCH_FILE, SHARDS_DIR)]
        page = subdir_index_html(channel_name(self.root), self.subdir,
                                 {**patched["packages"], **patched["packages.conda"]}, listed)
        if write_if_changed(folder / "index.html", page):
            written.append(folder / "index.html")

        from .channeldata import subdir_entries

        self.entries = subdir_entries(patched, facts)
        self.published_sha256 = hashlib.sha256(data).hexdigest()
        self.cache.set_meta("channeldata", self.entries)
        self.state = {
            "token": self.token,
            "outputs": self._outputs_stat(),
            "indexed": report.indexed,
            "skipped": [[s.file.split("/", 1)[1], s.reason] for s in report.skipped],
            "sha256": self.published_sha256,
            "shards": {"named": published.shards.named, "waiting": published.shards.waiting,
                       "unnamed_since": published.shards.oldest_unnamed},
        }
        report.written = [Path(p).name for p in written]
        report.seconds += time.perf_counter() - started

    def _remove(self, name: str) -> None:
        """Remove the output `name` and its compressed twins."""
        for suffix in ("", ".zst", ".bz2"):
            stale = name + suffix
            if os.path.lexists(os.path.join(self.folder, stale)):
                os.unlink(os.path.join(self.folder, stale))
                self.report.deleted.append(stale)

    def _run_exports(self, facts: dict[str, dict]) -> dict[str, Any]:
        """run_exports.json (CEP-12), as conda-index writes it: every package file indexed
        (unpatched: the file says what its archive says), with its info/run_exports.json,
        or {} when it has none."""
        sections: dict[str, dict] = {"packages": {}, "packages.conda": {}}
        for fn in self.records:
            key = "packages" if fn.endswith(".tar.bz2") else "packages.conda"
            sections[key][fn] = {"run_exports": facts[fn].get("run_exports") or {}}
        return {"info": {"subdir": self.subdir, "version": 1}, **sections}

    def channel_entries(self) -> list[dict]:
        if self.entries is None:
            self.cache.open()  # not opened by scan() when nothing changed
            self.entries = self.cache.get_meta("channeldata") or []
        return self.entries

