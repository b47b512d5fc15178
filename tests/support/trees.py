"""Looking at a mirror tree in tests: what changed, and what a run left behind."""

from __future__ import annotations

from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` (but lock files) with its size and mtime: equal snapshots
    mean nothing was written."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and p.name != "lock"}


def no_hidden_leftovers(folder: Path) -> bool:
    """No hidden file (a .part or temporary) outside the syncs' own state folders."""
    return not [p for p in folder.rglob(".*") if p.is_file() and ".cas-sync" not in p.parts]
