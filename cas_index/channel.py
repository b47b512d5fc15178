"""Indexing a channel: platform folders of package files in; repodata, channeldata and
index pages out.

One run, under the channel lock (lock.py):

1. List each platform folder: package files are `*.conda` and `*.tar.bz2` whose names do
   not start with a dot; anything else (README, `*.part`, our own temporary files) is not
   looked at.
2. A folder whose listing (names, sizes, mtimes), options and outputs are exactly as the
   previous run left them is done: that is the whole of a run where nothing changed.
3. Otherwise the listing is compared with the cache (cache.py): new and changed files are
   read (package.py), in worker processes when there are many; files that vanished are
   dropped. Files that cannot be indexed are reported with the reason and left out, as is
   a file that was indexed before and is now corrupt.
4. Publish, each file through a temporary name and only when its bytes change:
   `repodata_from_packages.json` (what the packages say), `repodata.json` (+ `.zst`,
   `.bz2`; patched when there are instructions, see patch.py), `current_repodata.json`
   on request (current.py) and `index.html` (html.py).
5. `channeldata.json` and the channel's `index.html` (channeldata.py), from every platform
   folder's entries, again only when they change.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import TEMP_PREFIX, write_atomic, write_if_changed
from .cache import CACHE_DIR, CACHE_FILE, SubdirCache
from .errors import EXIT_NO_SPACE, EXIT_OK, EXIT_SKIPPED, CasIndexError, UsageError
from .lock import ChannelLock
from .patch import PATCH_FILE
from .repodata import dumps_repodata, write_repodata

# The platform folders conda clients know (conda's and rattler's lists).
KNOWN_SUBDIRS = frozenset({
    "noarch", "emscripten-wasm32", "wasi-wasm32", "freebsd-64", "linux-32", "linux-64",
    "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-ppc64le",
    "linux-riscv32", "linux-riscv64", "linux-s390x", "osx-64", "osx-arm64", "win-32",
    "win-64", "win-arm64", "zos-z",
})
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
REPODATA = "repodata.json"
FROM_PACKAGES = "repodata_from_packages.json"
CURRENT = "current_repodata.json"
CHANNEL_STATE = "cas-index-channel.json"  # in <channel>/.cache/
# Every file cas-index writes in a platform folder; their sizes and mtimes are part of the
# "nothing changed" check, so a deleted or hand-edited output is rebuilt.
SUBDIR_OUTPUTS = tuple(f"{base}{suffix}" for base in (REPODATA, FROM_PACKAGES, CURRENT)
                       for suffix in ("", ".zst", ".bz2")) + ("index.html", PATCH_FILE)
CHANNEL_OUTPUTS = ("channeldata.json", "index.html")
# Temporary files of ours that a killed run can leave behind (hidden, so never served or
# indexed); we hold the channel lock, so no live run of ours is writing them.
LEFTOVER_PREFIXES = tuple(f"{TEMP_PREFIX}{name}." for name in (*SUBDIR_OUTPUTS,
                                                              *CHANNEL_OUTPUTS))
# Bump when the bytes we publish for the same input change, so old states do not match.
STATE_VERSION = 1
# Below this many files to read, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 24


@dataclass(frozen=True)
class Options:
    """How to index (the CLI's flags)."""

    bz2: bool = True
    zst: bool = True
    current_repodata: bool = False
    patch: Any = None  # patch.PatchSource, or None
    force: bool = False
    threads: int | None = None  # worker processes reading packages; None: one per CPU
    lock_timeout: float = 600.0

    def signature(self) -> list:
        return [self.bz2, self.zst, self.current_repodata]


@dataclass(frozen=True)
class Skipped:
    file: str  # "<subdir>/<file name>", relative to the channel
    reason: str


@dataclass
class SubdirReport:
    subdir: str
    indexed: int = 0
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    read: int = 0  # files opened this run
    seconds: float = 0.0
    unchanged: bool = False


@dataclass
class ChannelReport:
    root: Path
    subdirs: list[SubdirReport] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # package files outside any folder
    seconds: float = 0.0

    @property
    def all_skipped(self) -> list[Skipped]:
        return self.skipped + [s for r in self.subdirs for s in r.skipped]

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.all_skipped else EXIT_OK


# ------------------------------------------------------------------------------ listing
def is_package_name(name: str) -> bool:
    return name.endswith(PACKAGE_SUFFIXES) and not name.startswith(".")


def list_packages(folder: Path, leftovers: list[str] | None = None
                  ) -> dict[str, tuple[int, int]]:
    """Package file name -> (size, mtime_ns) for the regular files in `folder`. Names of
    temporary files a killed run left are added to `leftovers`."""
    found: dict[str, tuple[int, int]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_package_name(entry.name):
                if leftovers is not None and entry.name.startswith(LEFTOVER_PREFIXES):
                    leftovers.append(entry.name)
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[entry.name] = (st.st_size, st.st_mtime_ns)
    return found


def present_subdirs(root: Path) -> list[str]:
    return sorted(name for name in KNOWN_SUBDIRS if (root / name).is_dir())


def stray_packages(root: Path) -> list[Skipped]:
    """Package files the channel would never serve: directly in the root, or in a folder
    whose name is not a platform."""
    stray = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name in KNOWN_SUBDIRS:
                continue
            if entry.is_file() and is_package_name(entry.name):
                stray.append(Skipped(entry.name, "package file in the channel root: move it "
                                     "into its platform folder (e.g. noarch/ or linux-64/)"))
            elif entry.is_dir():
                try:
                    count = sum(1 for name in os.listdir(entry.path) if is_package_name(name))
                except OSError:
                    continue
                if count:
                    stray.append(Skipped(entry.name, f"{count} package file(s) in a "
                                         "folder that is not a platform name; not indexed"))
    return stray


# ------------------------------------------------------------------------------ reading
def _read_job(job: tuple[str, str]) -> tuple:
    """Runs in a worker: ("ok", size, mtime_ns, record_json, facts_json), ("bad", reason)
    or ("gone",)."""
    from .package import PackageError, read_package

    path, subdir = job
    try:
        info = read_package(path, subdir)
    except FileNotFoundError:
        return ("gone",)
    except PackageError as exc:
        return ("bad", str(exc))
    return ("ok", info.size, info.mtime_ns, _compact(info.record), _compact(info.facts))


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def read_files(jobs: list[tuple[str, str]], workers: int) -> list[tuple]:
    """`_read_job` over `jobs`, in worker processes when that pays."""
    if workers <= 1 or len(jobs) < PARALLEL_MIN_FILES:
        return [_read_job(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    from . import package  # noqa: F401 - imported once here, inherited by forked workers

    chunksize = max(1, min(32, len(jobs) // (workers * 4)))
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=_pool_context()) as pool:
        return list(pool.map(_read_job, jobs, chunksize=chunksize))


def _pool_context() -> Any:
    import multiprocessing

    # fork starts workers in a millisecond with everything imported, but is only safe while
    # this process has no other threads (the command line never does at this point; a test
    # with a server thread does). forkserver otherwise.
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# ------------------------------------------------------------------------------ one folder
class _Subdir:
    """The work on one platform folder during a run."""

    def __init__(self, root: Path, subdir: str, options: Options):
        self.root, self.subdir, self.options = root, subdir, options
        self.folder = root / subdir
        self.report = SubdirReport(subdir)
        self.cache = SubdirCache(self.folder)
        self.listing: dict[str, tuple[int, int]] = {}
        self.cached: dict = {}
        self.to_read: list[str] = []
        self.instructions: dict[str, Any] = {}
        self.token = ""
        self.published_sha256: str | None = None
        self.entries: list[dict] | None = None

    # -- step 1 and 2
    def scan(self) -> None:
        started = time.perf_counter()
        self.folder.mkdir(exist_ok=True)
        leftovers: list[str] = []
        self.listing = list_packages(self.folder, leftovers)
        for name in leftovers:
            (self.folder / name).unlink(missing_ok=True)
        self.instructions, instructions_key = self._instructions()
        self.token = _digest([STATE_VERSION, self.root.name, self.options.signature(),
                              instructions_key, sorted(self.listing.items())])
        self.cache.open()
        state = self.cache.get_meta("published")
        if (not self.options.force and state and state.get("token") == self.token
                and state.get("outputs") == self._outputs_stat()):
            self.report.unchanged = True
            self.report.indexed = state["indexed"]
            self.report.skipped = [Skipped(f"{self.subdir}/{fn}", reason)
                                   for fn, reason in state["skipped"]]
            self.published_sha256 = state["sha256"]
        else:
            self.cached = self.cache.files()
            self.to_read = sorted(
                fn for fn, st in self.listing.items()
                if self.options.force or fn not in self.cached
                or (self.cached[fn].size, self.cached[fn].mtime_ns) != st)
        self.report.seconds += time.perf_counter() - started

    def _instructions(self) -> tuple[dict[str, Any], str | None]:
        from .patch import parse_instructions

        if self.options.patch is not None:
            instructions = self.options.patch.for_subdir(self.subdir)
            return instructions, _digest(instructions)
        path = self.folder / PATCH_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
        return parse_instructions(raw, str(path)), hashlib.sha256(raw).hexdigest()

    def _outputs_stat(self) -> dict[str, list[int] | None]:
        out: dict[str, list[int] | None] = {}
        for name in SUBDIR_OUTPUTS:
            try:
                st = os.stat(self.folder / name)
                out[name] = [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                out[name] = None
        return out

    # -- step 3
    def apply(self, results: dict[str, tuple], read_seconds: float) -> None:
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

        self.records: dict[str, dict[str, Any]] = {}
        self.facts: dict[str, str] = {}
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
            self.records[fn] = json.loads(record_json)
            self.facts[fn] = facts_json or "{}"
        report.removed = sorted(previously - set(self.records))
        report.indexed = len(self.records)
        report.seconds += time.perf_counter() - started + read_seconds

    # -- step 4
    def publish(self, channel_name: str) -> None:
        started = time.perf_counter()
        options, folder, report = self.options, self.folder, self.report
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
        written = write_repodata(folder, data, bz2_variant=options.bz2, zst_variant=options.zst)
        raw = dumps_repodata(doc) if patched is not doc else data
        written += write_repodata(folder, raw, name=FROM_PACKAGES, bz2_variant=False,
                                  zst_variant=False)
        if options.current_repodata:
            from .current import build_current_repodata

            written += write_repodata(folder, dumps_repodata(build_current_repodata(patched)),
                                      name=CURRENT, bz2_variant=options.bz2,
                                      zst_variant=options.zst)
        else:  # a stale current_repodata.json would mislead conda, which reads it first
            for suffix in ("", ".zst", ".bz2"):
                stale = folder / (CURRENT + suffix)
                if stale.exists():
                    stale.unlink()
                    report.deleted.append(stale.name)
        if options.patch is not None:
            from .patch import dumps_instructions

            if write_if_changed(folder / PATCH_FILE, dumps_instructions(self.instructions)):
                written.append(folder / PATCH_FILE)

        from .html import subdir_index_html

        listed = [(name, st[0], st[1] / 1e9) for name, st in self._outputs_stat().items()
                  if st is not None and name not in ("index.html", PATCH_FILE)]
        page = subdir_index_html(channel_name, self.subdir,
                                 {**patched["packages"], **patched["packages.conda"]}, listed)
        if write_if_changed(folder / "index.html", page):
            written.append(folder / "index.html")

        from .channeldata import subdir_entries

        facts = {fn: json.loads(self.facts[fn]) for fn in self.records}
        self.entries = subdir_entries(patched, facts)
        self.published_sha256 = hashlib.sha256(data).hexdigest()
        self.cache.set_meta("channeldata", self.entries)
        self.cache.set_meta("published", {
            "token": self.token,
            "outputs": self._outputs_stat(),
            "indexed": report.indexed,
            "skipped": [[s.file.split("/", 1)[1], s.reason] for s in report.skipped],
            "sha256": self.published_sha256,
        })
        report.written = [Path(p).name for p in written]
        report.seconds += time.perf_counter() - started

    def channel_entries(self) -> list[dict]:
        if self.entries is None:
            self.entries = self.cache.get_meta("channeldata") or []
        return self.entries


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------ a channel
def index_channel(root: str | Path, subdirs: Iterable[str] | None = None,
                  options: Options = Options(),
                  on_wait: Callable[[str], None] | None = None) -> ChannelReport:
    """Index platform folders `subdirs` of the channel at `root` (default: every platform
    folder present; `noarch/` is created when missing), then the channel's own files."""
    started = time.perf_counter()
    root = Path(root)
    report = ChannelReport(root)
    try:
        with ChannelLock(root, options.lock_timeout, on_wait):
            _index_locked(root, subdirs, options, report)
    except OSError as exc:
        raise _os_error(exc) from None
    report.seconds = time.perf_counter() - started
    return report


def _index_locked(root: Path, subdirs: Iterable[str] | None, options: Options,
                  report: ChannelReport) -> None:
    targets = sorted(set(subdirs) if subdirs else set(present_subdirs(root)))
    if not (root / "noarch").is_dir():
        targets = sorted(set(targets) | {"noarch"})  # clients refuse a channel without it
    report.skipped = stray_packages(root)
    for name in os.listdir(root):
        if name.startswith(LEFTOVER_PREFIXES):
            (root / name).unlink(missing_ok=True)
    works = [_Subdir(root, subdir, options) for subdir in targets]
    try:
        for work in works:
            work.scan()
        _read_and_apply([w for w in works if not w.report.unchanged], options)
        changed = [w for w in works if not w.report.unchanged]
        workers = max(1, min(len(changed), options.threads or os.cpu_count() or 1))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:  # compression releases the GIL
                list(pool.map(lambda w: w.publish(root.name), changed))
        else:
            for work in changed:
                work.publish(root.name)
        report.subdirs = [w.report for w in works]
        report.written = _publish_channel(root, {w.subdir: w for w in works}, options)
    except BaseException:
        for work in works:
            work.cache.close(commit=False)
        raise
    for work in works:
        work.cache.close(commit=True)


def _read_and_apply(works: list[_Subdir], options: Options) -> None:
    jobs = [(str(w.folder / fn), w.subdir) for w in works for fn in w.to_read]
    started = time.perf_counter()
    results = read_files(jobs, options.threads or os.cpu_count() or 1)
    seconds = time.perf_counter() - started
    by_subdir: dict[str, dict[str, tuple]] = {w.subdir: {} for w in works}
    for (path, subdir), result in zip(jobs, results, strict=True):
        by_subdir[subdir][os.path.basename(path)] = result
    for work in works:
        share = len(work.to_read) / len(jobs) if jobs else 0.0
        work.apply(by_subdir[work.subdir], seconds * share)


def _publish_channel(root: Path, works: dict[str, _Subdir], options: Options) -> list[str]:
    """channeldata.json and index.html for the channel, when any folder changed."""
    subdirs = [s for s in present_subdirs(root) if (root / s / REPODATA).is_file()]
    tokens = {}
    others: dict[str, SubdirCache] = {}
    for subdir in subdirs:
        if subdir in works:
            tokens[subdir] = works[subdir].published_sha256
        elif (root / subdir / CACHE_DIR / CACHE_FILE).is_file():
            others[subdir] = cache = SubdirCache(root / subdir)
            cache.open()
            tokens[subdir] = (cache.get_meta("published") or {}).get("sha256")
        else:  # indexed by another tool: listed in `subdirs`, packages unknown to us
            tokens[subdir] = None
    try:
        token = _digest([STATE_VERSION, root.name, tokens])
        state_path = root / CACHE_DIR / CHANNEL_STATE
        outputs = _stat_outputs(root, CHANNEL_OUTPUTS)
        try:
            state = json.loads(state_path.read_bytes())
        except (FileNotFoundError, ValueError):
            state = None
        if not options.force and state == {"token": token, "outputs": outputs}:
            return []
        from .channeldata import build_channeldata
        from .html import channel_index_html

        entries = {}
        for subdir in subdirs:
            if subdir in works:
                entries[subdir] = works[subdir].channel_entries()
            elif subdir in others:
                entries[subdir] = others[subdir].get_meta("channeldata") or []
        channeldata = build_channeldata(entries, subdirs)
        written = []
        text = (json.dumps(channeldata, indent=2, sort_keys=True) + "\n").encode("utf-8")
        if write_if_changed(root / "channeldata.json", text):
            written.append("channeldata.json")
        if write_if_changed(root / "index.html", channel_index_html(root.name, channeldata)):
            written.append("index.html")
        state_path.parent.mkdir(exist_ok=True)
        write_atomic(state_path, json.dumps(
            {"token": token, "outputs": _stat_outputs(root, CHANNEL_OUTPUTS)}).encode())
        return written
    finally:
        for cache in others.values():
            cache.close(commit=False)


def _stat_outputs(folder: Path, names: Iterable[str]) -> dict[str, list[int] | None]:
    out: dict[str, list[int] | None] = {}
    for name in names:
        try:
            st = os.stat(folder / name)
            out[name] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[name] = None
    return out


def _os_error(exc: OSError) -> CasIndexError:
    where = exc.filename or ""
    error = CasIndexError(f"{where}: {exc.strerror or exc}" if where else str(exc))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        error.exit_code = EXIT_NO_SPACE
    return error
