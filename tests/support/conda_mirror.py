"""A conda upstream channel served on 127.0.0.1 and a cas-sync mirror of it, for the conda
sync's end-to-end tests (each test module wraps these in its own fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import yaml

from cas_mirror.cli import main
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.trees import snapshot

SPECS = [
    PkgSpec("alpha", "1.0", subdir="linux-64"),
    PkgSpec("alpha", "1.0", subdir="linux-64", fmt=".tar.bz2"),
    PkgSpec("beta", "2.0", subdir="linux-64", license="GPL-3.0-only", license_family="GPL3"),
    PkgSpec("delta", "1.0", subdir="linux-64", depends=["alpha >=1", "gamma"]),
    PkgSpec("gamma", "1.0", subdir="noarch"),
    PkgSpec("omega", "1.0", subdir="win-64"),
]


def make_upstream(tmp_path: Path, http_server) -> SimpleNamespace:
    root = tmp_path / "upstream"
    channel = build_channel(root / "pkgs/main", SPECS)
    server = http_server(root)
    return SimpleNamespace(root=root, channel=channel, server=server, url=server.url)


class Mirror:
    def __init__(self, root: Path, config_path: Path, run_cli, upstream):
        self.dir = root
        self.config_path = config_path
        self.run_cli = run_cli
        self.upstream = upstream
        self.configure()

    def configure(self, **keys):
        settings = {"remote_url": self.upstream.url, "mirror_dir": str(self.dir),
                    "platforms": ["linux-64"], "retries": 2, "retry_backoff": 0.01,
                    "timeout": 5, "minimum_free_space": 0, "workers": 4}
        settings.update(keys)
        self.config_path.write_text(yaml.safe_dump(settings))

    def sync(self, *args):
        return self.run_cli(main, list(args))

    def folder(self, platform: str, channel: str = "pkgs/main") -> Path:
        return self.dir / channel / platform

    def repodata(self, platform: str, channel: str = "pkgs/main") -> dict:
        return json.loads((self.folder(platform, channel) / "repodata.json").read_bytes())

    def records(self, platform: str, channel: str = "pkgs/main") -> dict:
        doc = self.repodata(platform, channel)
        return {**doc["packages"], **doc["packages.conda"]}

    def files(self, platform: str, channel: str = "pkgs/main") -> set[str]:
        folder = self.folder(platform, channel)
        return {p.name for p in folder.iterdir() if p.name.endswith((".conda", ".tar.bz2"))}

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return snapshot(self.dir)
