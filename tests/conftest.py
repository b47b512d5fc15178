"""Fixtures shared by the whole suite: isolated configuration, real packages, real servers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from tests.support.conda_packages import Channel, PkgSpec, build_channel
from tests.support.http_server import TestHTTPServer

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigFiles:
    """Point /etc/cas-mirror and ~/.cas-mirror at files of this test (absent until written)
    and the parsed-configuration cache (config/parsed.py) at a folder of its own, and keep
    proxy settings of the machine out of the way of loopback requests."""
    files = ConfigFiles(tmp_path / "etc-cas-mirror", tmp_path / "home-cas-mirror")
    monkeypatch.setenv("CAS_MIRROR_SYSTEM_CONFIG", str(files.system))
    monkeypatch.setenv("CAS_MIRROR_USER_CONFIG", str(files.user))
    monkeypatch.setenv("CAS_MIRROR_CACHE_DIR", str(tmp_path / "cas-mirror-cache"))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # A sync into a bucket keeps its folder under these by default: never the real home.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return files


class ConfigFiles:
    def __init__(self, system: Path, user: Path):
        self.system = system
        self.user = user

    def write_system(self, text: str) -> Path:
        self.system.write_text(text)
        return self.system

    def write_user(self, text: str) -> Path:
        self.user.write_text(text)
        return self.user


@pytest.fixture
def http_server() -> Iterable[Callable[..., TestHTTPServer]]:
    """Factory: `http_server(root, range_support=True)` -> a started TestHTTPServer."""
    servers: list[TestHTTPServer] = []

    def start(root: str | os.PathLike, **kwargs) -> TestHTTPServer:
        server = TestHTTPServer(root, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_channel(tmp_path: Path) -> Callable[..., Channel]:
    """Factory: `make_channel(specs, name="upstream")` builds real packages into a channel."""

    def make(specs: Iterable[PkgSpec], name: str = "upstream") -> Channel:
        return build_channel(tmp_path / name, specs)

    return make


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture) -> Callable[..., CliResult]:
    """Run a console entry point in-process: `run_cli(main, [args])` -> CliResult."""

    def run(main, args: list[str]) -> CliResult:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code = code
        self.out = out
        self.err = err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"
