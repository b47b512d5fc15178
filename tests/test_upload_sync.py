"""Uploads while `cas-sync` (conda) or `cas-sync pypi` works on the same tree: the syncs
never touch the private index or the upload channels, the merged view follows the
mirror's new project list, and the private project keeps hiding the public one."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import requests

from tests.support.cas_server import CasServer, server_env
from tests.support.pypi_mirror import PypiMirror, make_upstream
from tests.support.pypi_packages import build_wheel
from tests.support.uploads import add_token

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.mark.slow
def test_uploads_during_a_pypi_sync_lose_nothing(tmp_path, http_server, run_cli,
                                                 isolated_config):
    upstream = make_upstream(tmp_path, http_server)  # Alpha, beta, gamma
    mirror = PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)
    mirror.dir.mkdir()
    token = add_token(mirror.dir, isolated_config.user, tmp_path, "ci", "pypi:upload")
    server = CasServer(mirror.dir, tmp_path / "logs", "-f", str(isolated_config.user))
    try:
        wheels = []
        for version in ("0.1", "0.2", "0.3"):
            filename, data, _ = build_wheel("gamma", version)
            (tmp_path / filename).write_bytes(data)
            wheels.append(tmp_path / filename)
        results = []

        def upload():  # one file after the other, while the sync runs
            results.append(subprocess.run(
                [sys.executable, "-m", "twine", "upload", "--non-interactive",
                 "--disable-progress-bar", "--repository-url", f"{server.url}/pypi/legacy/",
                 "-u", "__token__", "-p", token, *map(str, wheels)],
                capture_output=True, env=server_env(tmp_path), timeout=120,
                check=False).returncode)

        uploader = threading.Thread(target=upload)
        uploader.start()
        synced = mirror.sync()
        uploader.join()
        assert synced.code == 0, synced
        assert results == [0]
        assert "gamma" in {p["name"] for p in mirror.root()["projects"]}  # mirrored too

        again = mirror.sync("--verify")
        assert again.code == 0, again
        private = mirror.dir / "pypi-private" / "packages" / "gamma"
        for wheel in wheels:
            assert (private / wheel.name).read_bytes() == wheel.read_bytes()

        page = requests.get(f"{server.url}/pypi/simple/gamma/", headers={"Accept": JSON},
                            timeout=10).json()
        assert sorted(f["filename"] for f in page["files"]) == sorted(w.name for w in wheels)
        listing = requests.get(f"{server.url}/pypi/simple/", headers={"Accept": JSON},
                               timeout=10).json()
        assert {"alpha", "beta", "gamma"} <= {p["name"].lower() for p in listing["projects"]}
    finally:
        server.stop()


@pytest.mark.slow
def test_conda_uploads_during_a_conda_sync_lose_nothing(tmp_path, http_server, run_cli,
                                                        isolated_config):
    from tests.support.conda_mirror import Mirror
    from tests.support.conda_mirror import make_upstream as make_conda_upstream
    from tests.support.conda_packages import PkgSpec, build_package
    from tests.support.index_tools import records

    upstream = make_conda_upstream(tmp_path, http_server)
    mirror = Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)
    mirror.configure(upload_channels=["internal"])
    mirror.dir.mkdir()
    token = add_token(mirror.dir, isolated_config.user, tmp_path, "ci", "conda:internal")
    server = CasServer(mirror.dir, tmp_path / "logs", "-f", str(isolated_config.user))
    try:
        packages = [build_package(PkgSpec(f"team{i}", "1.0", "0", subdir="linux-64"),
                                  tmp_path / "pkgs") for i in range(4)]
        statuses = []

        def upload():
            for package in packages:
                statuses.append(requests.put(
                    f"{server.url}/internal/linux-64/{package.name}",
                    data=package.read_bytes(), auth=("__token__", token),
                    timeout=60).status_code)

        uploader = threading.Thread(target=upload)
        uploader.start()
        synced = mirror.sync()
        uploader.join()
        assert synced.code == 0, synced
        assert statuses == [201] * len(packages)
        assert {p.name for p in packages} == set(records(mirror.dir / "internal/linux-64"))
        assert "alpha-1.0-0.conda" in mirror.records("linux-64")  # the mirror is whole too
        again = mirror.sync()
        assert again.code == 0, again
        assert {p.name for p in packages} == set(records(mirror.dir / "internal/linux-64"))
        refused = requests.put(f"{server.url}/pkgs/main/linux-64/{packages[0].name}",
                               data=packages[0].read_bytes(), auth=("__token__", token),
                               timeout=60)
        assert refused.status_code == 403
    finally:
        server.stop()
