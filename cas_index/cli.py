"""`cas-index`: the command line. Turns paths and flags into `index_channel` calls, prints
a summary per platform folder, and maps errors to the documented exit statuses.

Imports are kept lazy: a run where nothing changed is mostly interpreter start-up, so
everything that only a run with work needs (package reading, patches, html, compression)
is imported where it is used, and click only when the arguments need it (args.py reads
the ordinary forms; command.py is the click command, with --help and usage errors).
"""

from __future__ import annotations

import errno
import os
import sys

from .errors import EXIT_BUG, EXIT_OK, CasIndexError, DiskFull, UsageError, reason

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import Any

    from .model import ChannelReport

PROG = "cas-index"


def run(paths: tuple[str, ...], subdirs: tuple[str, ...], threads: int | None, force: bool,
        no_bz2: bool, no_zst: bool, current_repodata: bool, no_shards: bool,
        shard_grace_days: float, no_run_exports: bool, patch_file: str | None,
        lock_timeout: float, quiet: bool, as_json: bool, debug: bool) -> int:
    """One command line's work, from the parameters the click command (command.py) or the
    quick reader (args.py) gives; returns the exit status."""
    from .channel import KNOWN_SUBDIRS, Options, index_channel

    patch = None
    if patch_file is not None:
        from .patch import PatchSource

        patch = PatchSource(patch_file)
        if patch.warning:
            echo(f"{PROG}: warning: {patch.warning}", err=True)
    options = Options(bz2=not no_bz2, zst=not no_zst, current_repodata=current_repodata,
                      patch=patch, force=force, threads=threads, lock_timeout=lock_timeout,
                      shards=not no_shards, shard_grace_seconds=shard_grace_days * 86400,
                      run_exports=not no_run_exports)

    if any(p[:5].lower() == "s3://" for p in paths):
        # A channel in object storage: cas_mirror's storage layer stages it locally and
        # runs this same indexer there (the one place cas_index reaches into cas_mirror).
        from cas_mirror.stored_index import run_index_command

        return run_index_command(paths, subdirs, options, quiet, as_json)
    targets = resolve_targets(paths, subdirs, KNOWN_SUBDIRS)

    def on_wait(message: str) -> None:
        echo(f"{PROG}: {message}", err=True)

    reports = []
    for root, wanted in targets:
        report = index_channel(root, wanted, options, on_wait=on_wait)
        reports.append(report)
        for warning in report.all_warnings:
            echo(f"{PROG}: warning: {warning}", err=True)
        for skipped in report.all_skipped:
            echo(f"{PROG}: skipped {os.path.join(root, skipped.file)}: {skipped.reason}",
                 err=True)
        if not quiet and not as_json:
            echo(render_report(report))
    if as_json:
        import json

        echo(json.dumps(json_summary(reports), indent=2))
    return max((r.exit_code for r in reports), default=EXIT_OK)


def resolve_targets(paths: tuple[str, ...], subdirs: tuple[str, ...],
                    known: frozenset[str]) -> list[tuple[str, list[str] | None]]:
    """(channel root, platform folders or None for all) per distinct channel, in order."""
    for name in subdirs:
        if name not in known:
            from difflib import get_close_matches

            close = get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"--subdir {name!r}: not a platform name{hint}; known: "
                             f"{', '.join(sorted(known))}")
    merged: dict[str, tuple[str, set[str] | None]] = {}  # by real path
    for text in paths:
        path = os.fspath(text)
        if not os.path.exists(path):
            raise UsageError(f"{text}: no such folder")
        if not os.path.isdir(path):
            raise UsageError(f"{text}: not a folder (give a channel root or a platform folder)")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"{text}: cannot read the folder (permission denied)")
        # the name as given, not as resolved: chan/linux-64 may be a symlink to any name
        path = os.path.abspath(path)
        parent, name = os.path.split(path)
        if name in known:
            if subdirs and set(subdirs) != {name}:
                raise UsageError(f"{text} is the platform folder {name!r}; --subdir "
                                 "applies to channel roots (give the channel root instead)")
            root, wanted = parent, {name}
        else:
            check_channel_root(text, path, known)
            root, wanted = path, set(subdirs) or None
        key = os.path.realpath(root)
        if key in merged:
            held = merged[key][1]
            merged[key] = (merged[key][0],
                           None if held is None or wanted is None else held | wanted)
        else:
            merged[key] = (root, wanted)
    return [(root, sorted(w) if w is not None else None) for root, w in merged.values()]


def check_channel_root(text: str, path: str, known: frozenset[str]) -> None:
    """Refuse a folder that is a platform folder under another name (it holds repodata.json,
    or packages and no platform folder): indexing it as a channel would create
    `<it>/noarch/`, channeldata.json and index.html inside it."""
    from .layout import REPODATA, is_package_name

    names = os.listdir(path)
    if REPODATA in names and os.path.isfile(os.path.join(path, REPODATA)):
        raise UsageError(
            f"{text} holds {REPODATA}, so it is a platform folder, not a channel: give its "
            f"channel (the parent folder, {os.path.dirname(path)}) and name the folder after its "
            "platform (linux-64, noarch, ...); nothing was indexed")
    if any(is_package_name(n) for n in names) and not any(
            n in known and os.path.isdir(os.path.join(path, n)) for n in names):
        raise UsageError(
            f"{text} holds package files but no platform folder: for a channel, move them "
            "into <platform>/ folders (noarch/, linux-64/, ...); for a platform folder, "
            f"give its channel (the parent folder, {os.path.dirname(path)}) and name the folder "
            "after its platform; nothing was indexed")


def render_report(report: ChannelReport) -> str:
    """The summary table of one channel, for people and log files."""
    header = ("platform", "files", "added", "replaced", "removed", "skipped", "seconds")
    rows = [header]
    for sub in report.subdirs:
        rows.append((sub.subdir, str(sub.indexed), str(len(sub.added)), str(len(sub.replaced)),
                     str(len(sub.removed)), str(len(sub.skipped)), f"{sub.seconds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    import time

    lines = [f"{time.strftime('%Y-%m-%d %H:%M:%S')} {report.root}"]  # log files want when
    for row, sub in zip(rows, [None, *report.subdirs], strict=True):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        note = ""
        if sub is not None:
            if sub.unchanged:
                note = "  unchanged"
            elif sub.written or sub.deleted:
                note = f"  wrote {len(sub.written)} file(s)" + (
                    f", removed {len(sub.deleted)}" if sub.deleted else "")
            else:
                note = "  same output"
            if sub.shards:
                note += (f"; shards: {sub.shards['written']} written, {sub.shards['kept']} "
                         f"kept" + (f", {sub.shards['deleted']} deleted"
                                    if sub.shards["deleted"] else ""))
        lines.append("  " + "  ".join(cells) + note)
    channel = ("wrote " + ", ".join(report.written)) if report.written else "unchanged"
    lines.append(f"  channel files: {channel}; {report.seconds:.2f} s in all")
    return "\n".join(lines)


def json_summary(reports: list[ChannelReport]) -> dict[str, Any]:
    def skipped(items):
        return [{"file": s.file, "reason": s.reason} for s in items]

    return {
        "channels": [{
            "path": str(r.root),
            "seconds": round(r.seconds, 3),
            "written": r.written,
            "skipped": skipped(r.skipped),
            "subdirs": [{
                "subdir": s.subdir, "indexed": s.indexed, "added": s.added,
                "replaced": s.replaced, "removed": s.removed, "skipped": skipped(s.skipped),
                "warnings": s.warnings,
                "read": s.read, "written": s.written, "deleted": s.deleted,
                "unchanged": s.unchanged, "shards": s.shards, "seconds": round(s.seconds, 3),
            } for s in r.subdirs],
        } for r in reports],
        "exit_status": max((r.exit_code for r in reports), default=EXIT_OK),
    }


def echo(message: str, err: bool = False) -> None:
    if err:
        from .streams import say

        return say(message)
    try:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the result nobody reads any more: `main` stops there (streams.py)
    except OSError as exc:
        # the summary cannot be written (`> /dev/full`): the index itself is published
        kind = DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else UsageError
        raise kind(f"cannot write the summary to stdout: {reason(exc)}; "
                   "the published files are consistent") from None


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and maps errors to exit statuses."""
    from .args import quick_parse

    argv = sys.argv[1:] if argv is None else argv
    params = quick_parse(argv)
    state: dict[str, bool] = {"debug": bool(params and params["debug"])}
    try:
        if params is None:
            from .command import run_click

            return run_click(argv, state)
        return run(**params)
    except KeyboardInterrupt:
        echo(f"{PROG}: interrupted; the published files are consistent", err=True)
        return 130
    except CasIndexError as exc:
        echo(f"{PROG}: error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: say so plainly, traceback on request
        from .streams import READER_GONE, reader_went_away

        if reader_went_away(exc):  # `cas-index ... | head`: not a bug
            return READER_GONE
        if state["debug"]:
            import traceback

            traceback.print_exc()
        else:
            echo(f"{PROG}: internal error: {sys.exc_info()[1]!r}; rerun with --debug "
                 "for the traceback and please report it", err=True)
        return EXIT_BUG
    finally:
        from .streams import settle_stdout

        settle_stdout()  # what could not be written is not written again at exit


def console() -> int:
    """The `cas-index` program (pyproject's entry point): `main` in a process that ends
    with it (oneshot.py)."""
    from .oneshot import run_once

    return run_once(main)
