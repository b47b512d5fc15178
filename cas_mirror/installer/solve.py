"""Solving the spec for one platform with rattler's solver (the conda world's own), and
fetching the solved packages: through the shared downloader (`cas_mirror.net`) for
http(s) channels, each checked for size and sha256; straight from the folder for a local
channel, checked the same way. A spec that cannot be solved, or a package that cannot be
fetched or does not match its repodata record, is an error naming the package.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..digests import file_digest
from ..errors import EXIT_PARTIAL, CasError, ConfigError
from ..net import Downloader, DownloadJob
from ..text import plural, safe
from .spec import InstallerSpec

log = logging.getLogger(__name__)
_DEP_NAME = re.compile(r"[^\s=<>!~\[,]+")  # the name at the start of a depends entry


class SolveError(CasError):
    """The specs have no solution on a platform (or a channel could not be read)."""


class FetchError(CasError):
    """Some solved packages could not be fetched or verified: no installer is written."""

    exit_code = EXIT_PARTIAL


@dataclass(frozen=True)
class Solved:
    """One solved package: its rattler record and the verified file on this machine."""

    record: object  # rattler.RepoDataRecord
    path: Path


def solve(spec: InstallerSpec, platform: str, cache_dir: Path) -> list:
    """The records rattler's solver chooses for `spec.specs` on `platform` (+ noarch),
    dependencies before their dependents."""
    import rattler

    virtual = _virtual_packages(platform)
    gateway = rattler.Gateway(cache_dir=cache_dir / "rattler")

    async def run() -> list:
        return await rattler.solve([c.location for c in spec.channels], list(spec.specs),
                                   gateway=gateway, platforms=[platform, "noarch"],
                                   virtual_packages=virtual)

    log.info("solving %s for %s from %s", ", ".join(spec.specs), platform,
             ", ".join(c.location for c in spec.channels))
    problem = None
    try:
        records = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - rattler raises one type per failure kind
        problem = " ".join(str(exc).split())
    if problem is not None:
        # py-rattler 0.28 may crash (SIGSEGV/abort) while the interpreter shuts down if its
        # error or the gateway outlives the failed solve; keep neither (not even as the
        # new error's __context__) and collect them now, while its runtime is alive.
        del gateway
        gc.collect()
        raise SolveError(f"{spec.path}: cannot solve specs {', '.join(spec.specs)} for "
                         f"{platform}: {problem}")
    return dependencies_first(records)


def dependencies_first(records: list) -> list:
    """`records` ordered so each comes after the records it depends on (by name), as conda
    links them; ties (and cycles) keep the solver's order."""
    by_name = {r.name.normalized: r for r in records}
    ordered: list = []
    state: dict[str, int] = {}  # 1: visiting, 2: done

    def visit(name: str) -> None:
        if state.get(name) or name not in by_name:
            return
        state[name] = 1
        for dep in by_name[name].depends:
            match = _DEP_NAME.match(dep)
            visit(match.group().lower() if match else "")
        state[name] = 2
        ordered.append(by_name[name])

    for record in sorted(records, key=lambda r: r.name.normalized):
        visit(record.name.normalized)
    return ordered


# What the target is assumed to offer, per platform family: old enough that the installer
# runs on the machines conda-forge still supports; CONDA_OVERRIDE_GLIBC / _OSX / _CUDA (the
# variables conda and rattler read) raise or add them.
VIRTUAL_PACKAGES = {"linux": {"__unix": "0", "__linux": "0", "__glibc": "2.17"},
                    "osx": {"__unix": "0", "__osx": "10.13"}, "freebsd": {"__unix": "0"}}
OVERRIDES = {"__glibc": "CONDA_OVERRIDE_GLIBC", "__osx": "CONDA_OVERRIDE_OSX",
             "__cuda": "CONDA_OVERRIDE_CUDA"}


def _virtual_packages(platform: str) -> list:
    import rattler

    versions = dict(VIRTUAL_PACKAGES.get(platform.split("-")[0], {}))
    for name, variable in OVERRIDES.items():
        value = os.environ.get(variable, "").strip()
        if value and (name in versions or name == "__cuda"):
            if not re.fullmatch(r"\d+(\.\d+)*", value):
                raise ConfigError(f"environment variable {variable}: {value!r} is not a "
                                  "version such as 2.28")
            versions[name] = value
    log.info("assuming the target offers %s",
             ", ".join(f"{n} {v}" for n, v in versions.items()))
    return [rattler.GenericVirtualPackage(rattler.PackageName(name), rattler.Version(version),
                                          rattler.BuildString("0"))
            for name, version in versions.items()]


def fetch(records: list, downloader: Downloader, pkgs_dir: Path) -> list[Solved]:
    """The verified file of each record: local channel files are checked where they are,
    remote ones downloaded (or found already downloaded and verified) into `pkgs_dir`."""
    solved: list[Solved] = []
    jobs: list[DownloadJob] = []
    failures: list[str] = []
    for record in records:
        sha256 = record.sha256.hex() if record.sha256 else None
        parts = urlsplit(record.url)
        if parts.scheme == "file":
            path = Path(unquote(parts.path))
            problem = verify_file(path, record.size, sha256)
            if problem:
                failures.append(f"{record.file_name}: {problem}")
            solved.append(Solved(record, path))
            continue
        dest = pkgs_dir / record.subdir / record.file_name
        solved.append(Solved(record, dest))
        if dest.is_file() and verify_file(dest, record.size, sha256) is None:
            log.debug("already downloaded and verified: %s", dest)
            continue
        jobs.append(DownloadJob(record.url, dest, size=record.size, sha256=sha256,
                                md5=None if sha256 else (record.md5.hex() if record.md5
                                                         else None)))
    if jobs:
        log.info("downloading %s", plural(len(jobs), "package"))
        for result in downloader.download(jobs):
            if not result.ok:
                failures.append(f"{result.job.url}: {result.error}")
    if failures:
        shown = "; ".join(safe(f) for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise FetchError(f"{plural(len(failures), 'package')} could not be fetched or "
                         f"verified, no installer written: {shown}{more}")
    return solved


def verify_file(path: Path, size: int | None, sha256: str | None) -> str | None:
    """None when `path` has the `size` and `sha256` given, else what is wrong."""
    try:
        actual = path.stat().st_size
        if size is not None and actual != size:
            return f"{path}: {actual} bytes, the repodata says {size}"
        if sha256 and (actual_sha256 := file_digest(path)) != sha256:
            return f"{path}: sha256 {actual_sha256}, the repodata says {sha256}"
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    return None
