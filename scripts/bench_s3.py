#!/usr/bin/env python3
"""Benchmark cas-sync (conda) into a bucket (issue 11), all in one run:

1. the 1,800-file / 36 MB conda set of bench_sync.py (linux-64, osx-64, win-64, noarch),
   served on loopback (nginx when installed, else a threaded server);
2. moto's S3 server on 127.0.0.1, in this process (so the CPU column is the client's
   alone), behind the tests' recording proxy (tests/support/s3.py), which counts LISTs;
3. `rclone copy` (Debian package rclone) uploading the same files from a local folder to
   the same endpoint, 8 transfers: the baseline;
4. our cold sync into a fresh bucket prefix (download from upstream, verify, upload) and
   our no-op re-sync (nothing changed), with the LIST requests each no-op run sent.

Shared protocol (benchlib.alternate): a warm-up each, then --runs rounds alternating the
sides. moto is slow per request and single-process, so it sets most of the wall time of
both upload sides; judge our overhead by the CPU column.

    apt-get install -y rclone     # the baseline; --install-rclone does it (as root)
    .venv/bin/python scripts/bench_s3.py [--runs 5] [--write-docs]

Targets: cold <= 1.5x rclone (wall); no-op <= 1 s with zero LIST requests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench_sync import build_upstream, cas_env
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

from tests.support.s3 import credentials_env, running_endpoint

PACKAGES = 1800
PLATFORMS = ["linux-64", "osx-64", "win-64", "noarch"]
TRANSFERS = 8


def find_rclone(install: bool) -> str:
    found = shutil.which("rclone")
    if found is None and install:
        subprocess.run(["apt-get", "install", "-y", "rclone"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("rclone")
    if found is None:
        raise SystemExit("rclone is not installed: apt-get install -y rclone "
                         "(or run this script with --install-rclone as root)")
    return found


def rclone_version(rclone: str) -> str:
    out = subprocess.run([rclone, "version"], check=False, capture_output=True,
                         text=True).stdout
    return out.split("\n", 1)[0].strip() or "rclone"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--install-rclone", action="store_true",
                        help="apt-get install rclone when it is missing (root)")
    protocol_args(parser, tmpfs="1g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    rclone = find_rclone(args.install_rclone)
    upstream = build_upstream(PACKAGES)
    channel = upstream / "pkgs" / "main"
    files = sorted(p for p in channel.rglob("*") if p.name.endswith((".conda", ".tar.bz2")))
    total = sum(p.stat().st_size for p in files)
    machine = machine_line()
    load = os.getloadavg()[0]
    print(machine, file=sys.stderr)
    print(f"upstream: {len(files)} files, {total / 1e6:.1f} MB", file=sys.stderr)
    credentials = credentials_env(Path(__file__).resolve().parents[1] / "bench-data")
    with running_endpoint() as endpoint, StaticServer(upstream) as server, \
            scratch_space(args.tmpfs_size, "bench-s3-") as scratch:
        bucket = endpoint.new_bucket("bench")

        def config(folder: Path, prefix: str, state: Path) -> Path:
            path = folder / "cas-mirror.yaml"
            path.write_text(f"remote_url: {server.url}\nmirror_dir: s3://{bucket}/{prefix}\n"
                            f"state_dir: {state}\nplatforms: [{', '.join(PLATFORMS)}]\n"
                            f"workers: {TRANSFERS}\nminimum_free_space: 0\n"
                            f"s3_endpoint_url: {endpoint.url}\ns3_region: us-east-1\n")
            return path

        def cold(folder: Path) -> list[str]:
            prefix = f"cold-{folder.name}"
            return [VENV_BIN / "cas-sync", "--quiet", "-f",
                    config(folder, prefix, folder / "state")]

        def check_cold(folder: Path, sample) -> None:
            prefix = f"cold-{folder.name}/"
            count = sum(1 for r in endpoint.requests if r.method == "PUT"
                        and f"/{bucket}/{prefix}" in r.path
                        and r.path.endswith((".conda", ".tar.bz2")))
            if count != len(files):
                raise SystemExit(f"cas-sync cold uploaded {count} of {len(files)} files")
            endpoint.clear()

        def copy(folder: Path) -> list[str]:
            return [rclone, "copy", "--transfers", str(TRANSFERS), "--s3-no-check-bucket",
                    str(channel), f"bench:{bucket}/rclone-{folder.name}/pkgs/main"]

        # (a machine's AWS_CA_BUNDLE makes rclone refuse its own transport; http here)
        rclone_env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
                      **credentials,
                      "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                      "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint.url,
                      "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": credentials["AWS_ACCESS_KEY_ID"],
                      "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY":
                          credentials["AWS_SECRET_ACCESS_KEY"],
                      "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
                      "RCLONE_CONFIG_BENCH_REGION": "us-east-1"}

        def check_copy(folder: Path, sample) -> None:
            endpoint.clear()

        noop_state = scratch.path / "no-op-state"

        def noop(folder: Path) -> list[str]:  # its warm-up run is the mirror's first sync
            endpoint.clear()
            return [VENV_BIN / "cas-sync", "--quiet", "-f", config(folder, "noop", noop_state)]

        def check_noop(folder: Path, sample) -> dict[str, float]:
            lists = len(endpoint.lists(bucket))
            endpoint.clear()
            return {"lists": float(lists)}

        env = {**cas_env(scratch.path / "none"), **credentials}
        sides = {"rclone": Side(copy, env=rclone_env, check=check_copy),
                 "cold": Side(cold, env=env, check=check_cold),
                 "no-op": Side(noop, env=env, check=check_noop)}
        stats = alternate(sides, args.runs, scratch.path)
        note = protocol_note(args.runs, scratch, load)
    lists = stats["no-op"].extra("lists")
    labels = {"rclone": f"`rclone copy` ({rclone_version(rclone)}, {TRANSFERS} transfers)",
              "cold": "cas-sync cold into the bucket", "no-op": "cas-sync no-op re-sync"}
    targets = {"cold": "<= 1.5x rclone", "no-op": "<= 1 s, 0 LIST"}
    report = table(stats, against={"cold": "rclone"}, targets=targets, labels=labels,
                   extra={"LIST requests": lambda s: f"{s.extra('lists').max:.0f}"
                          if s.name == "no-op" else ""})
    section = "\n\n".join(filter(None, [
        "## cas-sync into a bucket (issue 11)",
        (f"`scripts/bench_s3.py`, {machine}. {len(files):,} package files "
         f"({total / 1e6:.0f} MB) over {', '.join(PLATFORMS)}: cas-sync downloads them from "
         "a loopback upstream, verifies and uploads them into a fresh prefix of a bucket on "
         "moto's S3 server (in the benchmark's process, behind the tests' recording proxy); "
         f"`rclone copy` uploads the same files from a local folder with {TRANSFERS} "
         "transfers. moto handles one request at a time, slowly, and sets most of the "
         "wall time of both, so compare CPU time. The no-op re-sync sent "
         f"{lists.max:.0f} LIST requests at most (counted by the proxy)."),
        report, note, crash_note(stats)]))
    print(section)
    if args.write_docs:
        update_docs(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
