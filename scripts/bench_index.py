#!/usr/bin/env python
"""Benchmark cas-index against py-rattler's indexer on the same channel, in one run.

Builds (once, cached under bench-data/) a channel of 5,000 real package files (>= 100 MB:
20 KB of incompressible payload each) over linux-64, osx-arm64, win-64 and noarch, half
.conda and half .tar.bz2, with the test suite's package builder in a process pool. Then,
on fresh hard-linked copies of it, times as subprocesses (start-up included):

- cas-index cold (default outputs: json + .zst + .bz2 + html + channeldata), and cold with
  --no-bz2 --no-zst (what rattler writes: repodata.json only);
- cas-index warm (nothing changed) and with one package added;
- rattler.index.index_fs(..., write_zst=False, write_shards=False): cold, warm, one added.

Each measurement is repeated (--repeat, median reported) and the peak RSS is that of the
largest process of the run (getrusage RUSAGE_CHILDREN in a wrapper process). The
machine is shared and has 2 cores, so figures are noisy: quote ratios from one run.

    .venv/bin/python scripts/bench_index.py [--repeat 3] [--update-docs]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import update_docs  # noqa: E402

from tests.support.conda_packages import PkgSpec, build_package  # noqa: E402

DATA = ROOT / "bench-data"
PLATFORMS = ("linux-64", "noarch", "osx-arm64", "win-64")
NAMES, VERSIONS, PAYLOAD = 125, 5, 20_000  # x 2 formats x 4 platforms = 5,000 files
CHANNEL_ID = f"channel-{NAMES}x{VERSIONS}x2x{len(PLATFORMS)}-{PAYLOAD}"
CAS_INDEX = ROOT / ".venv/bin/cas-index"

# Runs a command as a child and reports its wall time and the largest RSS of it and its
# descendants, so the bench process's own memory never counts.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "code": code}))
"""

RATTLER = """
import asyncio, sys
from rattler.index import index_fs
asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=False))
"""


def specs() -> list[PkgSpec]:
    out = []
    for subdir in PLATFORMS:
        for k in range(NAMES):
            for v in range(VERSIONS):
                for fmt in (".conda", ".tar.bz2"):
                    out.append(PkgSpec(
                        f"bench-{k:03d}", f"{1 + v}.{k % 10}.0", build=f"h{k:04x}_{v}",
                        build_number=v, subdir=subdir, fmt=fmt, payload_size=PAYLOAD,
                        depends=[f"bench-{(k + 1) % NAMES:03d} >=1", "python >=3.9"],
                        extra_index={"timestamp": 1700000000000 + k * 1000 + v},
                        about={"description": f"Benchmark package {k}, version {v}."}))
    return out


def _build_one(args: tuple[PkgSpec, str]) -> int:
    spec, folder = args
    return build_package(spec, folder).stat().st_size


def build_channel() -> Path:
    """The benchmark channel, built once and reused (delete bench-data/ to rebuild)."""
    final = DATA / CHANNEL_ID
    if final.is_dir():
        return final
    partial = DATA / (CHANNEL_ID + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    jobs = [(spec, str(partial / spec.subdir)) for spec in specs()]
    for subdir in PLATFORMS:
        (partial / subdir).mkdir(parents=True)
    print(f"building {len(jobs)} packages into {final} (once) ...", file=sys.stderr)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        total = sum(pool.imap_unordered(_build_one, jobs, chunksize=16))
    assert total >= 100 * 1000 * 1000, f"only {total} bytes"
    partial.rename(final)
    return final


def fresh_copy(source: Path, name: str) -> Path:
    """A copy of the channel whose package files are hard links (indexers only read them;
    every output is a new file)."""
    target = DATA / "runs" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, copy_function=os.link)
    return target


CRASHES: list[str] = []


def measure(prepare, tries: int = 3) -> dict:
    """Time the command `prepare()` returns. A run killed by a signal (py-rattler 0.28's
    indexer sometimes dies with SIGSEGV) is noted and redone from a fresh `prepare()`."""
    for _ in range(tries):
        cmd = prepare()
        proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, cmd)],
                              capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout)
        if result["code"] == 0:
            return result
        tool = "rattler" if cmd[0] == sys.executable else "cas-index"
        CRASHES.append(f"{tool} (exit {result['code']})")
        print(f"  !! {tool} exited {result['code']}; retrying", file=sys.stderr)
        if result["code"] > 0:
            break
    raise SystemExit(f"{cmd} failed: exit {result['code']}")


def ours(channel: Path, *flags: str) -> list[str]:
    return [str(CAS_INDEX), str(channel), "-q", *flags]


def rattler(channel: Path) -> list[str]:
    return [sys.executable, "-c", RATTLER, str(channel)]


def add_package(channel: Path, tag: str) -> None:
    build_package(PkgSpec(f"bench-added-{tag}", "1.0", subdir="linux-64",
                          payload_size=PAYLOAD), channel / "linux-64")


def warm_page_cache(channel: Path) -> None:
    for path in channel.rglob("*"):
        if path.is_file():
            path.read_bytes()


LOAD_AT_START: list[float] = []


def run(repeat: int) -> dict[str, dict[str, list[dict]]]:
    source = build_channel()
    warm_page_cache(source)
    LOAD_AT_START.extend(os.getloadavg())
    results: dict[str, dict[str, list[dict]]] = {"cas-index": {}, "rattler": {}}

    def record(tool: str, what: str, result: dict) -> None:
        results[tool].setdefault(what, []).append(result)
        print(f"  {tool:9} {what:28} {result['seconds']:7.3f} s  "
              f"{result['peak_mb']:6.0f} MB", file=sys.stderr)

    for rep in range(repeat):
        one_round(source, rep, record)
    shutil.rmtree(DATA / "runs", ignore_errors=True)
    return results


def one_round(source: Path, rep: int, record) -> None:
    added = iter(range(1000))
    theirs = DATA / "runs/rattler"
    record("rattler", "cold", measure(lambda: rattler(fresh_copy(source, "rattler"))))
    record("rattler", "warm", measure(lambda: rattler(theirs)))

    def rattler_added():
        add_package(theirs, f"r{rep}-{next(added)}")
        return rattler(theirs)

    record("rattler", "one package added", measure(rattler_added))

    record("cas-index", "cold, json only", measure(
        lambda: ours(fresh_copy(source, "cas-index-json-only"), "--no-bz2", "--no-zst")))
    channel = DATA / "runs/cas-index"
    record("cas-index", "cold", measure(lambda: ours(fresh_copy(source, "cas-index"))))
    for _ in range(3):
        record("cas-index", "warm", measure(lambda: ours(channel)))

    def ours_added():
        add_package(channel, f"o{rep}-{next(added)}")
        return ours(channel)

    record("cas-index", "one package added", measure(ours_added))


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    def median(tool: str, what: str, key: str) -> float | None:
        runs = results[tool].get(what)
        return statistics.median(r[key] for r in runs) if runs else None

    rows = [
        ("cold: json + .zst + .bz2 + html + channeldata", "cold", "cold", "<= 1.0x rattler"),
        ("cold: repodata.json only (like-for-like)", "cold, json only", "cold",
         "<= 1.0x rattler"),
        ("warm: nothing changed", "warm", "warm", "<= 0.3 s"),
        ("one package added (to 1,250 in linux-64)", "one package added",
         "one package added", "<= 0.5 s"),
    ]
    lines = [("| run | cas-index | rattler index_fs | ratio | cas-index peak | rattler peak "
              "| target |"), "|---|---:|---:|---:|---:|---:|---|"]
    for label, ours_key, theirs_key, target in rows:
        a, b = median("cas-index", ours_key, "seconds"), median("rattler", theirs_key,
                                                                 "seconds")
        ma, mb = median("cas-index", ours_key, "peak_mb"), median("rattler", theirs_key,
                                                                   "peak_mb")
        lines.append(f"| {label} | {a:.3f} s | {b:.3f} s | {a / b:.2f}x | {ma:.0f} MB "
                     f"| {mb:.0f} MB | {target} |")
    return "\n".join(lines)


def describe(repeat: int) -> str:
    from importlib.metadata import version

    size = sum(p.stat().st_size for p in (DATA / CHANNEL_ID).rglob("*") if p.is_file())
    count = sum(1 for p in (DATA / CHANNEL_ID).rglob("*") if p.is_file())
    return (f"{datetime.date.today().isoformat()}, {platform.node() or 'this machine'}: "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, py-rattler "
            f"{version('py-rattler')}. Channel: {count} package files, {size / 1e6:.0f} MB, "
            f"{len(PLATFORMS)} platform folders ({', '.join(PLATFORMS)}), half .conda and "
            f"half .tar.bz2, {PAYLOAD // 1000} KB incompressible payload each. Median of "
            f"{repeat} runs (warm: of {3 * repeat}); every run is a subprocess, start-up "
            "included; peak = largest process's RSS.\n\n"
            "Load average "
            f"{', '.join(f'{x:.2f}' for x in LOAD_AT_START)} when the run began; this "
            "virtual machine's disk is noisy, so compare ratios within this table. "
            "rattler's indexer writes compact repodata.json only (with write_zst=False: "
            "no .zst, no .bz2, no html, no channeldata), hence the json-only row as the "
            "like-for-like cold figure; its warm and one-added figures are its own "
            "incremental runs.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--update-docs", action="store_true",
                        help="Replace the '## cas-index' section of docs/benchmarks.md.")
    args = parser.parse_args()
    if not CAS_INDEX.exists():
        raise SystemExit(f"{CAS_INDEX} not found: run scripts/test once to create .venv")
    results = run(args.repeat)
    report = table(results)
    print(report)
    crashes = (f"\n\nRuns killed by a signal and redone: {', '.join(CRASHES)}."
               if CRASHES else "")
    print(crashes.strip() or "no crashed runs")
    if args.update_docs:
        update_docs(f"## cas-index\n\n{describe(args.repeat)}\n\n{report}{crashes}\n\n"
                    "Reproduce: `.venv/bin/python scripts/bench_index.py --update-docs` "
                    "(the channel is built once into `bench-data/`).\n")


if __name__ == "__main__":
    main()
