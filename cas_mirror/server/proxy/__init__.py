"""The caching proxy of cas-server: conda channels and a PyPI index fetched from upstream on
demand, under the same filters as the mirror, verified, cached, and served on when
upstream fails (README, "Caching proxy").

Modules, one concern each: `settings` (the `cache_proxy:` keys, resolved once by the
`cas-server` command and handed to the workers as JSON), `upstream` (outbound HTTP on the
shared downloader's libcurl set-up), `metadata` (TTL, conditional revalidation, stale
copies), `store` (the package cache: one fetch per file across worker processes, clients
streaming from the growing file, verification, LRU eviction), `fetch` (the fetch thread:
upstream to the partial file and the requesting client, commit once verified), `feed`
(that client's bytes handed over in memory), `conda` and `pypi` (the two
request handlers; upstream pages in either representation are read by the sync's
`pypi.client`), `stats` (counters and `cas-server proxy-stats`).
"""

from __future__ import annotations

import os

from .settings import ENV_PROXY, ProxySettings
from .stats import proxy_stats

__all__ = ["ProxySettings", "announce", "environment", "handlers_from_environment", "proxy_stats"]


def environment(config, root: str) -> dict[str, str]:
    """What the `cas-server` command puts in its workers' environment (an empty value,
    which turns the proxy off, when no upstream is configured)."""
    settings = ProxySettings.from_config(config, root)
    if not settings.active:
        return {ENV_PROXY: ""}
    check_cache_dir(settings.cache_dir, config)
    return {ENV_PROXY: settings.to_json()}


def check_cache_dir(cache_dir: str, config) -> None:
    """Create the cache folder, or fail in one line before any worker starts."""
    from pathlib import Path

    from ...errors import ConfigError, os_problem
    from ...paths import not_writable

    where = ("cache_proxy.cache_dir" if config.values["cache_proxy"]["cache_dir"]
             else "cache_proxy.cache_dir (default: <root>/.cas-proxy)")
    try:
        os.makedirs(cache_dir, exist_ok=True)
        problem = not_writable(Path(cache_dir))
    except OSError as exc:
        problem = os_problem(exc)
    if problem:
        raise ConfigError(f"{where}: cannot write {cache_dir}: {problem}")


def announce(url: str) -> None:
    """The start-up line naming what is proxied, when something is (stderr)."""
    import click

    text = os.environ.get(ENV_PROXY)
    if not text:
        return
    settings = ProxySettings.from_json(text)
    served = [f"{url}/{c.path} <- {c.upstream}" for c in settings.channels]
    if settings.pypi is not None:
        served.append(f"pip index {url}/{settings.pypi.path}/simple/ <- "
                      f"{settings.pypi.upstream}")
    click.echo(f"cas-server: caching proxy (cache {settings.cache_dir}): "
               + "; ".join(served), err=True)


def handlers_from_environment() -> list:
    """The request handlers of a worker, from what `environment` set."""
    text = os.environ.get(ENV_PROXY)
    if not text:
        return []
    from .conda import CondaProxy
    from .stats import Stats
    from .store import Store
    from .upstream import Upstream

    settings = ProxySettings.from_json(text)
    upstream = Upstream(settings.timeout, settings.proxy, settings.ssl_verify)
    stats = Stats(settings.cache_dir)
    store = Store(settings.cache_dir, upstream, stats, settings.cache_max_size)
    handlers: list = []
    if settings.channels:
        handlers.append(CondaProxy(settings, upstream, store, stats))
    if settings.pypi is not None:
        from .pypi import PypiProxy

        handlers.append(PypiProxy(settings, upstream, store, stats))
    return handlers
