"""Turning a sync's results into what users read: the summary table, the dry-run plan
(with the files it would download and delete), warnings, the `--json` document for
monitoring, and `--explain` lines."""

from __future__ import annotations

import json
from itertools import islice
from typing import TYPE_CHECKING, TextIO

from ..net import human_bytes
from ..output import MAX_ROWS, failure_lines, plain_table, rows_note
from ..text import plural, safe
from .results import PlannedFile, PlatformReport, SyncReport

if TYPE_CHECKING:  # (explain.py imports the whole pipeline: a sync's report needs none of it)
    from .explain import ExplainRow

NAMED = 5  # records named per platform in the dependency warning; --json has all


def render_summary(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.platforms:
        status = (p.error and "error") or (f"{len(p.failed)}" if p.failed else "0")
        selected = f"not configured: {p.unconfigured}" if p.unconfigured else str(p.selected)
        rows.append([p.channel, p.platform, selected, str(p.downloaded),
                     human_bytes(p.bytes), str(p.deleted), status, f"{p.seconds:.2f}"])
    plain_table("cas-sync summary", ["channel", "platform", "selected", "downloaded", "bytes",
                                "deleted", "failed", "seconds"], rows, stream)
    downloaded = sum(p.downloaded for p in report.platforms)
    received = sum(p.bytes for p in report.platforms)
    print(f"{plural(downloaded, 'file')} ({human_bytes(received)}) downloaded in "
          f"{report.seconds:.2f} s; exit status {report.exit_code}", file=stream)
    _render_verified(report, stream)
    render_warnings(report, stream)
    render_failures(report, stream)


def render_plan(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.platforms:
        if p.error:
            rows.append([p.channel, p.platform, "error", "", "", "", "", ""])
            continue
        if p.unconfigured:
            rows.append([p.channel, p.platform, f"not configured: {p.unconfigured}",
                         "", "", "", "", ""])
            continue
        rows.append([p.channel, p.platform, str(p.selected), str(p.dropped), str(p.to_download),
                     human_bytes(p.to_download_bytes), str(p.up_to_date),
                     f"{p.to_delete} ({human_bytes(p.to_delete_bytes)})"])
    plain_table("cas-sync plan (dry run: nothing changed)",
           ["channel", "platform", "selected", "dropped", "download", "bytes", "up to date",
            "delete"], rows, stream)
    print(f"mirror_dir {report.mirror_dir}: {report.mirror_dir_status}", file=stream)
    _render_files("would download", report, lambda p: p.planned_download, stream)
    _render_files("would delete", report, lambda p: p.planned_delete, stream)
    _render_verified(report, stream)
    render_warnings(report, stream)
    render_failures(report, stream)


def _render_files(title: str, report: SyncReport, files, stream: TextIO) -> None:
    """The files a dry run would download or delete: the first MAX_ROWS named, the rest
    counted (a platform of 300,000 records would otherwise print 300,000 lines)."""
    count = sum(len(files(p)) for p in report.platforms)
    if not count:
        return
    shown = list(islice(((p, f) for p in report.platforms for f in files(p)), MAX_ROWS))
    print(f"{title} ({plural(count, 'file')}):", file=stream)
    print("\n".join(f"  {p.channel}/{p.platform}/{safe(f.name)}  "
                    f"{'size unknown' if f.size is None else human_bytes(f.size)}"
                    for p, f in shown), file=stream)
    if note := rows_note(count, len(shown), "files"):
        print(note, file=stream)


def _render_verified(report: SyncReport, stream: TextIO) -> None:
    lines = [f"  {p.channel}/{p.platform}/{safe(fn)}: hash does not match upstream; {action}"
             for p in report.platforms for fn, action in p.verified_bad.items()]
    if lines:
        print("--verify found:", file=stream)
        print("\n".join(lines), file=stream)


def dependency_warning(p: PlatformReport) -> str:
    named = [f"{safe(fn)} (needs {', '.join(safe(n) for n in names)})"
             for fn, names in islice(p.unsatisfied.items(), NAMED)]
    more = len(p.unsatisfied) - len(named)
    tail = f"; and {more} more (--json has all)" if more > 0 else ""
    verb = "depends" if len(p.unsatisfied) == 1 else "depend"
    return (f"{p.channel}/{p.platform}: {plural(len(p.unsatisfied), 'kept record')} {verb} "
            f"on packages nothing mirrored provides: {'; '.join(named)}{tail}")


def blocked_lines(p: PlatformReport) -> list[str]:
    """The closure's unmet dependencies (and unsolvable environments) of a platform."""
    out = []
    for b in p.blocked[:NAMED]:
        others = f" (and {plural(b.count - 1, 'other record')})" if b.count > 1 else ""
        out.append(f"{p.channel}/{p.platform}: {safe(b.needed_by)}{others} needs "
                   f"{safe(b.spec)}, not mirrored: {safe(b.why)}")
    if len(p.blocked) > NAMED:
        out.append(f"{p.channel}/{p.platform}: and {len(p.blocked) - NAMED} more unmet "
                   "dependencies (--json has all)")
    return out


def render_warnings(report: SyncReport, stream: TextIO) -> None:
    lines = [f"  {w}" for w in report.warnings]
    lines += [f"  {line}" for p in report.platforms for line in blocked_lines(p)]
    lines += [f"  {dependency_warning(p)}" for p in report.platforms if p.unsatisfied]
    if lines:
        print("warnings:", file=stream)
        print("\n".join(lines), file=stream)


def render_failures(report: SyncReport, stream: TextIO) -> None:
    failures = []
    for p in report.platforms:
        if p.error:
            failures.append((f"{p.channel}/{p.platform}", "", p.error))
        failures.extend((f"{p.channel}/{p.platform}", what, why) for what, why in p.failed)
    lines = failure_lines(failures, stopped=report.stopped)
    if lines:
        print("failures:", file=stream)
        print("\n".join(lines), file=stream)


def as_json(report: SyncReport) -> str:
    platforms = []
    for p in report.platforms:
        platforms.append({
            "channel": p.channel, "platform": p.platform, "selected": p.selected,
            "dropped": p.dropped, "downloaded": p.downloaded, "bytes": p.bytes,
            "deleted": p.deleted, "failed": len(p.failed), "seconds": round(p.seconds, 3),
            "upstream_changed": p.upstream_changed, "error": p.error,
            "plan": {"download": p.to_download, "download_bytes": p.to_download_bytes,
                     "up_to_date": p.up_to_date, "delete": p.to_delete,
                     "delete_bytes": p.to_delete_bytes,
                     "download_files": _files_json(p.planned_download),
                     "delete_files": _files_json(p.planned_delete)},
            "verify": [{"file": fn, "action": action} for fn, action in p.verified_bad.items()],
            "unsatisfied": [{"file": fn, "missing": names}
                            for fn, names in p.unsatisfied.items()],
            "blocked": [{"needed_by": b.needed_by, "spec": b.spec, "why": b.why,
                         "records": b.count} for b in p.blocked],
            "unconfigured": p.unconfigured,
            "shards": p.shards,
            "failures": [{"item": what, "error": why} for what, why in p.failed],
        })
    return json.dumps({
        "dry_run": report.dry_run, "exit_status": report.exit_code,
        "seconds": round(report.seconds, 3), "stopped": report.stopped,
        "diff_file": str(report.diff_file) if report.diff_file else None,
        "mirror_dir": {"path": report.mirror_dir, "status": report.mirror_dir_status},
        "warnings": report.warnings,
        "platforms": platforms,
    }, indent=2)


def _files_json(files: list[PlannedFile]) -> list[dict]:
    return [{"file": f.name, "size": f.size} for f in files]


def render_explain(rows: list[ExplainRow], name: str, stream: TextIO) -> None:
    if not rows:
        print(f"no record matches {name!r} in the configured channels and platforms",
              file=stream)
        return
    plain_table(f"cas-sync --explain {safe(name)}",
                ["channel", "platform", "file", "decision", "step", "why", "matched"],
                [[r.channel, r.platform, safe(r.filename),
                  "kept" if r.decision.kept else "dropped", r.decision.step,
                  safe(r.decision.reason), safe(_matched(r))] for r in rows], stream)


def _matched(row: ExplainRow) -> str:
    return "; ".join(f"{step}: {why}" for step, why in row.matched) or "no filter"


def explain_json(rows: list[ExplainRow]) -> str:
    return json.dumps([{"channel": r.channel, "platform": r.platform, "file": r.filename,
                        "kept": r.decision.kept, "step": r.decision.step,
                        "reason": r.decision.reason,
                        "matched": [{"step": step, "reason": why} for step, why in r.matched]}
                       for r in rows], indent=2)
