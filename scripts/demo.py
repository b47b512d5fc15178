"""The demo: the whole job on self-contained data, on 127.0.0.1 only.

1. builds a small upstream conda channel (real packages: GPL ones, blacklisted ones,
   whitelisted ones, three platforms) and serves it on a loopback port;
2. mirrors it with the seed FAQ's configuration (platforms linux-32 and linux-64,
   license_blacklist GPL, blacklist flask and readline, whitelist distribute and conda):
   --show, --dry-run, the sync and its summary, --explain, and a no-op re-run;
3. drops an in-house package into an internal channel and indexes it with cas-index;
4. mirrors a small PyPI-like index (real wheels and sdists) with cas-sync pypi;
5. serves the whole mirror with cas-server, installs the in-house package (and the mirrored
   package it needs) with py-rattler, downloads a wheel with pip, and prints the .condarc
   and pip.conf a user would copy.

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

from tests.support.cas_server import CasServer  # noqa: E402
from tests.support.clients import rattler_install  # noqa: E402
from tests.support.conda_packages import PkgSpec, build_channel, build_package  # noqa: E402
from tests.support.http_server import TestHTTPServer  # noqa: E402
from tests.support.pypi_packages import SimpleUpstream  # noqa: E402

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

    pypi = SimpleUpstream(work / "pypi-upstream")
    pypi_server = TestHTTPServer(work / "pypi-upstream").start()
    pypi.serve(pypi_server)
    for name, version in (("requests-lite", "2.31.0"), ("requests-lite", "2.32.0"),
                          ("tomlish", "1.0"), ("blocked-pkg", "0.1")):
        pypi.add(name, version)
    config = work / "cas-mirror.yaml"
    config.write_text(
        f"remote_url: {server.url}\n"
        f"mirror_dir: {work / 'mirror'}\n"
        "platforms:\n  - linux-32\n  - linux-64\n"
        "license_blacklist: GPL\n"
        "whitelist:\n  - distribute\n  - conda\n"
        "blacklist:\n  - flask\n  - readline\n"
        "minimum_free_space: 10 MB\n"
        f"pypi:\n  remote_url: {pypi.url}\n  blacklist: [blocked-pkg]\n")
    env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(work / "etc-cas-mirror"),
           "CAS_MIRROR_USER_CONFIG": str(config)}
    mirror = work / "mirror"
    try:
        step("2. the configuration (the seed FAQ's example) and where each value came from")
        run(["cas-sync", "--show"], env)
        step("3. what a sync would do")
        run(["cas-sync", "--dry-run"], env)
        step("4. the sync")
        statuses = [run(["cas-sync"], env)]
        step("5. why readline and distribute went the way they did")
        run(["cas-sync", "--explain", "readline"], env)
        run(["cas-sync", "--explain", "distribute"], env)
        step("6. a second run: upstream unchanged, one conditional request per platform")
        server.clear_log()
        run(["cas-sync"], env)
        print(f"upstream saw: {', '.join(f'{r.path} -> {r.status}' for r in server.requests)}")

        step("7. an in-house package dropped into an internal channel, indexed by cas-index")
        internal = mirror / "internal-pkgs" / "linux-64"
        build_package(PkgSpec("inhouse-tool", "0.1", subdir="linux-64", depends=["numpy"],
                              license="Proprietary", license_family="Proprietary"), internal)
        print(f"copied inhouse-tool-0.1-0.conda to {internal}")
        statuses.append(run(["cas-index", str(mirror / "internal-pkgs")], env))

        step("8. a PyPI mirror (blocked-pkg blacklisted)")
        statuses.append(run(["cas-sync", "pypi"], env))

        step("9. serve it all with cas-server, install with real clients")
        served = CasServer(mirror, work / "server", "-f", str(config))
        try:
            print(f"cas-server is serving {mirror} at {served.url}")
            condarc = subprocess.run([str(BIN / "cas-sync"), "--condarc", served.url],
                                     env=env, capture_output=True, text=True, check=True).stdout
            channels = [line.split("- ", 1)[1] for line in condarc.splitlines()
                        if line.startswith("  - ")]
            installed = rattler_install(channels, ["inhouse-tool"], work / "env")
            print(f"py-rattler installed into {work / 'env'}: {', '.join(installed)}")
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
                 "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
                 "--index-url", f"{served.url}/pypi/simple/", "requests-lite",
                 "-d", str(work / "wheels")], capture_output=True, text=True, check=False)
            print(f"pip downloaded: {', '.join(sorted(os.listdir(work / 'wheels')))}"
                  if pip.returncode == 0 else f"pip failed: {pip.stderr}")
            statuses.append(pip.returncode)

            step("10. what clients of this mirror put in their configuration")
            run(["cas-sync", "--condarc", served.url], env)
            run(["cas-sync", "--pip-conf", served.url], env)
        finally:
            served.stop()
        return max(statuses)
    finally:
        server.stop()
        pypi_server.stop()


if __name__ == "__main__":
    sys.exit(main())
