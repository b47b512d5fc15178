"""The payload of an installer: one uncompressed tar holding the environment unpacked on
the build machine and the few lists the shell header needs.

Why an unpacked prefix in a plain tar: the target has tar and coreutils only, so it can
neither decompress `.conda` (zip + zstd) nor `.tar.bz2` (bzip2 is not coreutils), and
its tar may not filter through gzip; a plain tar of what the packages unpack to is the
one format every target can read, in one pass, with no Python. The price is size (no
compression): compress the installer for transport if it matters.

Members:

- `prefix/`: the files of every package, in the solver's order (a later package's file
  wins over an earlier one with the same path, as conda's clobbering does), with the
  placeholders still in them; `prefix/conda-meta/<name>-<version>-<build>.json`, one
  record per package in the shape conda and rattler read (written by py-rattler's own
  `PrefixRecord`: the repodata record + `files` + `paths_data` + `requested_spec`); and
  `prefix/.condarc` naming the spec's http(s) channels (a local channel folder exists on
  the build machine only, so it is left out).
- `control/prefix-files`: one line per file to rewrite for the chosen prefix
  (`prefix.PrefixPatch.line`); `control/history`: the lines the installer appends to
  `conda-meta/history` under its date; `control/noarch-python`: the `.py` files of
  noarch: python packages, byte-compiled by the environment's python once it is in place.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..digests import file_digest
from .contents import PackageContents, PackageError, PathEntry
from .prefix import PrefixPatch, find_patch
from .spec import InstallerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayloadSummary:
    packages: tuple[str, ...]  # names, for `-u`
    max_binary_prefix: int | None  # the longest prefix every binary placeholder fits
    files: int
    patches: int


def dist_name(record) -> str:
    return f"{record.name.normalized}-{record.version}-{record.build}"


def write_payload(out, spec: InstallerSpec, packages: Sequence[PackageContents]
                  ) -> PayloadSummary:
    """Write the payload tar into the binary file object `out` (which stays open)."""
    winners: dict[str, tuple[PathEntry, PackageContents]] = {}
    for package in packages:
        for entry in package.entries:
            previous = winners.get(entry.path)
            if previous is not None and previous[1] is not package:
                log.debug("%s: %s replaces the file of %s", entry.path,
                          package.record.file_name, previous[1].record.file_name)
            winners[entry.path] = (entry, package)
    patches: list[PrefixPatch] = []
    noarch_py: list[str] = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, (entry, package) in winners.items():
            patch = _add_entry(tar, path, entry, package)
            if patch is not None:
                patches.append(patch)
            if package.noarch_python and path.endswith(".py"):
                noarch_py.append(path)
        with tempfile.TemporaryDirectory(prefix="cas-installer-meta-") as meta:
            for package in packages:
                record_path = Path(meta) / f"{dist_name(package.record)}.json"
                _prefix_record(package, spec).write_to_path(record_path, True)
                _add_bytes(tar, f"prefix/conda-meta/{record_path.name}",
                           record_path.read_bytes())
        urls = [c.url for c in spec.channels if c.url]
        if urls:
            condarc = "channels:\n" + "".join(f"  - {u}\n" for u in urls)
            _add_bytes(tar, "prefix/.condarc", condarc.encode())
        _add_bytes(tar, "control/prefix-files",
                   "".join(p.line() + "\n" for p in patches).encode())
        _add_bytes(tar, "control/history", _history(spec, packages).encode())
        _add_bytes(tar, "control/noarch-python", "".join(p + "\n" for p in noarch_py).encode())
    binary = [p.placeholder_length for p in patches if p.mode == "binary"]
    return PayloadSummary(tuple(dict.fromkeys(p.record.name.normalized for p in packages)),
                          min(binary) if binary else None, len(winners), len(patches))


def _add_entry(tar: tarfile.TarFile, path: str, entry: PathEntry,
               package: PackageContents) -> PrefixPatch | None:
    name = f"prefix/{path}"
    if entry.content is not None:
        _add_bytes(tar, name, entry.content, mode=0o755)
        data = entry.content
    elif entry.path_type == "directory":
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return None
    else:
        if not entry.source.is_symlink() and not entry.source.exists():
            raise PackageError(f"{package.record.file_name}: {path} is listed in its "
                               "metadata but not in the archive")
        info = tar.gettarinfo(str(entry.source), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if not info.isfile():
            tar.addfile(info)  # a symlink: its target is not rewritten (conda neither)
            return None
        if not entry.placeholder:
            with open(entry.source, "rb") as handle:  # streamed: files can be large
                tar.addfile(info, handle)
            return None
        data = entry.source.read_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    if entry.placeholder:
        return find_patch(path, data, entry.placeholder, entry.file_mode or "text")
    return None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _prefix_record(package: PackageContents, spec: InstallerSpec):
    import rattler

    entries = []
    for entry in package.entries:
        entries.append(rattler.PrefixPathsEntry(
            Path(entry.path), rattler.PrefixPathType(entry.path_type),
            prefix_placeholder=entry.placeholder,
            file_mode=rattler.FileMode(entry.file_mode) if entry.file_mode else None,
            sha256=bytes.fromhex(entry.sha256) if entry.sha256 else None,
            size_in_bytes=entry.size))
    paths = rattler.PrefixPaths()
    paths.paths = entries
    name = package.record.name.normalized
    requested = [s for s in spec.specs if rattler.MatchSpec(s).name
                 and rattler.MatchSpec(s).name.normalized == name]
    return rattler.PrefixRecord(
        package.record, paths, link=None, requested_spec=requested[0] if requested else None,
        files=[Path(e.path) for e in package.entries if e.path_type != "directory"])


def _history(spec: InstallerSpec, packages: Sequence[PackageContents]) -> str:
    lines = [f"# cmd: {spec.name}-{spec.version} installer (cas-installer)"]
    for package in packages:
        channel = (package.record.channel or "").rstrip("/")
        lines.append(f"+{channel}::{dist_name(package.record)}")
    lines.append(f"# update specs: {json.dumps(list(spec.specs))}")
    return "\n".join(lines) + "\n"


def sha256_of_tail(path: Path, start: int) -> str:
    return file_digest(path, start=start)
