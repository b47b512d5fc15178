"""Building the installers of a spec: for each platform, solve -> fetch (verified) ->
extract and read the packages -> write `NAME-VERSION-PLATFORM.sh` (header + payload).

The installer is written to a hidden temporary name in the output folder, its payload
size and sha256 filled into the header, flushed to disk, made executable and renamed into
place: a killed build leaves no half-written installer under the final name.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DiskFullError, is_disk_full
from ..net import Downloader, NetworkSettings
from . import header
from .contents import extract, python_site_packages, read_contents
from .payload import PayloadSummary, sha256_of_tail, write_payload
from .solve import fetch, solve
from .spec import InstallerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Built:
    platform: str
    path: Path
    packages: int
    size: int
    summary: PayloadSummary


def build_all(spec: InstallerSpec, out_dir: Path, cache_dir: Path,
              network: NetworkSettings | None = None) -> list[Built]:
    """Build the installer of every platform of `spec` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    built = []
    with Downloader(network or NetworkSettings()) as downloader:
        for platform in spec.platforms:
            built.append(build_one(spec, platform, out_dir, cache_dir, downloader))
    return built


def build_one(spec: InstallerSpec, platform: str, out_dir: Path, cache_dir: Path,
              downloader: Downloader) -> Built:
    records = solve(spec, platform, cache_dir)
    solved = fetch(records, downloader, cache_dir / "pkgs")
    site_packages = python_site_packages(records)
    target = out_dir / spec.installer_name(platform)
    with tempfile.TemporaryDirectory(prefix=".cas-installer-", dir=cache_dir) as work:
        packages = []
        for item in solved:
            folder = extract(item.path, Path(work) / item.record.file_name)
            packages.append(read_contents(item.record, folder, site_packages))
        temp = out_dir / f".{target.name}.part"
        try:
            summary = _write(temp, spec, platform, packages)
            temp.chmod(0o755)
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFullError(f"{target}: no space left while writing the installer; "
                                    "nothing written") from None
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    size = target.stat().st_size
    log.info("wrote %s (%d packages, %d bytes)", target, len(packages), size)
    return Built(platform, target, len(packages), size, summary)


def _write(temp: Path, spec: InstallerSpec, platform: str, packages) -> PayloadSummary:
    with open(temp, "w+b") as out:
        # The header depends on the payload (names, binary limit): write the payload after
        # a header of the same length, then write the header again at the start.
        with tempfile.TemporaryFile(dir=temp.parent) as payload:
            summary = write_payload(payload, spec, packages)
            head = header.render(spec, platform, summary)
            out.write(head)
            payload.seek(0)
            shutil.copyfileobj(payload, out, 1 << 20)
        size = out.tell() - len(head)
        out.flush()
        digest = sha256_of_tail(temp, len(head))
        filled = (head.replace(
            f"{header.SIZE_FIELD}{'0'.ljust(header.SIZE_WIDTH)}".encode(),
            f"{header.SIZE_FIELD}{str(size).ljust(header.SIZE_WIDTH)}".encode(), 1)
            .replace(f"{header.SHA_FIELD}{'0' * 64}".encode(),
                     f"{header.SHA_FIELD}{digest}".encode(), 1))
        assert len(filled) == len(head)
        out.seek(0)
        out.write(filled)
        out.flush()
        os.fsync(out.fileno())
    return summary
