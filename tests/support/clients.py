"""Real clients driven by the tests: py-rattler (a full conda client) solving and
installing from channels served over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path


def rattler_install(channels: list[str], specs: list[str], prefix: Path,
                    platform: str = "linux-64", cache_dir: Path | None = None,
                    sharded: bool = False) -> list[str]:
    """Solve `specs` against `channels` (URLs) for `platform` (+ noarch) and install into
    `prefix`; returns the installed file names. `sharded`: read CEP-16 shards when the
    channel has them (else rattler's default)."""
    import rattler

    cache = cache_dir or prefix.parent / f"{prefix.name}-rattler-cache"

    async def run() -> list[str]:
        config = rattler.SourceConfig(sharded_enabled=True) if sharded else None
        gateway = rattler.Gateway(cache_dir=cache, default_config=config)
        records = await rattler.solve(channels, specs, gateway=gateway,
                                      platforms=[platform, "noarch"], virtual_packages=[])
        await rattler.install(records, prefix, cache_dir=cache, show_progress=False,
                              platform=rattler.Subdir(platform))
        return sorted(r.file_name for r in records)

    return asyncio.run(run())
