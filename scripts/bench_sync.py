#!/usr/bin/env python3
"""Benchmark the conda sync (issue: cas-sync), all in one run:

1. an upstream of 5,000 real package files (~100 MB) over linux-64, osx-64, win-64 and
   noarch, served on loopback (nginx when installed, else a threaded server);
2. `curl --parallel` (8 transfers) fetching the same files: the practical limit;
3. our cold sync, then our no-op re-sync (nothing changed upstream);
4. conda-mirror 0.10 (PyPI `conda-mirror`, one --platform per run) when installed in
   bench-data/venv-conda-mirror (this script installs it there with --install-baselines);
5. `cas-sync --dry-run` on a generated 320,000-record repodata.json (~150 MB): time and
   peak memory.

Usage: scripts/bench_sync.py [--packages 5000] [--install-baselines] [--write-docs]
Targets: cold <= 3x curl and >= 10x faster than conda-mirror; no-op <= 0.5 s;
dry-run on 320k records <= 5 s and <= 1.2 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

from benchlib import (
    BENCH_DATA,
    VENV_BIN,
    StaticServer,
    machine_line,
    markdown_table,
    run_timed,
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


def build_big_repodata() -> Path:
    root = BENCH_DATA / "sync-big-repodata"
    target = root / "pkgs" / "main" / "linux-64" / "repodata.json"
    if target.exists():
        return root
    print(f"generating a {BIG_RECORDS}-record repodata.json (once; cached)", flush=True)
    rng = random.Random(1)
    names = [f"pkg{i}" for i in range(8000)]
    licenses = ["MIT", "BSD-3-Clause", "GPL-3.0-or-later", "LGPL-2.1", "Apache-2.0", "GPL2"]
    packages, conda = {}, {}
    for i in range(BIG_RECORDS):
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
            "CAS_MIRROR_USER_CONFIG": str(config)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=5000)
    parser.add_argument("--install-baselines", action="store_true",
                        help="install conda-mirror 0.10 into bench-data/venv-conda-mirror")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the cas-sync section of docs/benchmarks.md")
    parser.add_argument("--skip-conda-mirror", action="store_true")
    args = parser.parse_args()
    if args.install_baselines:
        install_conda_mirror()
    upstream = build_upstream(args.packages)
    # Generated in a child: this process must stay small, or every command it forks starts
    # with its pages and reports their size as peak memory.
    with Pool(1) as pool:
        big = pool.apply(build_big_repodata)
    files = [p for p in (upstream / "pkgs" / "main").rglob("*")
             if p.name.endswith((".conda", ".tar.bz2"))]
    total = sum(p.stat().st_size for p in files)
    cas_sync = str(VENV_BIN / "cas-sync")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=BENCH_DATA) as tmp_name, \
            StaticServer(upstream) as server:
        tmp = Path(tmp_name)
        print(f"upstream: {len(files)} files, {total / 1e6:.1f} MB, served by {server.kind}")
        # 1. curl --parallel: the practical limit
        curl_dir = tmp / "curl"
        config_lines = []
        for path in files:
            rel = path.relative_to(upstream)
            config_lines.append(f'url = "{server.url}/{rel}"\noutput = "{curl_dir / rel}"\n')
        (tmp / "curl.cfg").write_text("".join(config_lines))
        curl = run_timed(["curl", "-s", "--create-dirs", "--parallel", "--parallel-max", "8",
                          "-K", str(tmp / "curl.cfg")])
        rows.append(["curl --parallel (8)", f"{curl.seconds:.2f}", f"{curl.peak_mb:.0f}", "1.00"])

        # 2. our cold and no-op syncs
        config = tmp / "cas-mirror.yaml"
        config.write_text(f"remote_url: {server.url}\nmirror_dir: {tmp / 'mirror'}\n"
                          f"platforms: [{', '.join(PLATFORMS)}]\nworkers: 8\n"
                          "minimum_free_space: 0\n")
        cold = run_timed([cas_sync, "--quiet"], env=cas_env(config))
        assert cold.returncode == 0, "cold sync failed"
        mirrored = sum(1 for p in (tmp / "mirror").rglob("*")
                       if p.name.endswith((".conda", ".tar.bz2")))
        assert mirrored == len(files), f"mirrored {mirrored} of {len(files)} files"
        noop = run_timed([cas_sync, "--quiet"], env=cas_env(config))
        assert noop.returncode == 0
        rows.append(["cas-sync cold", f"{cold.seconds:.2f}", f"{cold.peak_mb:.0f}",
                     f"{cold.seconds / curl.seconds:.2f}"])
        rows.append(["cas-sync no-op re-sync", f"{noop.seconds:.2f}", f"{noop.peak_mb:.0f}",
                     f"{noop.seconds / curl.seconds:.2f}"])

        # 3. conda-mirror 0.10, one --platform per run
        conda_mirror = BENCH_DATA / "venv-conda-mirror" / "bin" / "conda-mirror"
        cm_seconds = None
        if conda_mirror.exists() and not args.skip_conda_mirror:
            cm_seconds, cm_peak = 0.0, 0.0
            for platform in PLATFORMS:
                t = run_timed([str(conda_mirror), "--upstream-channel",
                               f"{server.url}/pkgs/main", "--target-directory",
                               str(tmp / "conda-mirror"), "--platform", platform,
                               "--num-threads", "0", "--minimum-free-space", "0"])
                assert t.returncode == 0, f"conda-mirror failed for {platform}"
                cm_seconds += t.seconds
                cm_peak = max(cm_peak, t.peak_mb)
            rows.append(["conda-mirror 0.10 (4 runs)", f"{cm_seconds:.2f}", f"{cm_peak:.0f}",
                         f"{cm_seconds / curl.seconds:.2f}"])
        else:
            rows.append(["conda-mirror 0.10", "not installed (--install-baselines)", "", ""])

    with tempfile.TemporaryDirectory(prefix="bench-dry-", dir=BENCH_DATA) as tmp, \
            StaticServer(big) as server:
        config = Path(tmp) / "cas-mirror.yaml"
        config.write_text(f"remote_url: {server.url}\nmirror_dir: {tmp}/mirror\n"
                          "platforms: [linux-64]\nlicense_blacklist: GPL\n"
                          "blacklist: ['pkg1*', 'pkg2 >=5']\nwhitelist: [pkg10]\n")
        size = (big / "pkgs/main/linux-64/repodata.json").stat().st_size
        dry = run_timed([cas_sync, "--dry-run"], env=cas_env(config))
        assert dry.returncode == 0, "dry run failed"
        rows.append([f"cas-sync --dry-run, {BIG_RECORDS} records ({size / 1e6:.0f} MB)",
                     f"{dry.seconds:.2f}", f"{dry.peak_mb:.0f}", ""])

    table = markdown_table(["run", "seconds", "peak MB", "x curl"], rows)
    verdicts = [
        f"- cold sync = {cold.seconds / curl.seconds:.2f}x curl (target <= 3x)",
        f"- no-op re-sync = {noop.seconds:.2f} s (target <= 0.5 s)",
        (f"- dry-run on {BIG_RECORDS} records = {dry.seconds:.2f} s, {dry.peak_mb:.0f} MB "
         "peak (target <= 5 s, <= 1.2 GB)"),
    ]
    if cm_seconds:
        verdicts.insert(1, f"- conda-mirror / cas-sync cold = {cm_seconds / cold.seconds:.1f}x "
                           "(target >= 10x)")
    body = (f"`scripts/bench_sync.py` ({machine_line()}): {len(files)} package files, "
            f"{total / 1e6:.0f} MB over {', '.join(PLATFORMS)}, served by {server.kind} on "
            f"127.0.0.1.\n\n{table}\n\n" + "\n".join(verdicts))
    print(body)
    if args.write_docs:
        update_docs(f"## cas-sync (conda)\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
