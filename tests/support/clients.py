"""Real clients driven by the tests: py-rattler (a full conda client) solving and
installing from channels served over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path


def rattler_install(channels: list[str], specs: list[str], prefix: Path,
                    platform: str = "linux-64", cache_dir: Path | None = None) -> list[str]:
    """Solve `specs` against `channels` (URLs) for `platform` (+ noarch) and install into
    `prefix` (for the host's platform); returns the installed file names."""
    import rattler

    cache = cache_dir or prefix.parent / f"{prefix.name}-rattler-cache"

    async def run() -> list[str]:
        gateway = rattler.Gateway(cache_dir=cache)
        records = await rattler.solve(channels, specs, gateway=gateway,
                                      platforms=[platform, "noarch"], virtual_packages=[])
        await rattler.install(records, prefix, cache_dir=cache, show_progress=False)
        return sorted(r.file_name for r in records)

    return asyncio.run(run())
