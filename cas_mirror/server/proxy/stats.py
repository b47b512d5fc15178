"""What the proxy did, counted per worker process and summed by `cas-server proxy-stats`.

Each worker keeps its counters in memory and writes them, at most twice a second, to
`<cache_dir>/.stats/worker-<pid>-<start>.json` (atomically), so nothing on the request
path waits for a lock shared between processes. The files stay after the workers exit:
the totals cover the cache's whole life, across restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import click

STATS_FOLDER = ".stats"
FLUSH_DELAY = 0.5
COUNTERS = ("hits", "misses", "stale", "refused", "upstream_fetches", "upstream_failures",
            "bytes_from_cache", "bytes_from_upstream", "evictions", "bytes_evicted")


class Stats:
    def __init__(self, cache_dir: str):
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.folder = os.path.join(cache_dir, STATS_FOLDER)
        self.path = os.path.join(self.folder, f"worker-{os.getpid()}-{time.time_ns()}.json")
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_DELAY, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._timer = None
            data = json.dumps(self.counts).encode()
        with contextlib.suppress(OSError):  # statistics must never break serving
            os.makedirs(self.folder, exist_ok=True)
            temp = f"{self.path}.tmp"
            with open(temp, "wb") as f:
                f.write(data)
            os.replace(temp, self.path)


def totals(cache_dir: str | os.PathLike) -> dict[str, int]:
    """The counters of every worker that ever ran on this cache, summed."""
    out = dict.fromkeys(COUNTERS, 0)
    folder = Path(cache_dir) / STATS_FOLDER
    for path in sorted(folder.glob("worker-*.json")) if folder.is_dir() else ():
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name in COUNTERS:
            value = counts.get(name, 0)
            out[name] += value if isinstance(value, int) else 0
    return out


def cached_packages(cache_dir: str | os.PathLike) -> tuple[int, int]:
    """(files, bytes) of the packages in the cache now."""
    from .store import FILES_FOLDER, package_files

    files = package_files(os.path.join(cache_dir, FILES_FOLDER))
    return len(files), sum(size for _, size, _ in files)


@click.command("proxy-stats")
@click.option("--root", type=str, help="The folder cas-server serves. Default: mirror_dir.")
@click.option("-f", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Read this YAML file after /etc/cas-mirror and ~/.cas-mirror.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def proxy_stats(root: str | None, config_file: str | None, as_json: bool) -> int:
    """Show what the caching proxy did: hits, misses, stale answers, bytes, evictions,
    and what the cache holds now (README, "Caching proxy")."""
    from ... import config as cfg
    from ...errors import EXIT_OK, ConfigError
    from ...net import human_bytes
    from .settings import ProxySettings

    config = cfg.load_config(config_file)
    root_path = os.path.abspath(os.path.expanduser(root)) if root else config.mirror_dir
    settings = ProxySettings.from_config(config, root_path)
    if not os.path.isdir(settings.cache_dir):
        raise ConfigError(f"cache_proxy.cache_dir: {settings.cache_dir} does not exist (the "
                          "proxy has not cached anything yet, or --root/-f name another "
                          "server's configuration)")
    counts = totals(settings.cache_dir)
    files, size = cached_packages(settings.cache_dir)
    counts.update(cached_files=files, cached_bytes=size)
    if as_json:
        click.echo(json.dumps({"cache_dir": settings.cache_dir, **counts}, indent=2))
        return EXIT_OK
    limit = settings.cache_max_size
    click.echo(f"cache: {settings.cache_dir}")
    click.echo(f"  packages cached   {files} ({human_bytes(size)}"
               f"{f' of {human_bytes(limit)}' if limit else ', no limit'})")
    for name in COUNTERS:
        value = counts[name]
        shown = human_bytes(value) if name.startswith("bytes") else str(value)
        click.echo(f"  {name.replace('_', ' '):<18}{shown}")
    return EXIT_OK
