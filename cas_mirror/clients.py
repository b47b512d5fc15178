"""Client configuration for the mirror: the `.condarc` channels block and `pip.conf` lines.

Channels come from the tree: a channel is a folder under `mirror_dir` holding at least one
`<platform>/repodata.json`. Internal channels (folders users index with cas-index) come
first, then the mirrored ones in the order of `channels:`, as the seed FAQ advises: a
package of your own wins over a mirrored one of the same name.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .conda.fetch import resolve_channel
from .conda.state import STATE_ROOT
from .config import KNOWN_PLATFORMS, Config, check_url
from .errors import ConfigError

MAX_DEPTH = 4  # channel paths like pkgs/main or org/team/channel


def _is_channel(folder: Path) -> bool:
    return any((folder / platform / "repodata.json").is_file() for platform in KNOWN_PLATFORMS)


def find_channels(mirror_dir: Path, skip: set[str]) -> list[str]:
    """Channel paths (relative, '/'-separated) under `mirror_dir`, sorted; folders in
    `skip` (and hidden ones) are neither channels nor searched."""
    found = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            path = Path(entry.path)
            relative = path.relative_to(mirror_dir).as_posix()
            if relative in skip:
                continue
            if _is_channel(path):
                found.append(relative)
            elif depth < MAX_DEPTH:
                walk(path, depth + 1)

    walk(mirror_dir, 1)
    return found


def client_base_url(url: str) -> str:
    try:
        return check_url(url, Path.cwd())
    except ValueError as exc:
        raise ConfigError(f"client URL: {exc}") from None


def condarc(config: Config, url: str) -> str:
    base = client_base_url(url)
    mirror_dir = Path(config.mirror_dir)
    mirrored = [resolve_channel(c, config.remote_url).path for c in config.channels]
    pypi_user = str(config.pypi.get("user", "pypi"))
    internal = find_channels(mirror_dir, set(mirrored) | {pypi_user, STATE_ROOT})
    lines = [f"# .condarc for the cas-mirror at {base}: internal channels first, then the",
             "# mirrored ones. Copy to ~/.condarc (or the system .condarc).",
             "channels:"]
    lines += [f"  - {base}/{path}" for path in [*internal, *mirrored]]
    lines += ["# Only these channels, never the internet's defaults:", "default_channels: []"]
    return "\n".join(lines) + "\n"


def pip_conf(config: Config, url: str) -> str:
    base = client_base_url(url)
    user = str(config.pypi.get("user", "pypi"))
    lines = ["# pip.conf for the cas-mirror PyPI tree: ~/.config/pip/pip.conf or /etc/pip.conf",
             "[global]", f"index-url = {base}/{user}/simple"]
    parts = urlsplit(base)
    if parts.scheme == "http":  # pip ignores plain-HTTP indexes on hosts it does not trust
        lines.append(f"trusted-host = {parts.hostname}")
    return "\n".join(lines) + "\n"
