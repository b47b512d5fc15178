"""The `cache_proxy:` section: the checks of its keys (config/keys.py calls them) and the
`ProxySettings` a cas-server worker runs with.

`channels:` is a list of `{upstream: URL, path: served path}` entries, each optionally
with the conda filter keys `license_blacklist`, `blacklist`, `whitelist`; a key left out
means the top-level key of the same name (the mirror's own policy). `pypi:` is one
`{upstream: simple-index URL, path: served path}` entry with the PyPI filter keys; a key
left out means the `pypi:` section's value. The `cas-server` command resolves all that
once (`from_config`) and hands the result to its worker processes as JSON in the
environment (`ENV_PROXY`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...config.checks import BadValue, check_url, describe

ENV_PROXY = "CAS_SERVER_CACHE_PROXY"
DEFAULT_CACHE_FOLDER = ".cas-proxy"  # under the served root: hidden, so never served as is
CONDA_FILTER_KEYS = ("license_blacklist", "blacklist", "whitelist")
PYPI_FILTER_KEYS = ("whitelist", "blacklist", "latest_only", "keep_latest",
                    "exclude_prereleases", "platforms", "python_versions", "packagetypes")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


# --------------------------------------------------------------------------- checks


def _served_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip("/ ") or not all(
            _SEGMENT.match(s) for s in value.strip("/ ").split("/")):
        raise BadValue(f"expected a served path such as proxy/conda-forge (letters, "
                       f"digits, '.', '_', '+', '-' separated by '/'), got {describe(value)}")
    return value.strip("/ ")


def _entry(item: Any, where: str, base: Path, filter_checks: dict) -> dict[str, Any]:
    """One upstream entry; `where` ("item 2: " or "") starts every message."""
    if not isinstance(item, dict):
        raise BadValue(f"{where}expected a mapping with upstream and path, got "
                       f"{describe(item)}")
    out: dict[str, Any] = {}
    for key, raw in item.items():
        if key not in ("upstream", "path", *filter_checks):
            known = ", ".join(("upstream", "path", *filter_checks))
            raise BadValue(f"{where}unknown key {key!r} (known: {known})")
        try:
            if key == "upstream":
                out[key] = check_url(raw, base).rstrip("/")
            elif key == "path":
                out[key] = _served_path(raw)
            else:
                out[key] = filter_checks[key](raw, base)
        except BadValue as exc:
            raise BadValue(f"{where}{key}: {str(exc).removeprefix('path: ')}") from None
    for needed in ("upstream", "path"):
        if needed not in out:
            raise BadValue(f"{where}no {needed!r} given")
    return out


def _conda_filter_checks() -> dict:
    from ...config.keys import check_entries, check_license_blacklist

    return {"license_blacklist": check_license_blacklist, "blacklist": check_entries,
            "whitelist": check_entries}


def _pypi_filter_checks() -> dict:
    from ...config.keys import PYPI_SETTINGS

    return {key: PYPI_SETTINGS[key].check for key in PYPI_FILTER_KEYS}


def check_proxy_channels(value: Any, base: Path) -> list[dict[str, Any]]:
    """`cache_proxy.channels`: a list of {upstream, path, filter keys...}."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadValue(f"expected a list of {{upstream: URL, path: PATH}} mappings, got "
                       f"{describe(value)}")
    checks = _conda_filter_checks()
    entries = [_entry(item, f"item {index + 1}: ", base, checks)
               for index, item in enumerate(value)]
    _distinct([e["path"] for e in entries])
    return entries


def check_proxy_pypi(value: Any, base: Path) -> dict[str, Any] | None:
    """`cache_proxy.pypi`: one {upstream: simple-index URL, path, filter keys...}."""
    if value is None:
        return None
    return _entry(value, "", base, _pypi_filter_checks())


def _distinct(paths: list[str]) -> None:
    for index, path in enumerate(paths):
        for other in paths[:index]:
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise BadValue(f"item {index + 1}: path {path!r} overlaps {other!r}")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CondaUpstream:
    path: str  # served at /<path>/<subdir>/...
    upstream: str  # the channel URL, without a trailing '/'
    license_blacklist: list[str]
    blacklist: list[Any]
    whitelist: list[Any]


@dataclass(frozen=True)
class PypiUpstream:
    path: str  # served at /<path>/simple/ and /<path>/files/
    upstream: str  # the simple index URL, ending with '/'
    filters: dict[str, Any]  # the PyPI filter keys (pypi/filters.FilterSpec.from_settings)


@dataclass(frozen=True)
class ProxySettings:
    cache_dir: str
    metadata_ttl: float
    cache_max_size: int | None
    channels: list[CondaUpstream] = field(default_factory=list)
    pypi: PypiUpstream | None = None
    # the outbound side: the top-level keys of the same names
    timeout: float = 30.0
    proxy: str | None = None
    ssl_verify: bool | str = True
    max_repodata_size: int = 2_000_000_000

    @property
    def active(self) -> bool:
        return bool(self.channels or self.pypi)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProxySettings:
        raw = json.loads(text)
        raw["channels"] = [CondaUpstream(**c) for c in raw["channels"]]
        raw["pypi"] = PypiUpstream(**raw["pypi"]) if raw["pypi"] else None
        return cls(**raw)

    @classmethod
    def from_config(cls, config, root: str) -> ProxySettings:
        """The settings of the `cache_proxy:` section, with left-out filter keys resolved
        (top-level conda keys, the `pypi:` section's keys) and the cache folder made
        absolute (default `<root>/.cas-proxy`)."""
        section = config.values["cache_proxy"]
        values = config.values
        channels = [CondaUpstream(c["path"], c["upstream"],
                                  *(c.get(k, values[k]) for k in CONDA_FILTER_KEYS))
                    for c in section["channels"]]
        pypi = None
        if section["pypi"]:
            entry = section["pypi"]
            filters = {k: entry.get(k, values["pypi"][k]) for k in PYPI_FILTER_KEYS}
            pypi = PypiUpstream(entry["path"], entry["upstream"].rstrip("/") + "/", filters)
        cache_dir = section["cache_dir"] or os.path.join(root, DEFAULT_CACHE_FOLDER)
        return cls(os.path.abspath(cache_dir), float(section["metadata_ttl"]),
                   section["cache_max_size"], channels, pypi, float(values["timeout"]),
                   values["proxy"], values["ssl_verify"], int(values["max_repodata_size"]))
