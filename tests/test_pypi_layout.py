"""bandersnatch's layout options from its own config file: hash-index (project folders by
first letter, served by cas-server and etc/nginx.conf, installed from with pip and uv),
keep_index_versions (prior pages kept, bounded, index.html linked to the newest) and
cleanup (legacy non-normalized folders removed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cas_mirror.cli import main
from tests.support.cas_server import CasServer, server_env
from tests.support.http_server import TestHTTPServer, free_port
from tests.support.nginx import Nginx, nginx_binary
from tests.support.pypi_packages import SimpleUpstream

UV = Path(sys.executable).with_name("uv")


def bandersnatch_conf(path: Path, directory: Path, master: str, extra: str = "") -> Path:
    path.write_text(f"""[mirror]
directory = {directory}
master = {master}
workers = 3
timeout = 10
global-timeout = 1800
stop-on-error = false
hash-index = true
keep_index_versions = 2
{extra}""")
    return path


def sync(conf: Path, home: Path, *args: str) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAS_MIRROR_SYSTEM_CONFIG", str(home / "none"))
        mp.setenv("CAS_MIRROR_USER_CONFIG", str(home / "none"))
        mp.setenv("NO_PROXY", "127.0.0.1")
        return main(["pypi", "--bandersnatch-config", str(conf), "--quiet",
                     "--minimum-free-space", "0", *args])


@pytest.fixture(scope="module")
def hashed(tmp_path_factory):
    """An upstream and a hash-index mirror of it, made from a bandersnatch config."""
    base = tmp_path_factory.mktemp("hashed")
    server = TestHTTPServer(base / "upstream").start()
    up = SimpleUpstream(base / "upstream").serve(server)
    up.add("Alpha", "1.0")
    up.add("beta", "2.0", kinds=("wheel",))
    conf = bandersnatch_conf(base / "bandersnatch.conf", base / "srv" / "pypi", up.url)
    assert sync(conf, base) == 0
    yield base, up, server, conf
    server.stop()


def test_hash_index_groups_project_folders_by_first_letter(hashed):
    base, _, _, _ = hashed
    simple = base / "srv" / "pypi" / "web" / "simple"
    assert (simple / "a" / "alpha" / "index.v1_json").is_file()
    assert (simple / "b" / "beta" / "index.html").is_file()
    assert not (simple / "alpha").exists() and not (simple / "beta").exists()
    assert '<a href="alpha/">Alpha</a>' in (simple / "index.html").read_text()


def install(client: str, index: str, target: Path, project: str) -> subprocess.CompletedProcess:
    env = server_env(target.parent)
    if client == "pip":
        command = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
                   "install", "--no-deps", "--no-cache-dir", "--target", str(target),
                   "--index-url", index, project]
    else:
        command = [str(UV), "pip", "install", "--no-deps", "--no-cache", "--target",
                   str(target), "--index-url", index, project]
        env["UV_NO_CONFIG"] = "1"
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          env=env)


@pytest.mark.slow
@pytest.mark.parametrize("server_kind", ["cas-server", "nginx"])
def test_pip_and_uv_install_from_a_hash_index_tree(hashed, tmp_path, server_kind):
    base, _, _, _ = hashed
    root = base / "srv"
    if server_kind == "nginx":
        if nginx_binary() is None:
            pytest.skip("nginx is not installed")
        served = Nginx(root, free_port(), tmp_path / "nginx")
    else:
        served = CasServer(root, tmp_path / "logs", workers=1)
    try:
        index = f"{served.url}/pypi/simple/"
        for client in ("pip", "uv"):
            target = tmp_path / f"{client}-target"
            proc = install(client, index, target, "alpha")
            assert proc.returncode == 0, proc.stderr + proc.stdout
            assert (target / "alpha" / "__init__.py").is_file()
            assert any(p.name.lower() == "alpha-1.0.dist-info" for p in target.iterdir())
    finally:
        served.stop()


def test_cas_server_translates_only_what_the_tree_holds(tmp_path):
    from cas_mirror.server.files import MirrorTree

    web = tmp_path / "pypi" / "web" / "simple"
    (web / "d" / "django").mkdir(parents=True)
    (web / "d" / "django" / "index.html").write_text("hashed django")
    (web / "flask").mkdir()
    (web / "flask" / "index.html").write_text("flat flask")
    (web / "f" / "flask").mkdir(parents=True)
    (web / "f" / "flask" / "index.html").write_text("stale hashed flask")
    tree = MirrorTree(tmp_path)

    def body(path):
        response = tree.respond("GET", path, "", {"accept": "text/html"})
        try:
            return response.status, os.pread(response.file.fd, 100, 0) if response.file else b""
        finally:
            response.close()

    assert body("/pypi/simple/django/") == (200, b"hashed django")
    assert body("/pypi/simple/flask/") == (200, b"flat flask")  # the plain layout wins
    assert body("/pypi/simple/nope/")[0] == 404


def test_keep_index_versions_keeps_n_prior_pages_linked(hashed):
    base, up, _, conf = hashed
    folder = base / "srv" / "pypi" / "web" / "simple" / "b" / "beta"
    for version in ("2.1", "2.2", "2.3"):
        up.add("beta", version, kinds=("wheel",))
        assert sync(conf, base) == 0
    versions = sorted((folder / "versions").iterdir())
    assert len(versions) == 2  # bounded to keep_index_versions
    newest = max(versions, key=lambda p: int(p.name.split("_")[1]))
    assert f"index_{up.projects['beta'].serial}_" in newest.name
    assert os.path.samefile(folder / "index.html", newest)  # a (hard) link to the newest
    assert "beta-2.3-py3-none-any.whl" in newest.read_text()
    assert (folder / "index.v1_html").read_bytes() == newest.read_bytes()
    before = sorted(p.name for p in (folder / "versions").iterdir())
    assert sync(conf, base) == 0  # nothing changed: no new version
    assert sorted(p.name for p in (folder / "versions").iterdir()) == before


def test_cleanup_removes_legacy_non_normalized_folders(tmp_path):
    server = TestHTTPServer(tmp_path / "upstream").start()
    try:
        up = SimpleUpstream(tmp_path / "upstream").serve(server)
        up.add("Alpha", "1.0", kinds=("sdist",))
        directory = tmp_path / "srv" / "pypi"
        legacy = directory / "web" / "simple" / "Alpha"
        legacy.mkdir(parents=True)
        (legacy / "index.html").write_text("bandersnatch 3 page")
        conf = bandersnatch_conf(tmp_path / "b.conf", directory, up.url).read_text()
        conf = conf.replace("hash-index = true", "hash-index = false")
        keep = tmp_path / "keep.conf"
        keep.write_text(conf)
        assert sync(keep, tmp_path) == 0
        assert legacy.is_dir()  # cleanup is off by default
        clean = tmp_path / "clean.conf"
        clean.write_text(conf + "cleanup = true\n")
        assert sync(clean, tmp_path) == 0
        assert not legacy.exists()
        assert (directory / "web" / "simple" / "alpha" / "index.html").is_file()
    finally:
        server.stop()


def test_switching_hash_index_off_moves_the_folders(tmp_path):
    server = TestHTTPServer(tmp_path / "upstream").start()
    try:
        up = SimpleUpstream(tmp_path / "upstream").serve(server)
        up.add("alpha", "1.0", kinds=("sdist",))
        directory = tmp_path / "srv" / "pypi"
        conf = bandersnatch_conf(tmp_path / "b.conf", directory, up.url)
        assert sync(conf, tmp_path) == 0
        simple = directory / "web" / "simple"
        assert (simple / "a" / "alpha").is_dir()
        conf.write_text(conf.read_text().replace("hash-index = true", "hash-index = false"))
        assert sync(conf, tmp_path) == 0
        assert (simple / "alpha" / "index.html").is_file() and not (simple / "a").exists()
    finally:
        server.stop()
