#!/usr/bin/env python3
"""Measure `cas-sync export` on a large mirror tree: how cheap "what changed" is.

The tree (on the tmpfs, built once per invocation) has --files files: conda packages in
three platform folders with their repodata, and PyPI release files in bandersnatch's
three-level layout with one page per project. Three cases, each beside the practical
baseline that does the same work without manifest or snapshot:

- no-op: nothing changed since the last export (its snapshot is the base). Baseline:
  `find -printf` of every file's size and mtime, the least any change detection can do.
- incremental: 1% of the files changed since the base. Baseline: `tar -cf` of exactly
  those files, named in a list (what `diff_file` + tar gives, with no hashes, no
  deletions, no manifest).
- full (`--since none`): everything. Baseline: `tar -cf` of the whole tree.

Usage: scripts/bench_airgap.py [--runs 5] [--files 100000] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    VENV_BIN,
    Side,
    alternate,
    cache_env,
    check_protocol_args,
    crash_note,
    machine_line,
    protocol_args,
    protocol_note,
    scratch_space,
    table,
    update_docs,
)

SECTION = "## cas-sync export (air-gap bundles)"
FILE_SIZE = 1000  # bytes per file: the figures are per-file costs, not bandwidth


def build_tree(mirror: Path, count: int) -> list[str]:
    """`count` files under `mirror` (60% conda, 40% PyPI); returns their relative paths."""
    rng = random.Random(14)
    paths = []
    conda = count * 6 // 10
    platforms = ("linux-64", "osx-arm64", "noarch")
    for index in range(conda):
        paths.append(f"pkgs/main/{platforms[index % 3]}/pkg{index}-1.0-0.conda")
    for index in range(count - conda):
        digest = f"{rng.getrandbits(256):064x}"
        paths.append(f"pypi/web/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/"
                     f"proj{index % 5000}-1.{index}-py3-none-any.whl")
    for rel in paths:
        target = mirror / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rng.randbytes(FILE_SIZE))
    for platform in platforms:
        names = [p.rsplit("/", 1)[1] for p in paths if f"/{platform}/" in p]
        doc = {"info": {"subdir": platform}, "packages": {}, "removed": [],
               "packages.conda": {n: {"name": n.split("-")[0], "size": FILE_SIZE}
                                  for n in names}, "repodata_version": 1}
        (mirror / f"pkgs/main/{platform}/repodata.json").write_text(json.dumps(doc))
    for project in range(min(5000, count - conda)):
        page = mirror / f"pypi/web/simple/proj{project}/index.v1_json"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(json.dumps({"name": f"proj{project}", "files": []}))
    return paths


def touch(mirror: Path, paths: list[str]) -> None:
    for rel in paths:
        target = mirror / rel
        target.write_bytes(target.read_bytes()[::-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000,
                        help="files in the mirror tree (default 100000)")
    protocol_args(parser, tmpfs="2g")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    header = machine_line()
    load_at_start = os.getloadavg()[0]
    print(header, file=sys.stderr)
    with scratch_space(args.tmpfs_size, prefix="bench-airgap-") as scratch:
        mirror = scratch.path / "mirror"
        paths = build_tree(mirror, args.files)
        config = scratch.path / "cas-mirror.yaml"
        config.write_text(json.dumps({"mirror_dir": str(mirror)}))
        env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": "/nonexistent",
               "CAS_MIRROR_USER_CONFIG": str(config), **cache_env(config.parent)}
        cas_sync = str(VENV_BIN / "cas-sync")
        exports = mirror / ".cas-sync" / "exports"

        def export(since: str | None = None) -> str:
            dest = scratch.path / "setup-bundles"
            done = os.spawnve(os.P_WAIT, cas_sync, [
                cas_sync, "-q", "export", str(dest), *(["--since", since] if since else [])],
                env)
            assert done == 0, done
            shutil.rmtree(dest)
            return (exports / "latest").read_text().strip()

        base = export()  # the snapshot the incremental runs start from
        changed = sorted(random.Random(1).sample(paths, len(paths) // 100))
        touch(mirror, changed)
        latest = export()  # the snapshot the no-op runs start from
        changed_list = scratch.path / "changed.txt"
        changed_list.write_text("".join(f"{p}\n" for p in changed))

        def from_state(state: str):
            def command(folder: Path) -> list[str]:
                for snapshot in exports.iterdir():  # only the two setup states stay
                    if snapshot.name.split(".")[0] not in (base, latest, "latest"):
                        snapshot.unlink()
                (exports / "latest").write_text(f"{state}\n")
                return [cas_sync, "-q", "export", folder / "bundles"]
            return command

        def full(folder: Path) -> list[str]:
            (exports / "latest").write_text(f"{latest}\n")
            return [cas_sync, "-q", "export", folder / "bundles", "--since", "none"]

        sides = {
            "no-op export": Side(from_state(latest), env=env),
            "find -printf (listing floor)": Side(lambda folder: [
                "sh", "-c", f"find {mirror} -type f -printf '%s %T@ %P\\n' > /dev/null"]),
            "incremental export (1% changed)": Side(from_state(base), env=env),
            "tar of the changed files": Side(lambda folder: [
                "tar", "-cf", folder / "changed.tar", "-C", mirror, "-T", changed_list]),
            "full export (--since none)": Side(full, env=env),
            "tar of the whole tree": Side(lambda folder: [
                "tar", "-cf", folder / "all.tar", "-C", mirror, "--exclude=.cas-sync",
                "."]),
        }
        stats = alternate(sides, args.runs, scratch.path)
        note = protocol_note(args.runs, scratch, load_at_start)
    against = {"no-op export": "find -printf (listing floor)",
               "incremental export (1% changed)": "tar of the changed files",
               "full export (--since none)": "tar of the whole tree"}
    report = table(stats, against=against)
    body = (f"`scripts/bench_airgap.py` ({header}): a mirror tree of {args.files:,} files of "
            f"{FILE_SIZE} bytes (60% conda packages in three platform folders, 40% PyPI "
            "release files in bandersnatch's layout, plus repodata and 5,000 project "
            "pages), on tmpfs. Each export is a whole `cas-sync export` process (start-up, "
            "the locks, listing the tree, loading the base snapshot, the volumes with their "
            "sha256, the manifest and the new snapshot); the baselines do only the copying "
            "or listing. The load average (2 cores) is given: above 2, other work shared "
            f"the machine.\n\n{note}\n\n{report}")
    crashes = crash_note(stats)
    body += f"\n\n{crashes}" if crashes else ""
    print(body)
    if args.write_docs:
        update_docs(f"{SECTION}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
