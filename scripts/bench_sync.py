#!/usr/bin/env python3
"""Benchmark the conda sync (issue: cas-sync), all in one run:

1. an upstream of 5,000 real package files (~100 MB) over linux-64, osx-64, win-64 and
   noarch, served on loopback (nginx when installed, else a threaded server);
2. `curl --parallel` (8 transfers) fetching the same files: the practical limit;
3. our cold sync (an empty mirror, run as the nightly job: its configuration file
   written and parsed before), the same with the configuration file just written (the
   first run after an edit: YAML is parsed), and our no-op re-sync (nothing changed);
4. conda-mirror 0.10 (PyPI `conda-mirror`, one --platform per run, the four chained in one
   shell) when installed in bench-data/venv-conda-mirror (--install-baselines installs it);
5. `cas-sync --dry-run` on a generated 320,000-record repodata.json (~150 MB) beside
   `json.load` of the same file alone: time and peak memory.

Every side is measured on the shared protocol (benchlib.alternate): a warm-up each, then
--runs rounds alternating the sides, each run into a fresh folder on a tmpfs.

Usage: scripts/bench_sync.py [--packages 5000] [--runs 5] [--install-baselines]
       [--skip-conda-mirror] [--skip-dry-run | --dry-run-only] [--write-docs]
The dry run has its own section in docs/benchmarks.md (DRY_RUN_SECTION), written by
either kind of run.
Targets (issue 15, on tmpfs): cold <= 2.3x curl on 5,000 files (<= 2.5x on 1,800) and
>= 10x faster than conda-mirror; no-op <= 0.15 s; dry-run on 320k records <= 1.5 s and
<= 400 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path

from benchlib import (
    BENCH_DATA,
    VENV_BIN,
    Side,
    StaticServer,
    alternate,
    cache_env,
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

PLATFORMS = ["linux-64", "osx-64", "win-64", "noarch"]
PAYLOAD = 20_000
BIG_RECORDS = 320_000


def _build_one(args):
    from tests.support.conda_packages import PkgSpec, build_package, file_record

    index, root = args
    subdir = PLATFORMS[index % len(PLATFORMS)]
    spec = PkgSpec(f"bench{index % 700}", f"1.{index // 700}.{index}", build=f"h{index:x}_0",
                   subdir=subdir, fmt=".conda" if index % 3 else ".tar.bz2",
                   payload_size=PAYLOAD, seed=index)
    path = build_package(spec, Path(root) / subdir)
    return subdir, spec.filename, file_record(path, spec.index_json())


def build_upstream(count: int) -> Path:
    root = BENCH_DATA / f"sync-upstream-{count}"
    channel = root / "pkgs" / "main"
    if (root / "complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    print(f"building {count} packages into {channel} (once; cached)", flush=True)
    from tests.support.conda_packages import write_repodata

    with Pool(os.cpu_count()) as pool:
        built = pool.map(_build_one, [(i, channel) for i in range(count)], chunksize=50)
    by_subdir: dict[str, dict] = {p: {} for p in PLATFORMS}
    for subdir, fn, record in built:
        by_subdir[subdir][fn] = record
    for subdir, records in by_subdir.items():
        write_repodata(channel / subdir, subdir, records)
    (root / "complete").write_text("ok\n")
    return root


def build_big_repodata(records: int = BIG_RECORDS) -> Path:
    suffix = "" if records == BIG_RECORDS else f"-{records}"
    root = BENCH_DATA / f"sync-big-repodata{suffix}"
    target = root / "pkgs" / "main" / "linux-64" / "repodata.json"
    if target.exists():
        return root
    print(f"generating a {records}-record repodata.json (once; cached)", flush=True)
    rng = random.Random(1)
    names = [f"pkg{i}" for i in range(8000)]
    licenses = ["MIT", "BSD-3-Clause", "GPL-3.0-or-later", "LGPL-2.1", "Apache-2.0", "GPL2"]
    packages, conda = {}, {}
    for i in range(records):
        name = rng.choice(names)
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
        build = f"py{rng.choice([38, 39, 310, 311])}h{rng.getrandbits(32):08x}_{i % 4}"
        record = {
            "build": build, "build_number": i % 4,
            "depends": [f"python >=3.{rng.randint(8, 12)},<3.13.0a0", "libgcc-ng >=11.2.0",
                        f"{rng.choice(names)} >=1.0", "openssl >=3.0.12,<4.0a0"],
            "license": rng.choice(licenses), "license_family": "MIT",
            "md5": hashlib.md5(str(i).encode()).hexdigest(), "name": name,
            "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
            "size": rng.randint(10_000, 5_000_000), "subdir": "linux-64",
            "timestamp": 1_600_000_000_000 + i, "version": version,
        }
        (conda if i % 2 else packages)[f"{name}-{version}-{build}" +
                                       (".conda" if i % 2 else ".tar.bz2")] = record
    doc = {"info": {"subdir": "linux-64"}, "packages": packages, "packages.conda": conda,
           "removed": [], "repodata_version": 1}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=1))
    noarch = root / "pkgs" / "main" / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    (noarch / "repodata.json").write_text(json.dumps(
        {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}}))
    return root


def install_conda_mirror() -> None:
    venv = BENCH_DATA / "venv-conda-mirror"
    if not (venv / "bin" / "conda-mirror").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "conda-mirror==0.10.0"],
                       check=True)


def cas_env(config: Path) -> dict:
    return {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": "/nonexistent",
            "CAS_MIRROR_USER_CONFIG": str(config), **cache_env(config.parent)}


def cold_target(packages: int) -> str:
    return "<= 2.5x curl" if packages <= 1800 else "<= 2.3x curl"


def count_packages(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.name.endswith((".conda", ".tar.bz2")))


def sync_sides(args, upstream: Path, files: list[Path], server, scratch: Path) -> dict:
    cas_sync = str(VENV_BIN / "cas-sync")
    env = cas_env(scratch / "none")

    def text(mirror: Path) -> str:
        return (f"remote_url: {server.url}\nmirror_dir: {mirror}\n"
                f"platforms: [{', '.join(PLATFORMS)}]\nworkers: 8\nminimum_free_space: 0\n")

    def config(folder: Path, mirror: Path) -> Path:
        path = folder / "cas-mirror.yaml"
        path.write_text(text(mirror))
        return path

    def curl(folder: Path) -> list[str]:
        lines = [f'url = "{server.url}/{p.relative_to(upstream)}"\n'
                 f'output = "{folder / "out" / p.relative_to(upstream)}"\n' for p in files]
        (folder / "curl.cfg").write_text("".join(lines))
        return ["curl", "-s", "--create-dirs", "--parallel", "--parallel-max", "8",
                "-K", str(folder / "curl.cfg")]

    # The cold side runs as a nightly job that meets an empty mirror: its configuration
    # file was written (and parsed) before, so its parse is remembered; the mirror folder
    # is a fresh one per run (--mirror-dir). "cold, new config" writes the file just before
    # the run, as the first run after an edit does: it also imports and runs the YAML
    # parser (config/parsed.py).
    cold_config = scratch / "cold.yaml"

    def cold(folder: Path) -> list[str]:
        return [cas_sync, "--quiet", "-f",
                settled_config(cold_config, text(scratch / "unused-mirror")),
                "--mirror-dir", str(folder / "mirror")]

    def cold_new_config(folder: Path) -> list[str]:
        return [cas_sync, "--quiet", "-f", config(folder, folder / "mirror")]

    def check_cold(folder: Path, sample) -> None:
        mirrored = count_packages(folder / "mirror")
        if mirrored != len(files):
            raise SystemExit(f"cas-sync cold mirrored {mirrored} of {len(files)} files")

    noop_mirror = scratch / "no-op-mirror"

    def noop(folder: Path) -> list[str]:  # its warm-up run is the mirror's first sync
        return [cas_sync, "--quiet", "-f",
                settled_config(scratch / "no-op.yaml", text(noop_mirror))]

    sides = {"curl": Side(curl),
             "cold": Side(cold, env=env, check=check_cold),
             "cold, new config": Side(cold_new_config, env=env, check=check_cold),
             "no-op": Side(noop, env=env)}
    conda_mirror = BENCH_DATA / "venv-conda-mirror" / "bin" / "conda-mirror"
    if conda_mirror.exists() and not args.skip_conda_mirror:
        def cm(folder: Path) -> list[str]:
            runs = [shlex.join([str(conda_mirror), "--upstream-channel",
                                f"{server.url}/pkgs/main", "--target-directory",
                                str(folder / "out"), "--platform", platform,
                                "--num-threads", "0", "--minimum-free-space", "0"])
                    for platform in PLATFORMS]
            return ["sh", "-c", " && ".join(runs)]

        sides["conda-mirror"] = Side(cm)
    return sides


def dry_run_sides(big: Path, server, scratch: Path) -> dict:
    doc = big / "pkgs/main/linux-64/repodata.json"

    def dry(folder: Path) -> list[str]:
        config = folder / "cas-mirror.yaml"
        config.write_text(f"remote_url: {server.url}\nmirror_dir: {folder}/mirror\n"
                          "platforms: [linux-64]\nlicense_blacklist: GPL\n"
                          "blacklist: ['pkg1*', 'pkg2 >=5']\nwhitelist: [pkg10]\n")
        return [VENV_BIN / "cas-sync", "--dry-run", "-f", config]

    def json_load(folder: Path) -> list[str]:
        return [sys.executable, "-c",
                "import json, sys; json.load(open(sys.argv[1], 'rb'))", doc]

    return {"dry-run": Side(dry, env=cas_env(scratch / "none")), "json.load": Side(json_load)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--packages", type=int, default=5000)
    parser.add_argument("--install-baselines", action="store_true",
                        help="install conda-mirror 0.10 into bench-data/venv-conda-mirror")
    parser.add_argument("--skip-conda-mirror", action="store_true")
    parser.add_argument("--skip-dry-run", action="store_true",
                        help="leave out the --dry-run measurement on the big platform")
    parser.add_argument("--dry-run-only", action="store_true",
                        help="only the --dry-run measurement on the big platform")
    protocol_args(parser)
    args = parser.parse_args()
    check_protocol_args(parser, args)
    if args.dry_run_only:
        return dry_run_main(args)
    if args.install_baselines:
        install_conda_mirror()
    upstream = build_upstream(args.packages)
    # Generated in a child: this process must stay small, or every command it forks starts
    # with its pages and reports their size as peak memory.
    big = None
    if not args.skip_dry_run:
        with Pool(1) as pool:
            big = pool.apply(build_big_repodata)
    files = sorted(p for p in (upstream / "pkgs" / "main").rglob("*")
                   if p.name.endswith((".conda", ".tar.bz2")))
    total = sum(p.stat().st_size for p in files)
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    with scratch_space(args.tmpfs_size, prefix="bench-sync-") as scratch:
        with StaticServer(upstream) as server:
            served_by = server.kind
            print(f"upstream: {len(files)} files, {total / 1e6:.1f} MB, served by {served_by}",
                  file=sys.stderr)
            stats = alternate(sync_sides(args, upstream, files, server, scratch.path),
                              args.runs, scratch.path)
        dry = None
        if big is not None:
            with StaticServer(big) as server:
                dry = alternate(dry_run_sides(big, server, scratch.path), args.runs,
                                scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)

    labels = {"curl": "curl --parallel (8)", "cold": "cas-sync cold",
              "cold, new config": "cas-sync cold, configuration file just written",
              "no-op": "cas-sync no-op re-sync",
              "conda-mirror": "conda-mirror 0.10 (4 platform runs in one shell)"}
    targets = {"cold": cold_target(args.packages), "no-op": "<= 0.15 s",
               "conda-mirror": ">= 10x cas-sync cold"}
    report = table(stats, against={"cold": "curl", "cold, new config": "curl",
                                   "conda-mirror": "curl"}, targets=targets,
                   labels=labels)
    cold, curl, noop = stats["cold"], stats["curl"], stats["no-op"]
    verdicts = [
        (f"- cold sync = {cold.wall.median / curl.wall.median:.2f}x curl wall, "
         f"{cold.cpu.median / curl.cpu.median:.2f}x curl CPU "
         f"(target {cold_target(args.packages)}, wall)"),
        f"- no-op re-sync = {noop.wall.median:.3f} s (target <= 0.15 s)",
    ]
    if "conda-mirror" in stats:
        cm = stats["conda-mirror"]
        verdicts.insert(1, f"- conda-mirror / cas-sync cold = "
                           f"{cm.wall.median / cold.wall.median:.1f}x (target >= 10x)")
    else:
        verdicts.append("- conda-mirror 0.10: not run (--install-baselines installs it)")
    crashes = crash_note(stats)
    body = (f"`scripts/bench_sync.py --packages {args.packages}` ({header}): "
            f"{len(files)} package files, {total / 1e6:.0f} MB over {', '.join(PLATFORMS)}, "
            f"served by {served_by} on 127.0.0.1.\n\n{note}\n\n{report}\n\n"
            + "\n".join(verdicts) + (f"\n\n{crashes}" if crashes else ""))
    print(body)
    if args.write_docs:
        heading = "## cas-sync (conda)"
        if args.packages != 5000:
            heading += f", {args.packages:,} files"
        update_docs(f"{heading}\n\n{body}")
    if dry is not None:
        dry_run_report(args, big, dry, header, note)
    return 0


DRY_RUN_SECTION = f"## cas-sync --dry-run on {BIG_RECORDS:,} records"


def dry_run_main(args) -> int:
    """`--dry-run-only`: the big platform's dry run beside json.load, nothing else."""
    with Pool(1) as pool:  # generated in a child, as in main()
        big = pool.apply(build_big_repodata)
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    with scratch_space(args.tmpfs_size, prefix="bench-sync-") as scratch:
        with StaticServer(big) as server:
            dry = alternate(dry_run_sides(big, server, scratch.path), args.runs,
                            scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)
    dry_run_report(args, big, dry, header, note)
    return 0


def dry_run_report(args, big: Path, dry: dict, header: str, note: str) -> None:
    size = (big / "pkgs/main/linux-64/repodata.json").stat().st_size
    d, j = dry["dry-run"], dry["json.load"]
    verdict = (f"- dry-run on {BIG_RECORDS:,} records = {d.wall.median:.2f} s wall, "
               f"{d.cpu.median:.2f} s CPU, {d.peak.max:.0f} MB peak (target <= 1.5 s, "
               f"<= 400 MB); json.load alone {j.cpu.median:.2f} s CPU, {j.peak.max:.0f} MB")
    crashes = crash_note(dry)
    body = (f"`scripts/bench_sync.py --dry-run-only` ({header}): `cas-sync --dry-run` on one "
            f"generated linux-64 platform of {BIG_RECORDS:,} records ({size / 1e6:.0f} MB, "
            "8,000 names; license_blacklist GPL, blacklist `pkg1*` and `pkg2 >=5`, whitelist "
            "pkg10), beside `json.load` of the same file alone.\n\n"
            f"{note}\n\n"
            + table(dry, against={"dry-run": "json.load"},
                    targets={"dry-run": "<= 1.5 s, <= 400 MB"},
                    labels={"dry-run": "cas-sync --dry-run",
                            "json.load": "python json.load alone"})
            + f"\n\n{verdict}" + (f"\n\n{crashes}" if crashes else ""))
    print(body)
    if args.write_docs:
        update_docs(f"{DRY_RUN_SECTION}\n\n{body}")


if __name__ == "__main__":
    sys.exit(main())
