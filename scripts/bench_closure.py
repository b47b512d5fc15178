#!/usr/bin/env python3
"""Measure the conda dependency closure (issue 14): `cas-sync --dry-run` with
`include_dependencies: true`, `blacklist: ["*"]` and a whitelist of 50 names, on the
generated 320,000-record linux-64 platform of bench_sync.py (8,000 names; every record
depends on python, libgcc-ng, openssl, which that platform lacks, and on one random name
`>=1.0`, so the closure of 50 names reaches most of the platform: the worst case, every
round of the closure large), served on loopback.

Sides on the shared protocol (benchlib.alternate): the dry run with the closure,
the same dry run without it (the whitelist alone), and a dry run with no filter at all
(which selects about as many records as the closure does, so the planning and reporting
that follow cost the same): the closure's own cost is its difference to that one. A
fourth side, `json.load` of the document alone, gives the machine's speed in that hour
(this machine's runs move by a third between hours): compare runs of other days by it.
Reports wall and CPU time of the whole process (start-up, fetch, parse, filter, closure,
plan), peak memory and how many records each run selected.

Usage: scripts/bench_closure.py [--runs 5] [--names 50] [--write-docs]
Target (issue 14): closure on 320,000 records with 50 whitelisted names <= 3 s, <= 800 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import BIG_RECORDS, build_big_repodata, cas_env
from benchlib import (
    VENV_BIN,
    Side,
    StaticServer,
    alternate,
    check_protocol_args,
    crash_note,
    machine_line,
    protocol_args,
    protocol_note,
    scratch_space,
    table,
    update_docs,
)

SECTION = "## conda dependency closure (include_dependencies, 50 names, 320k records)"
_SELECTED = re.compile(r"^\s*pkgs/main\s+linux-64\s+(\d+)\s", re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=50, help="whitelisted names")
    protocol_args(parser, tmpfs="1g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    # Generated in a child: this process must stay small (see bench_sync.py).
    with Pool(1) as pool:
        big = pool.apply(build_big_repodata)
    whitelist = [f"pkg{i}" for i in range(0, 8000, 8000 // args.names)][: args.names]
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    document = big / "pkgs/main/linux-64/repodata.json"
    with scratch_space(args.tmpfs_size, prefix="bench-closure-") as scratch, \
            StaticServer(big) as server:

        def side(closure: bool, filters: bool = True):
            def command(folder: Path) -> list[str]:
                config = folder / "cas-mirror.yaml"
                chosen = {"blacklist": ["*"], "whitelist": whitelist} if filters else {}
                config.write_text(json.dumps({
                    "remote_url": server.url, "mirror_dir": str(folder / "mirror"),
                    "platforms": ["linux-64"], "include_dependencies": closure, **chosen}))
                return [VENV_BIN / "cas-sync", "--dry-run", "-f", config]
            return command

        def selected(folder: Path, sample) -> dict[str, float]:
            match = _SELECTED.search(sample.stdout)
            if match is None:
                raise SystemExit(f"no linux-64 row in the plan:\n{sample.stdout[-2000:]}")
            return {"selected": float(match.group(1))}

        def json_load(folder: Path) -> list[str]:  # the machine's speed, as a yardstick
            return [sys.executable, "-c",
                    "import json, sys; json.load(open(sys.argv[1], 'rb'))", document]

        env = cas_env(scratch.path / "none")
        stats = alternate({"closure": Side(side(True), env=env, check=selected),
                           "whitelist": Side(side(False), env=env, check=selected),
                           "everything": Side(side(False, False), env=env, check=selected),
                           "json.load": Side(json_load)},
                          args.runs, scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)
        served_by = server.kind

    labels = {"closure": f"dry run, whitelist of {args.names} + include_dependencies",
              "whitelist": f"dry run, whitelist of {args.names} alone",
              "everything": "dry run, no filter (every record selected)",
              "json.load": "python json.load of the document alone (machine yardstick)"}
    report = table(stats, against={"closure": "everything"}, labels=labels,
                   targets={"closure": "<= 3 s, <= 800 MB"},
                   extra={"records selected": lambda s: f"{s.extra('selected').median:,.0f}"
                          if s.samples[0].extra else ""})
    c, w, e = stats["closure"], stats["whitelist"], stats["everything"]
    verdicts = (f"- closure: {c.wall.median:.2f} s wall, {c.peak.max:.0f} MB peak "
                f"(target <= 3 s, <= 800 MB) for "
                f"{c.extra('selected').median - w.extra('selected').median:,.0f} records "
                f"pulled in; a dry run selecting every record without any closure takes "
                f"{e.wall.median:.2f} s and {e.peak.max:.0f} MB, the whitelist alone "
                f"{w.wall.median:.2f} s and {w.peak.max:.0f} MB: the closure's own cost is "
                f"about {c.wall.median - e.wall.median:.2f} s and "
                f"{c.peak.max - e.peak.max:.0f} MB; json.load of the document alone "
                f"{stats['json.load'].wall.median:.2f} s (compare runs of other days by it)")
    size = document.stat().st_size
    body = (f"`scripts/bench_closure.py` ({header}): one linux-64 platform of "
            f"{BIG_RECORDS:,} records ({size / 1e6:.0f} MB, 8,000 names, generated by "
            f"bench_sync.py), served by {served_by} on 127.0.0.1. The machine is shared "
            "with other sessions running tests and benchmarks: figures are noisy.\n\n"
            f"{note}\n\n{report}\n\n{verdicts}")
    crashes = crash_note(stats)
    body += f"\n\n{crashes}" if crashes else ""
    print(body)
    if args.write_docs:
        update_docs(f"{SECTION}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
