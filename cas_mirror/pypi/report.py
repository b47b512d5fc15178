"""Turning a PyPI sync's results into what users read: the summary table, the dry-run
plan with the files it would download and delete, what `--verify` repaired, failures, and
the `--json` document for monitoring. Same shape as the conda sync's report; a plain-text
table so a no-op run does not pay for importing rich.

Release files and their PEP 658 `.metadata` are counted apart everywhere (a `.metadata`
column); sizes are `human_bytes`; names from upstream go through `safe`.
"""

from __future__ import annotations

import json
from typing import TextIO

from ..net import human_bytes
from ..output import MAX_ROWS, failure_lines, plain_table, rows_note
from ..text import plural, safe
from .results import PlannedFile, ProjectReport, SyncReport


def _size(f: PlannedFile) -> str:
    return "size unknown" if f.size is None else human_bytes(f.size)


def render_summary(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.projects:
        status = "error" if p.error else str(len(p.failed))
        what = f"removed ({p.why})" if p.action == "remove" else str(p.selected)
        rows.append([safe(p.name), what, str(p.downloaded), str(p.metadata_downloaded),
                     human_bytes(p.bytes), str(p.deleted), status, f"{p.seconds:.2f}"])
    if report.strays:
        rows.append(["(no project)", "--verify", "", "", "", str(len(report.strays)), "", ""])
    if rows:
        plain_table("cas-sync pypi summary", ["project", "selected", "downloaded", ".metadata",
                                              "bytes", "deleted", "failed", "seconds"],
                    rows[:MAX_ROWS], stream)
        if note := rows_note(len(rows), MAX_ROWS, "projects"):
            print(note, file=stream)
    files = sum(p.downloaded for p in report.projects)
    metadata = sum(p.metadata_downloaded for p in report.projects)
    received = sum(p.bytes for p in report.projects)
    synced = sum(1 for p in report.projects if p.action == "sync")
    removed = sum(1 for p in report.projects if p.action == "remove")
    print(f"pypi: {plural(report.listed, 'project')} listed upstream "
          f"({report.source or 'none'}, serial {report.last_serial}); {synced} examined, "
          f"{report.unchanged} unchanged, {removed} removed", file=stream)
    print(f"{plural(files, 'file')} and {metadata} .metadata ({human_bytes(received)}) "
          f"downloaded in {report.seconds:.2f} s; exit status {report.exit_code}", file=stream)
    render_repairs(report, stream)
    render_failures(report, stream)


def render_repairs(report: SyncReport, stream: TextIO) -> None:
    """What was found wrong on disk, and what was done about it."""
    lines = [f"  {safe(p.name)}: {safe(relpath)}: {what}"
             for p in report.projects for relpath, what in p.repaired]
    lines += [f"  {safe(path)}: {why}" for path, why in report.strays]
    if lines:
        print("repaired:", file=stream)
        print("\n".join(lines[:MAX_ROWS]), file=stream)
        if note := rows_note(len(lines), MAX_ROWS, "files"):
            print(note, file=stream)


def render_plan(report: SyncReport, stream: TextIO) -> None:
    rows = []
    for p in report.projects:
        if p.error:
            rows.append([safe(p.name), "error", "", "", "", "", "", ""])
        elif p.action == "remove":
            rows.append([safe(p.name), f"remove ({p.why})", "", "", "", "", "", str(p.to_delete)])
        else:
            rows.append([safe(p.name), str(p.selected), str(p.dropped), str(p.to_download),
                         str(p.to_download_metadata), human_bytes(p.to_download_bytes),
                         str(p.up_to_date), str(p.to_delete)])
    plain_table("cas-sync pypi plan (dry run: nothing changed)",
                ["project", "selected", "dropped", "download", ".metadata", "bytes",
                 "up to date", "delete"], rows[:MAX_ROWS], stream)
    if note := rows_note(len(rows), MAX_ROWS, "projects"):
        print(note, file=stream)
    _render_files("would download", [(p, f) for p in report.projects
                                      for f in p.planned_download], stream)
    _render_files("would delete", [(p, f) for p in report.projects
                                    for f in p.planned_delete], stream)
    print(f"{plural(report.unchanged, 'project')} unchanged since the last run; "
          f"{report.skipped} listed upstream but not selected", file=stream)
    render_failures(report, stream)


def _render_files(title: str, files: list[tuple[ProjectReport, PlannedFile]],
                  stream: TextIO) -> None:
    if not files:
        return
    print(f"{title} ({plural(len(files), 'file')}):", file=stream)
    for p, f in files[:MAX_ROWS]:
        print(f"  {safe(p.name)}: {safe(f.filename)} ({_size(f)})", file=stream)
    if note := rows_note(len(files), MAX_ROWS, "files"):
        print(note, file=stream)


def render_failures(report: SyncReport, stream: TextIO) -> None:
    failures = [("", "", report.error)] if report.error else []
    failures.extend(("project list", what, why) for what, why in report.refused)
    failures.extend(("", "", problem) for problem in report.write_errors)
    for p in report.projects:
        if p.error:
            failures.append((p.name, "", p.error))
        failures.extend((p.name, what, why) for what, why in p.failed)
    lines = failure_lines(failures, stopped=report.stopped)
    if report.stopped_on_error:
        lines.append(f"  {safe(report.stopped_on_error)}")
    if lines:
        print("failures:", file=stream)
        print("\n".join(lines), file=stream)


def _files_json(files: list[PlannedFile]) -> list[dict]:
    return [{"file": f.filename, "path": f.relpath, "size": f.size, "metadata": f.is_metadata}
            for f in files]


def as_json(report: SyncReport) -> str:
    projects = []
    for p in report.projects:
        projects.append({
            "project": p.name, "action": p.action, "why": p.why or None,
            "selected": p.selected, "dropped": p.dropped, "downloaded": p.downloaded,
            "metadata_downloaded": p.metadata_downloaded, "bytes": p.bytes,
            "deleted": p.deleted, "metadata_deleted": p.metadata_deleted,
            "failed": len(p.failed), "seconds": round(p.seconds, 3), "error": p.error,
            "plan": {"download": p.to_download, "download_metadata": p.to_download_metadata,
                     "download_bytes": p.to_download_bytes, "up_to_date": p.up_to_date,
                     "delete": p.to_delete, "delete_metadata": p.to_delete_metadata,
                     "download_files": _files_json(p.planned_download),
                     "delete_files": _files_json(p.planned_delete)},
            "repaired": [{"file": relpath, "what": what} for relpath, what in p.repaired],
            "failures": [{"item": what, "error": why} for what, why in p.failed],
        })
    return json.dumps({
        "dry_run": report.dry_run, "exit_status": report.exit_code,
        "seconds": round(report.seconds, 3), "source": report.source,
        "last_serial": report.last_serial, "listed": report.listed,
        "unchanged": report.unchanged, "skipped": report.skipped, "error": report.error,
        "refused": [{"item": what, "error": why} for what, why in report.refused],
        "write_errors": report.write_errors,
        "notices": report.notices, "stopped": report.stopped,
        "stopped_on_error": report.stopped_on_error, "strays_removed": len(report.strays),
        "strays": [{"path": path, "what": why} for path, why in report.strays],
        "stale_parts_removed": report.stale_parts_removed,
        "diff_file": str(report.diff_file) if report.diff_file else None,
        "projects": projects,
    }, indent=2)
