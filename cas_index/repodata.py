"""Publishing repodata documents: `repodata.json` and its `.zst` / `.bz2` twins.

Both the indexer and the mirror's publisher end here. A document is published as bytes
(the caller chooses the JSON encoding); each variant is written to a temporary name and
renamed into place. When `repodata.json` already holds exactly these bytes and the wanted
variants exist, nothing is rewritten, so mtimes (and HTTP caches) stay valid.
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import Any

from .atomic import write_atomic

# zstd level 16 is what conda-index publishes with; multithreaded compression keeps large
# documents (hundreds of MB) affordable.
ZSTD_LEVEL = 16


def dumps_repodata(doc: dict[str, Any]) -> bytes:
    """The canonical encoding conda-index uses: sorted keys, two-space indent."""
    return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")


def compress_zst(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=-1).compress(data)


def write_repodata(
    folder: str | Path,
    data: bytes,
    *,
    name: str = "repodata.json",
    bz2_variant: bool = True,
    zst_variant: bool = True,
) -> list[Path]:
    """Publish `data` as `folder/name` (+ `.zst`, `.bz2`). Returns the paths rewritten.

    Variants not wanted are removed so they can never go stale beside a new document.
    """
    folder = Path(folder)
    target = folder / name
    variants = {target.with_name(name + ".zst"): zst_variant,
                target.with_name(name + ".bz2"): bz2_variant}
    written: list[Path] = []
    unchanged = _holds(target, data) and all(p.exists() for p, want in variants.items() if want)
    if not unchanged:
        for path, want in variants.items():
            if want:
                packed = compress_zst(data) if path.suffix == ".zst" else bz2.compress(data, 9)
                write_atomic(path, packed)
                written.append(path)
        write_atomic(target, data)
        written.append(target)
    for path, want in variants.items():
        if not want:
            path.unlink(missing_ok=True)
    return written


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False
