"""The caching proxy's PyPI side against real upstreams on 127.0.0.1 (a PEP 691 JSON index
and a static HTML one) with real installers: pip and uv install through it, install again
without any upstream file request, and again with upstream stopped; filters, PEP 658
metadata, PEP 691 negotiation towards the client."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.cas_server import (
    CasServer,
    add_to_packages,
    build_wheel,
    server_env,
    write_project,
    write_root_index,
)
from tests.support.http_server import TestHTTPServer
from tests.support.pypi_packages import JSON_TYPE, SimpleUpstream

UV = Path(sys.executable).with_name("uv")


def proxy_config(path: Path, upstream: str, extra: str = "", top: str = "") -> Path:
    path.write_text(f"{top}cache_proxy:\n  metadata_ttl: 0\n"
                    f"  pypi: {{upstream: '{upstream}', path: pyproxy{extra}}}\n")
    return path


def pip_install(index: str, target: Path, home: Path, *names: str) -> subprocess.CompletedProcess:
    env = server_env(home)
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir",
         "--disable-pip-version-check", "--no-input", "--index-url", index,
         "--target", str(target), *names],
        check=False, capture_output=True, text=True, env=env, timeout=120)


def uv_install(index: str, target: Path, home: Path, *names: str) -> subprocess.CompletedProcess:
    env = server_env(home)
    env.update(UV_NO_CONFIG="1", UV_CACHE_DIR=str(home / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    return subprocess.run(
        [str(UV), "pip", "install", "--no-deps", "--no-cache", "--index-url", index,
         "--target", str(target), "--python", sys.executable, *names],
        check=False, capture_output=True, text=True, env=env, timeout=120)


def file_requests(upstream: TestHTTPServer) -> list[str]:
    return [p for p in upstream.paths() if "/packages/" in p]


@pytest.fixture
def json_index(tmp_path):
    server = TestHTTPServer(tmp_path / "up").start()
    index = SimpleUpstream(tmp_path / "up").serve(server)
    index.add("demo", "1.0", kinds=("wheel",))
    index.add("demo", "2.0", kinds=("wheel",))
    index.add("other", "1.0", kinds=("wheel",))
    yield server, index
    server.stop()


@pytest.fixture
def start(tmp_path):
    servers: list[CasServer] = []

    def run(config: Path) -> CasServer:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        server = CasServer(root, tmp_path / "logs", "-f", str(config))
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


@pytest.mark.slow
def test_pip_and_uv_install_then_again_from_cache_then_with_upstream_stopped(
        json_index, start, tmp_path):
    upstream, _ = json_index
    proxy = start(proxy_config(tmp_path / "proxy.yaml", f"{upstream.url}/simple/"))
    index = f"{proxy.url}/pyproxy/simple/"

    first = pip_install(index, tmp_path / "t1", tmp_path, "demo")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "t1" / "demo-2.0.dist-info").is_dir()
    fetched = file_requests(upstream)
    assert len([p for p in fetched if p.endswith(".whl")]) == 1

    upstream.clear_log()
    again = uv_install(index, tmp_path / "t2", tmp_path, "demo==2.0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "t2" / "demo-2.0.dist-info").is_dir()
    assert file_requests(upstream) == []  # pages revalidated (ttl 0), files from the cache
    assert "HIT" in proxy.wait_for_log("demo-2.0-py3-none-any.whl HTTP/1.1\" 200 ")

    upstream.stop()
    # connections the stopped server still keeps alive are cut too
    upstream.add_fault("*", reset=True)
    offline_pip = pip_install(index, tmp_path / "t3", tmp_path, "demo")
    assert offline_pip.returncode == 0, offline_pip.stdout + offline_pip.stderr
    offline_uv = uv_install(index, tmp_path / "t4", tmp_path, "demo")
    assert offline_uv.returncode == 0, offline_uv.stdout + offline_uv.stderr
    page = requests.get(f"{index}demo/", headers={"Accept": JSON_TYPE}, timeout=10)
    assert page.status_code == 200 and "Revalidation Failed" in page.headers["warning"]
    assert int(page.headers["age"]) >= 0
    assert "STALE" in proxy.wait_for_log("STALE")
    # never cached, upstream down: a short 502, not a hang or a traceback
    missing = requests.get(f"{index}never-seen/", timeout=10)
    assert missing.status_code == 502 and len(missing.content) < 400


def test_negotiation_filters_and_rewritten_links(json_index, start, tmp_path):
    upstream, up = json_index
    up.yank("demo-1.0-py3-none-any.whl", "broken")
    config = proxy_config(tmp_path / "proxy.yaml", f"{upstream.url}/simple/",
                          extra=", blacklist: ['demo==2.0', other]")
    proxy = start(config)
    base = f"{proxy.url}/pyproxy/simple/"

    as_json = requests.get(f"{base}demo/", headers={"Accept": JSON_TYPE}, timeout=10)
    assert as_json.headers["content-type"] == JSON_TYPE
    files = as_json.json()["files"]
    assert [f["filename"] for f in files] == ["demo-1.0-py3-none-any.whl"]
    entry = files[0]
    assert entry["yanked"] == "broken" and entry["upload-time"].startswith("2024-01-01")
    assert entry["url"] == "../../files/demo/demo-1.0-py3-none-any.whl"
    assert "core-metadata" in entry and entry["size"] > 0

    as_html = requests.get(f"{base}demo/", headers={"Accept": "text/html"}, timeout=10)
    assert as_html.headers["content-type"].startswith("text/html")
    assert 'data-yanked="broken"' in as_html.text and "demo-2.0" not in as_html.text

    root = requests.get(base, headers={"Accept": JSON_TYPE}, timeout=10).json()
    assert [p["name"] for p in root["projects"]] == ["demo"]  # 'other' is blacklisted
    assert requests.get(f"{base}other/", timeout=10).status_code == 404

    # a dropped file is refused even by URL; a kept one and its .metadata are verified
    refused = requests.get(f"{proxy.url}/pyproxy/files/demo/demo-2.0-py3-none-any.whl",
                           timeout=10)
    assert refused.status_code == 403 and "blacklist" in refused.text
    wheel = requests.get(f"{proxy.url}/pyproxy/files/demo/demo-1.0-py3-none-any.whl",
                         timeout=10)
    assert hashlib.sha256(wheel.content).hexdigest() == entry["hashes"]["sha256"]
    meta = requests.get(f"{proxy.url}/pyproxy/files/demo/demo-1.0-py3-none-any.whl.metadata",
                        timeout=10)
    assert meta.status_code == 200
    assert hashlib.sha256(meta.content).hexdigest() == entry["core-metadata"]["sha256"]


def test_html_upstream_and_a_corrupt_file_is_not_cached(start, tmp_path):
    web = tmp_path / "web"
    wheel = build_wheel(tmp_path / "wheels", "htmlonly", "1.0")
    link = add_to_packages(web, wheel)
    write_root_index(web, ["htmlonly"])
    (web / "simple" / "index.v1_json").unlink()  # an HTML-only index
    write_project(web, "htmlonly", json_links=None, html_links=[link])
    with TestHTTPServer(web) as upstream:
        proxy = start(proxy_config(tmp_path / "proxy.yaml", f"{upstream.url}/simple/"))
        page = requests.get(f"{proxy.url}/pyproxy/simple/htmlonly/",
                            headers={"Accept": JSON_TYPE}, timeout=10).json()
        assert page["files"][0]["hashes"]["sha256"] == hashlib.sha256(
            wheel.read_bytes()).hexdigest()
        url = f"{proxy.url}/pyproxy/files/htmlonly/{wheel.name}"
        upstream.add_fault("*.whl", corrupt=True, times=1)
        bad = requests.get(url, timeout=10)
        assert bad.status_code == 502 and "sha256 mismatch" in bad.text
        cached = tmp_path / "root" / ".cas-proxy" / "files" / "pyproxy" / "files" / "htmlonly"
        assert not (cached / wheel.name).exists()
        good = requests.get(url, timeout=10)
        assert good.status_code == 200 and good.content == wheel.read_bytes()
        assert (cached / wheel.name).read_bytes() == wheel.read_bytes()
        result = pip_install(f"{proxy.url}/pyproxy/simple/", tmp_path / "t", tmp_path,
                             "htmlonly")
        assert result.returncode == 0, result.stdout + result.stderr
    stats = subprocess.run([sys.executable, "-m", "cas_mirror.server", "proxy-stats",
                            "--root", str(tmp_path / "root"), "--json"],
                           capture_output=True, text=True, env=server_env(tmp_path),
                           timeout=60, check=False)
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    assert figures["upstream_failures"] >= 1 and figures["upstream_fetches"] >= 1
    assert figures["cached_files"] == 1
