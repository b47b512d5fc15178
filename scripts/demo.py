"""The demo: the whole job on self-contained data, on 127.0.0.1 only.

1. builds a small upstream conda channel (real packages: GPL ones, blacklisted ones,
   whitelisted ones, three platforms) and serves it on a loopback port;
2. mirrors it with the seed FAQ's configuration (platforms linux-32 and linux-64,
   license_blacklist GPL, blacklist flask and readline, whitelist distribute and conda):
   --show, --dry-run, the sync and its summary, --explain, and a no-op re-run.

Everything happens in a temporary folder, removed at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from tests.support.conda_packages import PkgSpec, build_channel  # noqa: E402
from tests.support.http_server import TestHTTPServer  # noqa: E402

UPSTREAM = [
    # name, version, license, license_family
    ("numpy", "1.26.4", "BSD-3-Clause", "BSD"),
    ("readline", "8.2", "GPL-3.0-only", "GPL3"),
    ("flask", "3.0.0", "BSD-3-Clause", "BSD"),
    ("gcc", "13.2.0", "GPL-3.0-or-later WITH GCC-exception-3.1", "GPL"),
    ("distribute", "0.6.45", "GPL-2.0-only", "GPL2"),  # whitelisted despite its license
    ("conda", "24.1.2", "BSD-3-Clause", "BSD"),
    ("glib", "2.78.4", "LGPL-2.1-or-later", "LGPL"),  # LGPL is not the GPL family
]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}",
          flush=True)


def run(args: list[str], env: dict) -> int:
    print("$ " + " ".join(args), flush=True)
    return subprocess.call([str(BIN / args[0]), *args[1:]], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description="cas-mirror demo on 127.0.0.1")
    parser.add_argument("--keep", action="store_true", help="keep the demo folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cas-mirror-demo-"))
    try:
        return demo(work)
    finally:
        if args.keep:
            print(f"\nthe demo folder is kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def demo(work: Path) -> int:
    step("1. an upstream conda channel with real packages, served on 127.0.0.1")
    specs = []
    for platform in ("linux-32", "linux-64", "win-64"):
        for name, version, license, family in UPSTREAM:
            specs.append(PkgSpec(name, version, build="h0_0", subdir=platform, license=license,
                                 license_family=family, payload_size=2048))
    specs.append(PkgSpec("tzdata", "2024a", build="0", subdir="noarch", license="CC0-1.0",
                         license_family="OTHER"))
    build_channel(work / "upstream" / "pkgs" / "main", specs)
    server = TestHTTPServer(work / "upstream").start()
    print(f"{len(specs)} packages at {server.url}/pkgs/main/{{linux-32,linux-64,win-64,noarch}}")

    config = work / "cas-mirror.yaml"
    config.write_text(
        f"remote_url: {server.url}\n"
        f"mirror_dir: {work / 'mirror'}\n"
        "platforms:\n  - linux-32\n  - linux-64\n"
        "license_blacklist: GPL\n"
        "whitelist:\n  - distribute\n  - conda\n"
        "blacklist:\n  - flask\n  - readline\n"
        "minimum_free_space: 10 MB\n")
    env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(work / "etc-cas-mirror"),
           "CAS_MIRROR_USER_CONFIG": str(config)}
    try:
        step("2. the configuration (the seed FAQ's example) and where each value came from")
        run(["cas-sync", "--show"], env)
        step("3. what a sync would do")
        run(["cas-sync", "--dry-run"], env)
        step("4. the sync")
        status = run(["cas-sync"], env)
        step("5. why readline and distribute went the way they did")
        run(["cas-sync", "--explain", "readline"], env)
        run(["cas-sync", "--explain", "distribute"], env)
        step("6. a second run: upstream unchanged, one conditional request per platform")
        server.clear_log()
        run(["cas-sync"], env)
        print(f"upstream saw: {', '.join(f'{r.path} -> {r.status}' for r in server.requests)}")
        return status
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
