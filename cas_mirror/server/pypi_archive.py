"""What an uploaded PyPI file really is: a wheel or an sdist whose name, version and core
metadata agree with each other, read without trusting its sizes.

Owns the checks of item 2 and 6 of the uploads issue on the file itself: the file name
parses as a wheel or `.tar.gz` sdist (packaging's rules, as pip reads them), the archive
opens, holds exactly one core metadata file (`*.dist-info/METADATA` at the top of a
wheel, `<base>/PKG-INFO` of an sdist) whose Name and Version are the file name's, and
inflates to no more than a bound (a zip or gzip bomb is refused before it is inflated:
wheel members by their declared sizes, sdists by counting what is decompressed). Raises
`Refusal(400, reason)`; no I/O besides reading the one file.
"""

from __future__ import annotations

import email.parser
import gzip
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .auth import Refusal

MAX_METADATA = 4 << 20  # bytes of a METADATA / PKG-INFO file
MIN_INFLATE_BOUND = 256 << 20  # an archive may always inflate to this much
INFLATE_RATIO = 50  # ... or to this many times its own size, whichever is more
MAX_MEMBERS = 200_000


@dataclass(frozen=True)
class Distribution:
    filename: str
    name: str  # as the metadata spells it
    normalized: str
    version: str
    filetype: str  # "bdist_wheel" or "sdist"
    metadata: bytes
    requires_python: str | None


def check_filename(filename: str) -> tuple[str, Version, str]:
    """(normalized project, version, filetype) of an upload's file name."""
    if (not filename or "/" in filename or "\\" in filename or "\x00" in filename
            or filename.startswith(".") or filename != filename.strip()):
        raise Refusal(400, f"file name {filename!r} is not a plain file name")
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return name, version, "bdist_wheel"
        if filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
            return name, version, "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise Refusal(400, f"{filename!r} is not a valid wheel or sdist name ({exc})"
                      ) from None
    raise Refusal(400, f"{filename!r}: only wheels (.whl) and sdists (.tar.gz) are taken")


def inspect(path: Path, filename: str) -> Distribution:
    normalized, version, filetype = check_filename(filename)
    size = path.stat().st_size
    bound = max(MIN_INFLATE_BOUND, INFLATE_RATIO * size)
    if filetype == "bdist_wheel":
        metadata = _wheel_metadata(path, filename, bound)
    else:
        metadata = _sdist_metadata(path, filename, bound)
    headers = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    meta_name, meta_version = headers.get("Name"), headers.get("Version")
    if not meta_name or not meta_version:
        raise Refusal(400, f"{filename}: the core metadata lacks Name or Version")
    if canonicalize_name(meta_name) != normalized:
        raise Refusal(400, f"{filename}: its metadata names project {meta_name!r}, not "
                      f"{normalized!r}")
    if not same_version(meta_version, version):
        raise Refusal(400, f"{filename}: its metadata says version {meta_version!r}, the "
                      f"file name {version}")
    return Distribution(filename, str(meta_name), normalized, str(version), filetype,
                        metadata, headers.get("Requires-Python") or None)


def _wheel_metadata(path: Path, filename: str, bound: int) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise Refusal(400, f"{filename}: more than {MAX_MEMBERS} members")
            inflated = sum(info.file_size for info in infos)
            if inflated > bound:
                raise Refusal(400, f"{filename}: inflates to {inflated} bytes, more than "
                              f"{bound} (a zip bomb?)")
            found = [info for info in infos if info.filename.count("/") == 1
                     and info.filename.endswith(".dist-info/METADATA")]
            if len(found) != 1:
                raise Refusal(400, f"{filename}: not a wheel (expected one "
                              f"*.dist-info/METADATA, found {len(found)})")
            if found[0].file_size > MAX_METADATA:
                raise Refusal(400, f"{filename}: METADATA is too large")
            with archive.open(found[0]) as member:
                return member.read(MAX_METADATA + 1)[:MAX_METADATA]
    except Refusal:
        raise
    # (zipfile raises NotImplementedError for a compression method it cannot read)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as exc:
        raise Refusal(400, f"{filename}: not a valid wheel (zip archive: {exc})") from None


class _Bounded:
    """A reader that refuses to hand out more than `bound` bytes (decompressed)."""

    def __init__(self, raw, bound: int, filename: str):
        self.raw, self.left, self.filename = raw, bound, filename

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else 1 << 20)
        self.left -= len(data)
        if self.left < 0:
            raise Refusal(400, f"{self.filename}: inflates past the bound (a gzip bomb?)")
        return data


def _sdist_metadata(path: Path, filename: str, bound: int) -> bytes:
    base = filename[: -len(".tar.gz")]
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(
                fileobj=_Bounded(raw, bound, filename), mode="r|") as archive:
            for count, member in enumerate(archive):
                if count > MAX_MEMBERS:
                    raise Refusal(400, f"{filename}: more than {MAX_MEMBERS} members")
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    if canonicalize_name(parts[0]) != canonicalize_name(base) and \
                            parts[0].lower() != base.lower():
                        continue
                    if member.size > MAX_METADATA:
                        raise Refusal(400, f"{filename}: PKG-INFO is too large")
                    reader = archive.extractfile(member)
                    if reader is None:
                        break
                    return reader.read()
    except Refusal:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
        raise Refusal(400, f"{filename}: not a valid sdist (tar.gz archive: {exc})") from None
    raise Refusal(400, f"{filename}: not an sdist (no {base}/PKG-INFO inside)")


def same_version(text: str, version: Version) -> bool:
    """Whether `text` is a PEP 440 version equal to `version` (1.0 == 1.0.0)."""
    try:
        return Version(text) == version
    except InvalidVersion:
        return False
