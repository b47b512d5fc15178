"""The PyPI side's test setting: a Simple-API upstream on 127.0.0.1 with four projects
(`make_upstream`), and a mirror configured against it (`PypiMirror`; `mirror.sync(*args)`
runs `cas-sync pypi`). Each test module wraps them in its own fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cas_mirror.cli import main
from tests.support.pypi_packages import SimpleUpstream
from tests.support.trees import snapshot


def make_upstream(tmp_path: Path, http_server) -> SimpleUpstream:
    root = tmp_path / "upstream"
    server = http_server(root)
    up = SimpleUpstream(root).serve(server)
    up.server = server
    up.add("Alpha", "1.0", requires_python=">=3.8,<4")
    up.add("alpha", "2.0")
    up.add("beta", "0.5", kinds=("sdist",))
    up.add("gamma", "1.0")
    return up


class PypiMirror:
    def __init__(self, root: Path, config_path: Path, run_cli, upstream: SimpleUpstream):
        self.dir = root
        self.config_path = config_path
        self.run_cli = run_cli
        self.upstream = upstream
        self.configure()

    def configure(self, **keys):
        pypi = {"remote_url": self.upstream.url, "retries": 2, "retry_backoff": 0.01,
                "timeout": 5, "workers": 4}
        pypi.update(keys)
        self.config_path.write_text(yaml.safe_dump(
            {"mirror_dir": str(self.dir), "minimum_free_space": 0, "pypi": pypi}))

    def sync(self, *args):
        return self.run_cli(main, ["pypi", *args])

    @property
    def web(self) -> Path:
        return self.dir / "pypi" / "web"

    def page(self, name: str) -> dict:
        return json.loads((self.web / "simple" / name / "index.v1_json").read_bytes())

    def html(self, name: str) -> str:
        return (self.web / "simple" / name / "index.html").read_text()

    def root(self) -> dict:
        return json.loads((self.web / "simple" / "index.v1_json").read_bytes())

    def filenames(self, name: str) -> set[str]:
        return {f["filename"] for f in self.page(name)["files"]}

    def package_files(self) -> set[str]:
        root = self.web / "packages"
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return snapshot(self.dir)

    def files_of(self, name: str) -> dict[str, bytes]:
        """The page files of a project, by name, with their bytes."""
        folder = self.web / "simple" / name
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def requests_of(upstream, method=None):
    return [r.path for r in upstream.server.requests if method is None or r.method == method]


def upstream_size(mirror: PypiMirror, filename: str) -> int:
    """The size of a mirrored file, found by name."""
    return next(p.stat().st_size for p in (mirror.web / "packages").rglob(filename))


def saved_state(mirror: PypiMirror) -> dict:
    return json.loads((mirror.dir / "pypi" / ".cas-sync" / "state.json").read_bytes())
