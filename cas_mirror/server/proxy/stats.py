"""What the proxy did, counted per worker process and summed by `cas-server proxy-stats`.

Each worker counts in its own small file, `<cache_dir>/.stats/worker-<pid>-<start>.bin`:
one signed 64-bit integer per counter, memory-mapped, so counting costs a memory write
(no system call, no lock shared between processes) and a worker that is stopped or
killed loses nothing (the mapping is the file's page cache). The files stay after the
workers exit: the totals cover the cache's whole life, across restarts.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import threading
import time
from pathlib import Path

import click

STATS_FOLDER = ".stats"
COUNTERS = ("hits", "misses", "stale", "refused", "upstream_fetches", "upstream_failures",
            "bytes_from_cache", "bytes_from_upstream", "evictions", "bytes_evicted")
_INDEX = {name: index for index, name in enumerate(COUNTERS)}
_SIZE = 8 * len(COUNTERS)


class Stats:
    def __init__(self, cache_dir: str):
        self._lock = threading.Lock()
        self._map: mmap.mmap | bytearray = bytearray(_SIZE)
        folder = os.path.join(cache_dir, STATS_FOLDER)
        with contextlib.suppress(OSError):  # counting must never stop serving
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"worker-{os.getpid()}-{time.time_ns()}.bin")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, _SIZE)
                self._map = mmap.mmap(fd, _SIZE)
            finally:
                os.close(fd)
        self._counts = memoryview(self._map).cast("q")

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[_INDEX[name]] += amount

    def get(self, name: str) -> int:
        return self._counts[_INDEX[name]]


def totals(cache_dir: str | os.PathLike) -> dict[str, int]:
    """The counters of every worker that ever ran on this cache, summed."""
    out = dict.fromkeys(COUNTERS, 0)
    folder = Path(cache_dir) / STATS_FOLDER
    for path in sorted(folder.glob("worker-*.bin")) if folder.is_dir() else ():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        count = min(len(data) // 8, len(COUNTERS))
        for name, value in zip(COUNTERS, struct.unpack(f"{count}q", data[:count * 8]),
                               strict=False):
            out[name] += value
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
        click.echo(f"  {name.replace('_', ' '):<21}{shown}")
    return EXIT_OK
