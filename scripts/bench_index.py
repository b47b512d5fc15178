#!/usr/bin/env python
"""Benchmark cas-index against py-rattler's indexer on the same channel, in one run.

Builds (once, cached under bench-data/) a channel of 5,000 real package files (>= 100 MB:
20 KB of incompressible payload each) over linux-64, osx-arm64, win-64 and noarch, half
.conda and half .tar.bz2, with the test suite's package builder in a process pool; copies
it onto a tmpfs, and measures there, on the shared protocol (benchlib.alternate: a
warm-up each, then --runs rounds alternating all sides, every run a subprocess):

- cold, json + .zst + shards (issue 10): `cas-index --no-bz2` against
  rattler.index.index_fs(write_zst=True, write_shards=True), each on a fresh hard-linked
  copy of the channel (same tmpfs);
- cold, json + .zst (issue 15): `cas-index --no-bz2 --no-shards` against
  index_fs(write_zst=True, write_shards=False);
- cold with every default output of ours (json, .zst, .bz2, shards, ...), no baseline;
- warm (nothing changed) and one package added, both tools with .zst + shards, each on
  its own channel indexed by its warm-up run.

py-rattler 0.28's indexer sometimes dies with SIGSEGV: such a run is noted and redone.

    .venv/bin/python scripts/bench_index.py [--runs 5] [--names 125] [--write-docs]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import (  # noqa: E402
    Side,
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

from tests.support.conda_packages import PkgSpec, build_package  # noqa: E402

DATA = ROOT / "bench-data"
PLATFORMS = ("linux-64", "noarch", "osx-arm64", "win-64")
NAMES, VERSIONS, PAYLOAD = 125, 5, 20_000  # x 2 formats x 4 platforms = 5,000 files
CAS_INDEX = ROOT / ".venv/bin/cas-index"

RATTLER = """
import asyncio, sys
from rattler.index import index_fs
asyncio.run(index_fs(sys.argv[1], write_zst=sys.argv[2] == "zst",
                     write_shards=sys.argv[3] == "shards"))
"""


def channel_id(names: int) -> str:
    return f"channel-{names}x{VERSIONS}x2x{len(PLATFORMS)}-{PAYLOAD}"


def specs(names: int) -> list[PkgSpec]:
    out = []
    for subdir in PLATFORMS:
        for k in range(names):
            for v in range(VERSIONS):
                for fmt in (".conda", ".tar.bz2"):
                    out.append(PkgSpec(
                        f"bench-{k:03d}", f"{1 + v}.{k % 10}.0", build=f"h{k:04x}_{v}",
                        build_number=v, subdir=subdir, fmt=fmt, payload_size=PAYLOAD,
                        depends=[f"bench-{(k + 1) % names:03d} >=1", "python >=3.9"],
                        extra_index={"timestamp": 1700000000000 + k * 1000 + v},
                        about={"description": f"Benchmark package {k}, version {v}."}))
    return out


def _build_one(args: tuple[PkgSpec, str]) -> int:
    spec, folder = args
    return build_package(spec, folder).stat().st_size


def build_channel(names: int) -> Path:
    """The benchmark channel, built once and reused (delete bench-data/ to rebuild)."""
    final = DATA / channel_id(names)
    if final.is_dir():
        return final
    partial = DATA / (channel_id(names) + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    jobs = [(spec, str(partial / spec.subdir)) for spec in specs(names)]
    for subdir in PLATFORMS:
        (partial / subdir).mkdir(parents=True)
    print(f"building {len(jobs)} packages into {final} (once) ...", file=sys.stderr)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        total = sum(pool.imap_unordered(_build_one, jobs, chunksize=16))
    if names == NAMES:
        assert total >= 100 * 1000 * 1000, f"only {total} bytes"
    partial.rename(final)
    return final


def link_copy(source: Path, target: Path) -> Path:
    """A copy of the channel whose package files are hard links (indexers only read them;
    every output is a new file). Same file system: both on the tmpfs."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


def ours(channel: Path, *flags: str) -> list[str]:
    return [str(CAS_INDEX), str(channel), "-q", *flags]


def rattler(channel: Path, zst: bool, shards: bool) -> list[str]:
    return [sys.executable, "-c", RATTLER, str(channel), "zst" if zst else "-",
            "shards" if shards else "-"]


def sides(source: Path, scratch: Path) -> dict[str, Side]:
    added = iter(range(1_000_000))

    def cold(make):
        return Side(lambda folder: make(link_copy(source, folder / "channel")))

    def persistent(name: str, make, add: bool = False):
        """A channel of its own, indexed first by the side's warm-up run."""
        channel = scratch / name

        def command(folder: Path) -> list[str]:
            if not channel.exists():
                link_copy(source, channel)
            elif add:
                build_package(PkgSpec(f"bench-added-{next(added)}", "1.0", subdir="linux-64",
                                      payload_size=PAYLOAD), channel / "linux-64")
            return make(channel)

        return Side(command)

    return {
        "ours cold shards": cold(lambda ch: ours(ch, "--no-bz2")),
        "rattler cold shards": cold(lambda ch: rattler(ch, True, True)),
        "ours cold zst": cold(lambda ch: ours(ch, "--no-bz2", "--no-shards")),
        "rattler cold zst": cold(lambda ch: rattler(ch, True, False)),
        "ours cold default": cold(ours),
        "ours warm": persistent("warm-ours", lambda ch: ours(ch, "--no-bz2")),
        "rattler warm": persistent("warm-rattler", lambda ch: rattler(ch, True, True)),
        "ours one added": persistent("added-ours", lambda ch: ours(ch, "--no-bz2"), add=True),
        "rattler one added": persistent("added-rattler", lambda ch: rattler(ch, True, True),
                                        add=True),
    }


LABELS = {
    "ours cold shards": "cas-index cold, json + .zst + shards (`--no-bz2`)",
    "rattler cold shards": "rattler index_fs cold, write_zst + write_shards",
    "ours cold zst": "cas-index cold, json + .zst (`--no-bz2 --no-shards`)",
    "rattler cold zst": "rattler index_fs cold, write_zst",
    "ours cold default": "cas-index cold, every default output (+ .bz2)",
    "ours warm": "cas-index warm, nothing changed (`--no-bz2`)",
    "rattler warm": "rattler index_fs warm, nothing changed",
    "ours one added": "cas-index, one package added to linux-64 (`--no-bz2`)",
    "rattler one added": "rattler index_fs, one package added to linux-64",
}
AGAINST = {"ours cold shards": "rattler cold shards", "ours cold zst": "rattler cold zst",
           "ours warm": "rattler warm", "ours one added": "rattler one added"}
TARGETS = {"ours cold shards": "<= 0.7x rattler (issue 10)",
           "ours cold zst": "<= 0.6x rattler (issue 15)",
           "ours warm": "<= 0.06 s (issue 15; issue 10: <= 0.15 s)",
           "ours one added": "<= 0.5 s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=NAMES,
                        help=f"package names per platform (x {VERSIONS} versions x 2 formats "
                             f"x {len(PLATFORMS)} platforms; default {NAMES}: 5,000 files)")
    protocol_args(parser)
    args = parser.parse_args()
    check_protocol_args(parser, args)
    if not CAS_INDEX.exists():
        raise SystemExit(f"{CAS_INDEX} not found: run scripts/test once to create .venv")
    from importlib.metadata import version

    built = build_channel(args.names)
    files = [p for p in built.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    with scratch_space(args.tmpfs_size, prefix="bench-index-") as scratch:
        source = scratch.path / "source"
        shutil.copytree(built, source)
        stats = alternate(sides(source, scratch.path), args.runs, scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)
    report = table(stats, against=AGAINST, targets=TARGETS, labels=LABELS)
    verdicts = "\n".join(
        f"- {LABELS[ours_key]}: {stats[ours_key].wall.median / stats[theirs].wall.median:.2f}x "
        f"rattler wall, {stats[ours_key].cpu.median / stats[theirs].cpu.median:.2f}x CPU "
        f"({stats[ours_key].wall.median:.3f} s; target {TARGETS[ours_key]})"
        for ours_key, theirs in AGAINST.items())
    crashes = crash_note(stats)
    body = (f"`scripts/bench_index.py` ({header}, py-rattler {version('py-rattler')}): "
            f"{len(files)} package files, {size / 1e6:.0f} MB, {len(PLATFORMS)} platform "
            f"folders ({', '.join(PLATFORMS)}), half .conda and half .tar.bz2, "
            f"{PAYLOAD // 1000} KB incompressible payload each; the channel is copied onto "
            "the tmpfs and every cold run indexes a fresh hard-linked copy of it. Besides "
            "what rattler writes (repodata.json, .zst, shard index and shards), ours also "
            "writes index.html, channeldata.json, run_exports.json(.zst) and "
            "repodata_from_packages.json in every row.\n\n"
            f"{note}\n\n{report}\n\n{verdicts}" + (f"\n\n{crashes}" if crashes else "")
            + "\n\nReproduce: `.venv/bin/python scripts/bench_index.py --write-docs` "
            "(the channel is built once into `bench-data/`).")
    print(body)
    if args.write_docs:
        update_docs(f"## cas-index\n\n{body}")


if __name__ == "__main__":
    main()
