"""The whole story with real parts, on 127.0.0.1 only: mirror a conda channel and a PyPI
index with cas-sync, drop a package into an internal channel and index it with cas-index,
serve everything with cas-server, then install with py-rattler from both channels (in the
order `cas-sync --condarc` gives) and download with pip, negotiating JSON and HTML."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import requests
import yaml

from cas_index.cli import main as cas_index
from cas_mirror.cli import main as cas_sync
from tests.support.cas_server import CasServer, server_env
from tests.support.clients import rattler_install
from tests.support.conda_packages import PkgSpec, build_channel, build_package
from tests.support.pypi_packages import SimpleUpstream

PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
              "q=0.1, text/html; q=0.01")


def pip_download(index_url: str, name: str, dest, home) -> str:
    env = {**server_env(home), "PIP_CONFIG_FILE": "/dev/null"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "download",
         "--no-deps", "--no-cache-dir", "--only-binary", ":all:", "--index-url", index_url,
         name, "-d", str(dest)], capture_output=True, text=True, env=env, timeout=120,
        check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    [downloaded] = list(dest.iterdir())
    return downloaded.name


def test_mirror_index_serve_and_install(tmp_path, http_server, isolated_config, run_cli):
    mirror = tmp_path / "mirror"
    conda_upstream = tmp_path / "conda-upstream"
    build_channel(conda_upstream / "pkgs" / "main", [
        PkgSpec("libfoo", "1.0", subdir="linux-64"),
        PkgSpec("libfoo", "2.0", subdir="linux-64", license="GPL-3.0-only",
                license_family="GPL3"),  # filtered out: the solver must pick 1.0
        PkgSpec("tzdata", "2024a"),
    ])
    conda_server = http_server(conda_upstream)
    pypi = SimpleUpstream(tmp_path / "pypi-upstream")
    pypi.serve(http_server(tmp_path / "pypi-upstream"))
    pypi.add("alpha", "1.0")
    pypi.add("alpha", "2.0")
    isolated_config.write_user(yaml.safe_dump({
        "remote_url": conda_server.url, "mirror_dir": str(mirror), "platforms": ["linux-64"],
        "license_blacklist": "GPL", "minimum_free_space": 0, "retry_backoff": 0.01,
        "pypi": {"remote_url": pypi.url, "retries": 1}}))

    # 1. mirror both upstreams
    assert run_cli(cas_sync, []).code == 0
    assert run_cli(cas_sync, ["pypi"]).code == 0
    html_only = tmp_path / "html-only.yaml"  # a second PyPI tree with HTML pages only
    html_only.write_text(yaml.safe_dump({"pypi": {"user": "pypi-html", "simple_format": "HTML"}}))
    assert run_cli(cas_sync, ["-f", html_only, "pypi"]).code == 0

    # 2. an internal package that needs a mirrored one, indexed by cas-index
    build_package(PkgSpec("inhouse", "0.1", subdir="linux-64", depends=["libfoo"]),
                  mirror / "internal-pkgs" / "linux-64")
    assert run_cli(cas_index, [mirror / "internal-pkgs"]).code == 0
    assert (mirror / "internal-pkgs" / "noarch" / "repodata.json").is_file()

    # 3. serve it all, and the client configuration for it
    server = CasServer(mirror, tmp_path / "server")
    html_server = CasServer(mirror, tmp_path / "server-html", "-f", str(html_only))
    try:
        condarc = yaml.safe_load(run_cli(cas_sync, ["--condarc", server.url]).out)
        assert condarc["channels"] == [f"{server.url}/internal-pkgs", f"{server.url}/pkgs/main"]

        # 4. a real conda client solves across both channels and installs
        installed = rattler_install(condarc["channels"], ["inhouse"], tmp_path / "env")
        assert installed == ["inhouse-0.1-0.conda", "libfoo-1.0-0.conda"]
        assert (tmp_path / "env" / "share" / "inhouse" / "data.bin").is_file()

        # 5. pip, once negotiating JSON and once HTML
        json_page = requests.get(f"{server.url}/pypi/simple/alpha/",
                                 headers={"Accept": PIP_ACCEPT}, timeout=10)
        assert json_page.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        html_page = requests.get(f"{html_server.url}/pypi-html/simple/alpha/",
                                 headers={"Accept": PIP_ACCEPT}, timeout=10)
        assert html_page.headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
        wheel = pypi.find("alpha-2.0-py3-none-any.whl")[1]
        for url in (f"{server.url}/pypi/simple/", f"{html_server.url}/pypi-html/simple/"):
            dest = tmp_path / f"pip-{url.split('/')[-3]}"
            assert pip_download(url, "alpha", dest, tmp_path) == wheel.filename
            assert hashlib.sha256((dest / wheel.filename).read_bytes()).hexdigest() == \
                wheel.sha256
    finally:
        server.stop()
        html_server.stop()
