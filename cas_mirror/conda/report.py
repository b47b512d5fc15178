"""Turning a sync's results into what users read: the summary table, the dry-run plan,
the `--json` document for monitoring, and `--explain` lines."""

from __future__ import annotations

import json
from typing import TextIO

from ..net import human_bytes
from ..output import plain_table
from .sync import ExplainRow, SyncReport


def render_summary(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.platforms:
        status = (p.error and "error") or (f"{len(p.failed)}" if p.failed else "0")
        rows.append([p.channel, p.platform, str(p.selected), str(p.downloaded),
                     human_bytes(p.bytes), str(p.deleted), status, f"{p.seconds:.2f}"])
    plain_table("cas-sync summary", ["channel", "platform", "selected", "downloaded", "bytes",
                                "deleted", "failed", "seconds"], rows, stream)
    downloaded = sum(p.downloaded for p in report.platforms)
    received = sum(p.bytes for p in report.platforms)
    print(f"{downloaded} files ({human_bytes(received)}) downloaded in "
          f"{report.seconds:.2f} s; exit status {report.exit_code}", file=stream)
    render_failures(report, stream)


def render_plan(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.platforms:
        if p.error:
            rows.append([p.channel, p.platform, "error", "", "", "", "", ""])
            continue
        rows.append([p.channel, p.platform, str(p.selected), str(p.dropped), str(p.to_download),
                     human_bytes(p.to_download_bytes), str(p.up_to_date),
                     f"{p.to_delete} ({human_bytes(p.to_delete_bytes)})"])
    plain_table("cas-sync plan (dry run: nothing changed)",
           ["channel", "platform", "selected", "dropped", "download", "bytes", "up to date",
            "delete"], rows, stream)
    render_failures(report, stream)


def render_failures(report: SyncReport, stream: TextIO) -> None:
    lines = []
    for p in report.platforms:
        if p.error:
            lines.append(f"  {p.channel}/{p.platform}: {p.error}")
        lines.extend(f"  {p.channel}/{p.platform}: {what}: {why}" for what, why in p.failed)
    if report.stopped:
        lines.append(f"  stopped early: {report.stopped}")
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
                     "delete_bytes": p.to_delete_bytes},
            "failures": [{"item": what, "error": why} for what, why in p.failed],
        })
    return json.dumps({
        "dry_run": report.dry_run, "exit_status": report.exit_code,
        "seconds": round(report.seconds, 3), "stopped": report.stopped,
        "diff_file": str(report.diff_file) if report.diff_file else None,
        "platforms": platforms,
    }, indent=2)


def render_explain(rows: list[ExplainRow], name: str, stream: TextIO) -> None:
    if not rows:
        print(f"no record matches {name!r} in the configured channels and platforms",
              file=stream)
        return
    plain_table(f"cas-sync --explain {name}", ["channel", "platform", "file", "decision", "step",
                                          "why"],
           [[r.channel, r.platform, r.filename, "kept" if r.decision.kept else "dropped",
             r.decision.step, r.decision.reason] for r in rows], stream)


def explain_json(rows: list[ExplainRow]) -> str:
    return json.dumps([{"channel": r.channel, "platform": r.platform, "file": r.filename,
                        "kept": r.decision.kept, "step": r.decision.step,
                        "reason": r.decision.reason} for r in rows], indent=2)
