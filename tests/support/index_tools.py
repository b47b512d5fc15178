"""Helpers for the cas-index tests: damaged copies of real packages, and the conformance
data's location (read in place, never copied into the repository)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CONDA_INDEX_DATA = CONFORMANCE / "conda-index"

needs_conformance = pytest.mark.skipif(
    not CONDA_INDEX_DATA.is_dir(),
    reason=f"conformance data not found at {CONFORMANCE} (the shared/ folder beside the "
           "repository holds conda-index's reference outputs)")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_bytes())


def records(subdir_dir: Path) -> dict[str, dict]:
    doc = read_json(subdir_dir / "repodata.json")
    return {**doc["packages"], **doc["packages.conda"]}


def file_hashes(path: Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_middle(path: Path) -> Path:
    """Flip 64 bytes in the middle of the file (same length)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    return path


def corrupt_conda_info(path: Path) -> Path:
    """Flip bytes inside the `info-*.tar.zst` member of a .conda (the part an indexer
    reads), keeping the zip structure intact."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("info-"))
        # local header: 30 bytes + name + extra, then the member's data
        data = bytearray(path.read_bytes())
        name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
        extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30],
                                   "little")
        start = info.header_offset + 30 + name_len + extra_len + 8
    data[start:start + 32] = bytes(b ^ 0xFF for b in data[start:start + 32])
    path.write_bytes(bytes(data))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared data is read-only
    return dst
