#!/usr/bin/env python3
"""Measure cas-sync reading a sharded upstream: a whitelist of 20 names against a generated
320,000-record linux-64 platform (8,000 names) whose shards were written by
cas_index.shard_files, served on loopback by the test server (which logs every request).

The 20 whitelisted names are real packages (built by tests/support), so the sync runs to
the end; their files are tiny, so the figures are the metadata's. Two sides on the shared
protocol (benchlib.alternate): cold (an empty mirror_dir on the tmpfs, fresh each run) and
no-op (nothing changed upstream since the last run of that mirror). Reports wall and CPU
time of the whole cas-sync process (start-up included), the sync's own `seconds` from
--json (the run without interpreter start-up), and the bytes upstream sent for metadata
(shard index + shards; package files not counted).

Usage: scripts/bench_upstream_shards.py [--runs 5] [--records 320000] [--write-docs]
Targets (issue 10): cold <= 0.5 s, no-op <= 0.15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import BIG_RECORDS, build_big_repodata, cas_env
from benchlib import (
    BENCH_DATA,
    VENV_BIN,
    Side,
    Stats,
    alternate,
    check_protocol_args,
    crash_note,
    machine_line,
    protocol_args,
    protocol_note,
    scratch_space,
    settled_config,
    table,
    update_docs,
)

WHITELIST = [f"pkg{i}" for i in range(20)]
SECTION = "## cas-sync from a sharded upstream (20-name whitelist)"


def build_sharded_upstream(records: int = BIG_RECORDS) -> Path:
    """The big platform with real packages for the 20 names, sharded (cached)."""
    suffix = "" if records == BIG_RECORDS else f"-{records}"
    root = BENCH_DATA / f"sync-big-sharded{suffix}"
    done = root / "complete"
    if done.exists():
        return root
    from cas_index.shard_files import write_shards
    from tests.support.conda_packages import PkgSpec, build_package, file_record

    source = build_big_repodata(records)
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root)
    folder = root / "pkgs" / "main" / "linux-64"
    doc = json.loads((folder / "repodata.json").read_bytes())
    for name in WHITELIST:  # real files for the whitelisted names
        for key in ("packages", "packages.conda"):
            doc[key] = {fn: r for fn, r in doc[key].items() if r["name"] != name}
        spec = PkgSpec(name, "1.0", subdir="linux-64")
        path = build_package(spec, folder)
        doc["packages.conda"][spec.filename] = file_record(path, spec.index_json())
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    (folder / "repodata.json").write_bytes(data)
    started = time.monotonic()
    write_shards(folder, data, state_dir=root / "shard-state")
    noarch = root / "pkgs" / "main" / "noarch"
    write_shards(noarch, (noarch / "repodata.json").read_bytes(), state_dir=root / "ns")
    print(f"sharded {records} records in {time.monotonic() - started:.1f} s", flush=True)
    done.write_text("ok\n")
    return root


def metadata_bytes(server, root: Path) -> int:
    total = 0
    for request in server.requests:
        if request.status == 200 and not request.path.endswith((".conda", ".tar.bz2")):
            total += (root / request.path.lstrip("/")).stat().st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=BIG_RECORDS,
                        help=f"records of the upstream platform (default {BIG_RECORDS})")
    protocol_args(parser, tmpfs="1g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    from tests.support.http_server import TestHTTPServer

    # Built in a child: this process must stay small, or the commands it starts could
    # report its pages as their peak memory.
    with Pool(1) as pool:
        root = pool.apply(build_sharded_upstream, (args.records,))
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    with scratch_space(args.tmpfs_size, prefix="bench-shards-") as scratch, \
            TestHTTPServer(root) as server:
        noop_mirror = scratch.path / "no-op-mirror"

        def text(mirror: Path) -> str:
            return json.dumps({
                "remote_url": server.url, "mirror_dir": str(mirror),
                "platforms": ["linux-64"], "blacklist": ["*"], "whitelist": WHITELIST,
                "minimum_free_space": 0})

        def config_for(mirror: Path) -> Path:
            config = mirror.parent / f"{mirror.name}.yaml"
            config.write_text(text(mirror))
            return config

        def cold(folder: Path) -> list[str]:
            server.clear_log()
            return [VENV_BIN / "cas-sync", "--json", "-f", config_for(folder / "mirror")]

        def noop(folder: Path) -> list[str]:
            server.clear_log()  # the warm-up run is this mirror's first (cold) sync
            return [VENV_BIN / "cas-sync", "--json", "-f",
                    settled_config(scratch.path / "no-op.yaml", text(noop_mirror))]

        def check(folder: Path, sample) -> dict[str, float]:
            return {"seconds": json.loads(sample.stdout)["seconds"],
                    "bytes": metadata_bytes(server, root),
                    "requests": len(server.requests)}

        env = cas_env(scratch.path / "none")
        stats = alternate({"cold": Side(cold, env=env, check=check),
                           "no-op": Side(noop, env=env, check=check)},
                          args.runs, scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)

    def own(s: Stats) -> str:
        return s.extra("seconds").fmt(3)

    def fetched(s: Stats) -> str:
        b = s.extra("bytes")
        return f"{b.median / 1000:,.0f} KB in {s.extra('requests').median:.0f} requests"

    labels = {"cold": "cold sync of metadata (empty mirror)",
              "no-op": "no-op re-sync (nothing changed upstream)"}
    targets = {"cold": "<= 0.5 s", "no-op": "<= 0.15 s"}
    report = table(stats, targets=targets, labels=labels,
                   extra={"sync's own seconds (--json)": own, "metadata fetched": fetched})
    verdicts = "\n".join(
        f"- {labels[k]}: wall {stats[k].wall.median:.3f} s, sync's own "
        f"{stats[k].extra('seconds').median:.3f} s (target {targets[k]})" for k in stats)
    body = (f"`scripts/bench_upstream_shards.py` ({header}): a whitelist of "
            f"{len(WHITELIST)} names against one sharded linux-64 platform of "
            f"{args.records:,} records / 8,000 names (shards written by cas_index.shard_files), "
            "served by the test suite's threaded server on 127.0.0.1. The figures are the "
            "metadata's (the 20 package files are tiny).\n\n"
            f"{note}\n\n{report}\n\n{verdicts}")
    crashes = crash_note(stats)
    body += f"\n\n{crashes}" if crashes else ""
    print(body)
    if args.write_docs:
        update_docs(f"{SECTION}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
