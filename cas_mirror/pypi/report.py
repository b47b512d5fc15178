"""Turning a PyPI sync's results into what users read: the summary table, the dry-run
plan, failures, and the `--json` document for monitoring. Same shape as the conda sync's
report; a plain-text table so a no-op run does not pay for importing rich."""

from __future__ import annotations

import json
from typing import TextIO

from ..net import human_bytes
from ..output import plain_table
from .sync import SyncReport

MAX_ROWS = 50  # more changed projects than this: the rest are counted, --json has all


def _rows_note(total: int) -> str:
    return f"... and {total - MAX_ROWS} more projects (--json lists all)" \
        if total > MAX_ROWS else ""


def render_summary(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.projects:
        status = "error" if p.error else str(len(p.failed))
        what = f"removed ({p.why})" if p.action == "remove" else str(p.selected)
        rows.append([p.name, what, str(p.downloaded), human_bytes(p.bytes), str(p.deleted),
                     status, f"{p.seconds:.2f}"])
    if rows:
        plain_table("cas-sync pypi summary", ["project", "selected", "downloaded", "bytes",
                                              "deleted", "failed", "seconds"],
                    rows[:MAX_ROWS], stream)
        if note := _rows_note(len(rows)):
            print(note, file=stream)
    downloaded = sum(p.downloaded for p in report.projects)
    received = sum(p.bytes for p in report.projects)
    synced = sum(1 for p in report.projects if p.action == "sync")
    removed = sum(1 for p in report.projects if p.action == "remove")
    print(f"pypi: {report.listed} projects listed upstream ({report.source or 'none'}, serial "
          f"{report.last_serial}); {synced} examined, {report.unchanged} unchanged, "
          f"{removed} removed", file=stream)
    print(f"{downloaded} files ({human_bytes(received)}) downloaded in {report.seconds:.2f} s; "
          f"exit status {report.exit_code}", file=stream)
    render_failures(report, stream)


def render_plan(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.projects:
        if p.error:
            rows.append([p.name, "error", "", "", "", "", ""])
        elif p.action == "remove":
            rows.append([p.name, f"remove ({p.why})", "", "", "", "", str(p.to_delete)])
        else:
            rows.append([p.name, str(p.selected), str(p.dropped), str(p.to_download),
                         human_bytes(p.to_download_bytes), str(p.up_to_date), str(p.to_delete)])
    plain_table("cas-sync pypi plan (dry run: nothing changed)",
                ["project", "selected", "dropped", "download", "bytes", "up to date", "delete"],
                rows[:MAX_ROWS], stream)
    if note := _rows_note(len(rows)):
        print(note, file=stream)
    print(f"{report.unchanged} projects unchanged since the last run; {report.skipped} listed "
          "upstream but not selected", file=stream)
    render_failures(report, stream)


def render_failures(report: SyncReport, stream: TextIO) -> None:
    lines = []
    if report.error:
        lines.append(f"  {report.error}")
    lines.extend(f"  project list: {what}: {why}" for what, why in report.refused)
    for p in report.projects:
        if p.error:
            lines.append(f"  {p.name}: {p.error}")
        lines.extend(f"  {p.name}: {what}: {why}" for what, why in p.failed)
    if report.stopped:
        lines.append(f"  stopped early: {report.stopped}")
    if report.stopped_on_error:
        lines.append(f"  {report.stopped_on_error}")
    if lines:
        print("failures:", file=stream)
        print("\n".join(lines), file=stream)


def as_json(report: SyncReport) -> str:
    projects = []
    for p in report.projects:
        projects.append({
            "project": p.name, "action": p.action, "why": p.why or None,
            "selected": p.selected, "dropped": p.dropped, "downloaded": p.downloaded,
            "bytes": p.bytes, "deleted": p.deleted, "failed": len(p.failed),
            "seconds": round(p.seconds, 3), "error": p.error,
            "plan": {"download": p.to_download, "download_bytes": p.to_download_bytes,
                     "up_to_date": p.up_to_date, "delete": p.to_delete},
            "failures": [{"item": what, "error": why} for what, why in p.failed],
        })
    return json.dumps({
        "dry_run": report.dry_run, "exit_status": report.exit_code,
        "seconds": round(report.seconds, 3), "source": report.source,
        "last_serial": report.last_serial, "listed": report.listed,
        "unchanged": report.unchanged, "skipped": report.skipped, "error": report.error,
        "refused": [{"item": what, "error": why} for what, why in report.refused],
        "notices": report.notices, "stopped": report.stopped,
        "stopped_on_error": report.stopped_on_error, "strays_removed": report.strays_removed,
        "diff_file": str(report.diff_file) if report.diff_file else None,
        "projects": projects,
    }, indent=2)
