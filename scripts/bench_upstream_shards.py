#!/usr/bin/env python3
"""Measure cas-sync reading a sharded upstream: a whitelist of 20 names against a generated
320,000-record linux-64 platform (8,000 names) whose shards were written by
cas_index.shards, served on loopback by the test server (which logs every request).

The 20 whitelisted names are real packages (built by tests/support), so the sync runs to
the end; their files are tiny, so the figures are the metadata's. Reports, per side
(cold: empty mirror_dir; no-op: nothing changed upstream), the median, min and max of
wall time (a cas-sync process, start-up included) and of the sync's own time (`seconds`
of --json: the run without interpreter start-up), and the bytes upstream sent for
metadata (shard index + shards; packages not counted). Alternating runs, 5 of each after
a warm-up. Rough figures from one machine; not written to docs/benchmarks.md.

Usage: scripts/bench_upstream_shards.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import BIG_RECORDS, build_big_repodata, cas_env
from benchlib import BENCH_DATA, VENV_BIN, machine_line

WHITELIST = [f"pkg{i}" for i in range(20)]


def build_sharded_upstream() -> Path:
    """The 320k-record platform with real packages for the 20 names, sharded (cached)."""
    root = BENCH_DATA / "sync-big-sharded"
    done = root / "complete"
    if done.exists():
        return root
    from cas_index.shards import write_shards
    from tests.support.conda_packages import PkgSpec, build_package, file_record

    source = build_big_repodata()
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
    print(f"sharded {BIG_RECORDS} records in {time.monotonic() - started:.1f} s", flush=True)
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
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from tests.support.http_server import TestHTTPServer

    root = build_sharded_upstream()
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    config = work / "cas-mirror.yaml"
    mirror = work / "mirror"
    results: dict[str, list[tuple[float, float, int, int]]] = {"cold": [], "no-op": []}
    with TestHTTPServer(root) as server:
        config.write_text(json.dumps({
            "remote_url": server.url, "mirror_dir": str(mirror), "platforms": ["linux-64"],
            "blacklist": ["*"], "whitelist": WHITELIST, "minimum_free_space": 0}))

        def run(side: str) -> tuple[float, float, int, int]:
            if side == "cold":
                shutil.rmtree(mirror, ignore_errors=True)
            server.clear_log()
            started = time.perf_counter()
            proc = subprocess.run([str(VENV_BIN / "cas-sync"), "--json"], env=cas_env(config),
                                  check=False,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"cas-sync failed ({proc.returncode}):\n{proc.stderr}")
            seconds = json.loads(proc.stdout)["seconds"]
            return wall, seconds, metadata_bytes(server, root), len(server.requests)

        run("cold")
        run("no-op")  # warm-up
        for _ in range(args.runs):
            for side in ("cold", "no-op"):
                results[side].append(run(side))
    shutil.rmtree(work, ignore_errors=True)
    print(machine_line())
    print(f"whitelist of {len(WHITELIST)} names, {BIG_RECORDS} records / 8,000 names upstream")
    for side, rows in results.items():
        walls = [r[0] for r in rows]
        own = [r[1] for r in rows]
        print(f"{side:6} wall median {statistics.median(walls):.3f} s "
              f"(min {min(walls):.3f}, max {max(walls):.3f}); sync itself median "
              f"{statistics.median(own):.3f} s (min {min(own):.3f}, max {max(own):.3f}); "
              f"metadata bytes {rows[-1][2]:,}; requests {rows[-1][3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
