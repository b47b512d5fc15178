"""Indexing a channel: platform folders of package files in; repodata, channeldata and
index pages out.

The orchestration of one run, under the channel lock (lock.py):

1. List each platform folder (layout.py says what counts as a package file).
2. A folder whose listing (names, sizes, mtimes), options and outputs are exactly as the
   previous run left them (state.py) is done: that is the whole of a run where nothing
   changed.
3. Otherwise the listing is compared with the cache (cache.py): new and changed files of
   all folders are read together (package.py; reading.py uses worker processes when
   there are many); files that vanished are dropped. Files that cannot be indexed are
   reported with the reason and left out, as is a file that was indexed before and is
   now corrupt.
4. Publish each changed folder (subdir.py; folders in parallel threads, since compression
   releases the GIL), each file through a temporary name and only when its bytes change:
   `repodata_from_packages.json` (what the packages say), `repodata.json` (+ `.zst`,
   `.bz2`; patched when there are instructions, see patch.py) with its CEP-16 shards
   (shards.py), `run_exports.json`, `current_repodata.json` on request (current.py) and
   `index.html` (html.py).
5. `channeldata.json` and the channel's `index.html` (channeldata.py), from every platform
   folder's entries, again only when they change.

Paths are text throughout the run (os.path, not pathlib): a run where nothing changed
is mostly interpreter start-up, and importing pathlib (with the re, enum, fnmatch and
urllib.parse it pulls in) cost about a third of such a run.
"""

from __future__ import annotations

import errno
import os
import time

from .atomic import remove_if_present
from .cache import CACHE_DIR, CACHE_FILE, SubdirCache, is_full, sqlite_error
from .errors import CasIndexError, DiskFull, reason
from .layout import (
    CHANNEL_OUTPUTS,
    KNOWN_SUBDIRS,
    LEFTOVER_PREFIXES,
    REPODATA,
    channel_name,
    present_subdirs,
    stray_packages,
)
from .lock import ChannelLock
from .model import ChannelReport, Options, Skipped, SubdirReport
from .reading import read_files
from .state import CHANNEL_STATE, SUBDIR_STATE, digest, read_state, write_state
from .subdir import STATE_VERSION, SubdirIndex

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = ["KNOWN_SUBDIRS", "ChannelReport", "Options", "Skipped", "SubdirReport",
           "index_channel"]


def index_channel(root: str | Path, subdirs: Iterable[str] | None = None,
                  options: Options | None = None,
                  on_wait: Callable[[str], None] | None = None) -> ChannelReport:
    """Index platform folders `subdirs` of the channel at `root` (default: every platform
    folder present; `noarch/` is created and indexed whenever it has no repodata.json yet),
    then the channel's own files."""
    started = time.perf_counter()
    root = os.fspath(root)
    options = options or Options()
    report = ChannelReport(root)
    try:
        with ChannelLock(root, options.lock_timeout, on_wait):
            _index_locked(root, subdirs, options, report)
    except OSError as exc:
        raise _os_error(exc, root) from None
    except sqlite_error() as exc:  # evaluated only when something was raised
        if is_full(exc):
            raise DiskFull(f"{root}: the disk is full (sqlite could not write the index "
                           f"cache, <platform>/{CACHE_DIR}/{CACHE_FILE}); {DiskFull.advice}"
                           ) from None
        raise CasIndexError(f"{root}: a cache database failed ({exc}); the caches "
                            f"(<platform>/{CACHE_DIR}/) are disposable: delete them and "
                            "rerun") from None
    report.seconds = time.perf_counter() - started
    return report


def _index_locked(root: str, subdirs: Iterable[str] | None, options: Options,
                  report: ChannelReport) -> None:
    targets = sorted(set(subdirs) if subdirs else set(present_subdirs(root)))
    if not os.path.isfile(os.path.join(root, "noarch", REPODATA)):
        # clients refuse a channel without noarch/repodata.json, whatever was asked for
        targets = sorted(set(targets) | {"noarch"})
    report.skipped = stray_packages(root)
    for name in os.listdir(root):
        if name.startswith(LEFTOVER_PREFIXES):
            remove_if_present(os.path.join(root, name))
    works = [SubdirIndex(root, subdir, options) for subdir in targets]
    try:
        for work in works:
            work.scan()
        _read_and_apply([w for w in works if not w.report.unchanged], options)
        changed = [w for w in works if not w.report.unchanged]
        workers = max(1, min(len(changed), options.threads or os.cpu_count() or 1))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:  # compression releases the GIL
                list(pool.map(SubdirIndex.publish, changed))
        else:
            for work in changed:
                work.publish()
        report.subdirs = [w.report for w in works]
        report.written = _publish_channel(root, {w.subdir: w for w in works}, options)
    except BaseException:
        for work in works:
            work.cache.close(commit=False)
        raise
    for work in works:
        work.cache.close(commit=True)
    for work in works:
        work.save_state()


def _read_and_apply(works: list[SubdirIndex], options: Options) -> None:
    jobs = [(os.path.join(w.folder, fn), w.subdir) for w in works for fn in w.to_read]
    started = time.perf_counter()
    results = read_files(jobs, options.threads or os.cpu_count() or 1)
    seconds = time.perf_counter() - started
    by_subdir: dict[str, dict[str, tuple]] = {w.subdir: {} for w in works}
    for (path, subdir), result in zip(jobs, results, strict=True):
        by_subdir[subdir][os.path.basename(path)] = result
    for work in works:
        share = len(work.to_read) / len(jobs) if jobs else 0.0
        work.apply(by_subdir[work.subdir], seconds * share)


def _publish_channel(root: str, works: dict[str, SubdirIndex], options: Options) -> list[str]:
    """channeldata.json and index.html for the channel, when any folder changed."""
    subdirs = [s for s in present_subdirs(root)
               if os.path.isfile(os.path.join(root, s, REPODATA))]
    tokens = {}
    others: dict[str, SubdirCache] = {}
    for subdir in subdirs:
        if subdir in works:
            tokens[subdir] = works[subdir].published_sha256
        elif os.path.isfile(os.path.join(root, subdir, CACHE_DIR, CACHE_FILE)):
            others[subdir] = SubdirCache(os.path.join(root, subdir))  # opened when publishing
            state = read_state(os.path.join(root, subdir, CACHE_DIR, SUBDIR_STATE)) or {}
            tokens[subdir] = state.get("sha256")
        else:  # indexed by another tool: listed in `subdirs`, packages unknown to us
            tokens[subdir] = None
    try:
        token = digest([STATE_VERSION, channel_name(root), tokens])
        state_path = os.path.join(root, CACHE_DIR, CHANNEL_STATE)
        outputs = _stat_outputs(root, CHANNEL_OUTPUTS)
        state = read_state(state_path)
        if not options.force and state == {"token": token, "outputs": outputs}:
            return []
        import json

        from .atomic import write_if_changed
        from .channeldata import build_channeldata
        from .html import channel_index_html

        entries = {}
        for subdir in subdirs:
            if subdir in works:
                entries[subdir] = works[subdir].channel_entries()
            elif subdir in others:
                others[subdir].open()
                entries[subdir] = others[subdir].get_meta("channeldata") or []
        channeldata = build_channeldata(entries, subdirs)
        written = []
        text = (json.dumps(channeldata, indent=2, sort_keys=True) + "\n").encode("utf-8")
        if write_if_changed(os.path.join(root, "channeldata.json"), text):
            written.append("channeldata.json")
        if write_if_changed(os.path.join(root, "index.html"),
                            channel_index_html(channel_name(root), channeldata)):
            written.append("index.html")
        os.makedirs(os.path.dirname(state_path), exist_ok=True)
        write_state(state_path, {"token": token, "outputs": _stat_outputs(root, CHANNEL_OUTPUTS)})
        return written
    finally:
        for cache in others.values():
            cache.close(commit=False)


def _stat_outputs(folder: str, names: Iterable[str]) -> dict[str, list[int] | None]:
    out: dict[str, list[int] | None] = {}
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
            out[name] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[name] = None
    return out


def _os_error(exc: OSError, root: str) -> CasIndexError:
    where = exc.filename or root
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is used up"
        return DiskFull(f"{where}: {exc.strerror or 'no space left on device'} ({what}); "
                        f"{DiskFull.advice}")
    return CasIndexError(f"{where}: {reason(exc)}")
