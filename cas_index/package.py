"""Reading one conda package: its repodata record and the facts channeldata.json wants.

The file is read once: small files into memory, large ones memory-mapped. md5 and sha256
are computed over those bytes and the `info/` members are streamed from the same buffer
with conda-package-streaming, which stops as soon as every member we want has been seen
(for `.conda` only the small `info-*.tar.zst` component is decompressed). Everything a
bad file can do wrong ends as a `PackageError` with a reason a person can act on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import mmap
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from conda_package_streaming import package_streaming

from .channeldata import ABOUT_FIELDS

INDEX_JSON = "info/index.json"
ABOUT_JSON = "info/about.json"
PATHS_JSON = "info/paths.json"
RUN_EXPORTS_JSON = "info/run_exports.json"
# conda-build leaves the rendered recipe under one of these names; the first one found wins.
RECIPES = ("info/recipe/meta.yaml", "info/recipe/meta.yaml.rendered", "info/meta.yaml")
WANTED = frozenset({INDEX_JSON, ABOUT_JSON, PATHS_JSON, RUN_EXPORTS_JSON, *RECIPES})

# Fields of index.json that never reach repodata (the reference indexer's list): where the
# package was built, not what it is.
DROPPED_FIELDS = frozenset({"arch", "platform", "has_prefix", "mtime", "ucs",
                            "requires_features", "binstar", "target-triplet", "machine",
                            "operatingsystem"})
REQUIRED_FIELDS = {"name": str, "version": str, "build": str, "build_number": int}


MMAP_THRESHOLD = 16 << 20  # larger files are memory-mapped instead of read into memory
HASH_CHUNK = 1 << 20


class PackageError(Exception):
    """A file with a package name that cannot be indexed; the message says why."""


@dataclass(frozen=True)
class PackageInfo:
    """What indexing needs from one package file."""

    record: dict[str, Any]  # the repodata record
    facts: dict[str, Any]  # channeldata.json inputs: about fields, link-script flags, ...
    size: int
    mtime_ns: int


def read_package(path: str | os.PathLike, subdir: str | None = None) -> PackageInfo:
    """Read `path` once: hashes, size and `info/` metadata. `subdir` is the folder it is in;
    a package whose index.json names another platform is refused."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size == 0:
                raise PackageError("empty file")
            buffer, fileobj = _load(fh, st.st_size)
            try:
                size = len(buffer)  # what was hashed, should the file be growing
                md5, sha256 = file_hashes(buffer)
                if path.name.endswith(".tar.bz2"):
                    check_bz2(buffer)
                members = None
                if isinstance(buffer, bytes):
                    members = quick_info_members(path.name, buffer)
                if members is None:
                    members = info_members(path.name, fileobj)
            finally:
                if isinstance(buffer, mmap.mmap):
                    buffer.close()
    except FileNotFoundError:
        raise  # gone since the folder was listed: the caller drops it
    except OSError as exc:
        raise PackageError(f"cannot read the file ({exc.strerror or exc})") from None
    index = parse_index(members.get(INDEX_JSON))
    check_subdir(index, subdir)
    record = make_record(index, md5, sha256, size)
    # the cache key is the stat taken before reading: a file still being written has a
    # newer mtime by the next run, and is read again
    return PackageInfo(record, channeldata_facts(members), st.st_size, st.st_mtime_ns)


def _load(fh: BinaryIO, size: int) -> tuple[bytes | mmap.mmap, BinaryIO]:
    if size < MMAP_THRESHOLD:
        data = fh.read()
        return data, io.BytesIO(data)
    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return mapped, _MappedFile(mapped)


class _MappedFile:
    """A seekable read-only file over a memory map (zipfile wants `seekable()`, which mmap
    lacks)."""

    def __init__(self, mapped: mmap.mmap):
        self._mapped = mapped

    def seekable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        return self._mapped.read() if n is None or n < 0 else self._mapped.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._mapped.seek(offset, whence)
        return self._mapped.tell()

    def tell(self) -> int:
        return self._mapped.tell()


def file_hashes(buffer: bytes | mmap.mmap) -> tuple[str, str]:
    """md5 and sha256 of `buffer`, fed chunk by chunk to both so a mapped file is paged in
    once."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    view = memoryview(buffer)
    try:
        for start in range(0, len(view), HASH_CHUNK):
            chunk = view[start:start + HASH_CHUNK]
            md5.update(chunk)
            sha256.update(chunk)
            chunk.release()
    finally:
        view.release()
    return md5.hexdigest(), sha256.hexdigest()


def check_bz2(buffer: bytes | mmap.mmap) -> None:
    if buffer[:3] != b"BZh":
        raise PackageError("not a valid .tar.bz2 archive (not bzip2 data)")
    if not bz2_stream_complete(buffer):
        raise PackageError("truncated .tar.bz2 archive (no bzip2 end-of-stream marker)")


_BZ2_EOS_MAGIC = 0x177245385090  # bzip2's end-of-stream marker, sqrt(pi)


def bz2_stream_complete(buffer: bytes | mmap.mmap) -> bool:
    """True when `buffer` ends with a bzip2 end-of-stream marker. The marker (48 bits) and
    the stream CRC (32 bits) are bit-aligned and padded to a byte, so the marker sits at one
    of eight bit offsets in the last eleven bytes. A truncated file has lost it, even when
    its `info/` members, near the start, still decompress."""
    tail = int.from_bytes(buffer[-11:], "big")
    return any((tail >> (32 + pad)) & 0xFFFFFFFFFFFF == _BZ2_EOS_MAGIC for pad in range(8))


def info_members(filename: str, fileobj: BinaryIO) -> dict[str, bytes]:
    """The wanted `info/` members of the package in `fileobj`, read until all are seen."""
    kind = ".conda" if filename.endswith(".conda") else ".tar.bz2"
    found: dict[str, bytes] = {}
    wanted = set(WANTED)
    try:
        zf = None
        if kind == ".conda":
            zf = zipfile.ZipFile(fileobj)
            _check_conda_components(zf, filename)
        stream = package_streaming.stream_conda_component(filename, fileobj, "info", zf=zf)
        try:
            for tar, member in stream:
                if member.name not in wanted:
                    continue
                wanted.discard(member.name)
                if member.name in RECIPES:
                    wanted.difference_update(RECIPES)
                reader = tar.extractfile(member)
                if reader is not None:
                    found[member.name] = reader.read()
                if not wanted:
                    break
        finally:
            stream.close()
    except PackageError:
        raise
    except _archive_errors() as exc:
        raise PackageError(f"not a valid {kind} archive ({_describe(exc)})") from None
    return found


# The most a package's info/ archive may hold to be decompressed in one piece (they are
# a few KB to a few MB); larger ones are streamed.
INFO_TAR_LIMIT = 64 << 20


def quick_info_members(filename: str, buffer: bytes) -> dict[str, bytes] | None:
    """What `info_members` gives for a package held in memory, read the quick way: the
    info archive decompressed in one call and its headers scanned by tarscan.py, not
    streamed through tarfile (about a third of the CPU of reading a small package). None
    when this way does not apply or anything is unusual: `info_members` then reads the
    file and gives its verdict (the reasons for refusing a bad file come from there)."""
    from .tarscan import scan_members

    try:
        if filename.endswith(".conda"):
            raw = _conda_info_tar(filename, buffer)
        else:
            import bz2

            decompressor = bz2.BZ2Decompressor()
            raw = decompressor.decompress(buffer, max_length=INFO_TAR_LIMIT)
            if not decompressor.eof or decompressor.unused_data:
                return None  # larger than the limit, or several bzip2 streams
        if raw is None:
            return None
        return scan_members(raw, WANTED, (frozenset(RECIPES),))
    except Exception:  # noqa: BLE001 - any failure: the ordinary reader decides
        return None


def _conda_info_tar(filename: str, buffer: bytes) -> bytes | None:
    import zstandard

    zf = zipfile.ZipFile(io.BytesIO(buffer))
    stem = filename[: -len(".conda")]
    names = set(zf.namelist())
    info = f"info-{stem}.tar.zst"
    if info not in names or f"pkg-{stem}.tar.zst" not in names:
        return None
    compressed = zf.read(info)
    size = zstandard.frame_content_size(compressed)
    if size > INFO_TAR_LIMIT:
        return None
    return zstandard.ZstdDecompressor().decompress(compressed, max_output_size=INFO_TAR_LIMIT)


def _check_conda_components(zf: zipfile.ZipFile, filename: str) -> None:
    stem = filename[: -len(".conda")]
    names = zf.namelist()
    for component in ("info", "pkg"):
        if not any(name.startswith(f"{component}-{stem}") for name in names):
            raise PackageError(f"not a conda package: no {component}-{stem}.tar.zst inside "
                               "(renamed .conda files cannot be read)")


def _archive_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zipfile.BadZipFile, tarfile.TarError, EOFError,
                                         OSError, LookupError, ValueError]
    zstd = getattr(package_streaming, "zstd", None)
    if zstd is not None:
        errors.append(zstd.ZstdError)
    return tuple(errors)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.removeprefix("Error with archive. ")


def parse_index(raw: bytes | None) -> dict[str, Any]:
    """index.json, checked for the fields every record needs."""
    if raw is None:
        raise PackageError(f"not a conda package: no {INDEX_JSON}")
    try:
        index = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageError(f"{INDEX_JSON} is not valid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise PackageError(f"{INDEX_JSON} is not a JSON object")
    missing = [key for key in REQUIRED_FIELDS if index.get(key) in (None, "")]
    if missing:
        raise PackageError(f"{INDEX_JSON} lacks required field(s): {', '.join(missing)}")
    for key, kind in REQUIRED_FIELDS.items():
        value = index[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PackageError(f"{INDEX_JSON} field {key!r} should be "
                               f"{'an integer' if kind is int else 'a string'}, not {value!r}")
    return index


# conda's names for the machine types whose subdir suffix is the bit width
_ARCH_BITS = {"x86_64": "64", "x86": "32"}


def check_subdir(index: dict[str, Any], subdir: str | None) -> None:
    """Refuse a package whose index.json names another platform than its folder: by
    `subdir`, or, in old packages without one, by `platform` and `arch`."""
    if subdir is None:
        return
    said = index.get("subdir")
    if said is not None:
        if said != subdir:
            raise PackageError(f"{INDEX_JSON} says subdir {said!r}, but the file is in "
                               f"{subdir!r}")
        return
    platform, arch = index.get("platform"), index.get("arch")
    if platform is None:  # noarch, or too old to tell
        return
    implied = f"{platform}-{_ARCH_BITS.get(arch, arch)}" if arch is not None else None
    folder_platform = subdir.split("-", 1)[0]
    if platform != folder_platform or (implied is not None and implied != subdir):
        said = f"platform {platform!r}" + (f", arch {arch!r}" if arch is not None else "")
        raise PackageError(f"{INDEX_JSON} says {said} (no subdir), but the file is in "
                           f"{subdir!r}")


def make_record(index: dict[str, Any], md5: str, sha256: str, size: int) -> dict[str, Any]:
    """The repodata record: index.json without build-machine fields, plus hashes and size."""
    record = {key: value for key, value in index.items() if key not in DROPPED_FIELDS}
    record.update(md5=md5, sha256=sha256, size=size)
    return record


def channeldata_facts(members: dict[str, bytes]) -> dict[str, Any]:
    """What channeldata.json takes from a package besides its record: about.json fields,
    source URLs from the recipe, link/activation script flags and run_exports."""
    facts: dict[str, Any] = {}
    about = _json_member(members, ABOUT_JSON)
    if isinstance(about, dict):
        facts.update({key: about[key] for key in ABOUT_FIELDS if key in about})
    source = recipe_source(members)
    for key in ("url", "git_url"):
        if key in source:
            facts["source_" + key] = source[key]
    facts.update(link_flags(_json_member(members, PATHS_JSON)))
    run_exports = _json_member(members, RUN_EXPORTS_JSON)
    facts["run_exports"] = run_exports if isinstance(run_exports, dict) else {}
    for key in ("description", "summary"):
        if key in facts:
            facts[key] = one_line(facts[key])
    return facts


def _json_member(members: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(members[name]) if name in members else None
    except (ValueError, UnicodeDecodeError):
        return None  # optional metadata: a broken about.json does not make a bad package


def recipe_source(members: dict[str, bytes]) -> dict[str, Any]:
    """The `source:` mapping of the rendered recipe, when there is one."""
    raw = next((members[name] for name in RECIPES if name in members), None)
    if raw is None or b"source" not in raw:
        return {}
    import yaml  # only packages that ship a recipe pay for the import

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        recipe = yaml.load(raw, Loader=loader)
    except yaml.YAMLError:
        return {}
    source = recipe.get("source") if isinstance(recipe, dict) else None
    return source if isinstance(source, dict) else {}


def link_flags(paths: Any) -> dict[str, bool]:
    """Whether the package embeds its install prefix (text or binary), ships activation
    scripts, or runs link scripts, from info/paths.json."""
    flags = dict.fromkeys(("binary_prefix", "text_prefix", "activate.d", "deactivate.d",
                           "pre_link", "post_link", "pre_unlink"), False)
    entries = paths.get("paths", []) if isinstance(paths, dict) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        path = entry.get("_path", "")
        if entry.get("prefix_placeholder"):
            if entry.get("file_mode") == "binary":
                flags["binary_prefix"] = True
            elif entry.get("file_mode") == "text":
                flags["text_prefix"] = True
        for folder in ("activate.d", "deactivate.d"):
            if path.startswith(f"etc/conda/{folder}"):
                flags[folder] = True
        for script in ("pre-link", "post-link", "pre-unlink"):
            if fnmatch.fnmatchcase(path, f"*/.*-{script}.*"):
                flags[script.replace("-", "_")] = True
    return flags


def one_line(value: Any) -> Any:
    """Descriptions and summaries as one line (lists of lines are joined)."""
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        value = "".join(value)
    return value.strip().replace("\n", " ") if isinstance(value, str) else value


def read_patch_member(path: str | os.PathLike, member_name: str) -> bytes | None:
    """One file from the payload of a package (used for repodata-patches packages, which
    carry `<subdir>/patch_instructions.json`)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            for tar, member in package_streaming.stream_conda_component(path.name, fh, "pkg"):
                if member.name == member_name:
                    reader = tar.extractfile(member)
                    return reader.read() if reader is not None else None
    except _archive_errors() as exc:
        raise PackageError(f"not a valid package ({_describe(exc)})") from None
    return None


__all__ = [
    "PackageError",
    "PackageInfo",
    "bz2_stream_complete",
    "channeldata_facts",
    "file_hashes",
    "info_members",
    "make_record",
    "parse_index",
    "read_package",
    "read_patch_member",
]
