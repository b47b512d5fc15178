"""Real clients against cas-server: pip (PEP 691 JSON and HTML), py-rattler (solve and
install a conda channel), and readers that never see a half-replaced file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from cas_mirror.server.app import STREAM_THRESHOLD
from tests.support.cas_server import (
    CasServer,
    add_to_packages,
    build_wheel,
    server_env,
    write_project,
    write_root_index,
)
from tests.support.conda_packages import PkgSpec, build_channel


@pytest.fixture
def serve(tmp_path):
    servers: list[CasServer] = []

    def start(root: Path, *args: str, workers: int = 2) -> CasServer:
        server = CasServer(root, tmp_path / "logs", *args, workers=workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------- pip


def pip_download(index_url: str, name: str, dest: Path, home: Path) -> subprocess.CompletedProcess:
    env = server_env(home)
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf of this machine (find-links, indexes)
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "--disable-pip-version-check", "--no-input", "--index-url", index_url,
         "-d", str(dest), name],
        check=False, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def pypi_tree(tmp_path) -> Path:
    """demo: its JSON page lists 1.0 only, its HTML pages 2.0 only, so what pip downloads
    shows which representation it was given. htmlonly: HTML pages only."""
    root = tmp_path / "mirror"
    web = root / "pypi" / "web"
    wheels = tmp_path / "wheels"
    demo1 = add_to_packages(web, build_wheel(wheels, "demo", "1.0"))
    demo2 = add_to_packages(web, build_wheel(wheels, "demo", "2.0"))
    html1 = add_to_packages(web, build_wheel(wheels, "htmlonly", "1.0"))
    write_root_index(web, ["demo", "htmlonly"])
    write_project(web, "demo", json_links=[demo1], html_links=[demo2])
    write_project(web, "htmlonly", json_links=None, html_links=[html1])
    return root


def test_pip_downloads_through_json(serve, pypi_tree, tmp_path):
    server = serve(pypi_tree)
    result = pip_download(f"{server.url}/pypi/simple/", "demo", tmp_path / "out", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo-1.0-py3-none-any.whl"]
    wheel = (tmp_path / "out" / "demo-1.0-py3-none-any.whl").read_bytes()
    assert wheel == next((pypi_tree / "pypi/web/packages").rglob("demo-1.0-*.whl")).read_bytes()
    assert '"GET /pypi/simple/demo/ HTTP/1.1" 200' in server.wait_for_log("/pypi/simple/demo/")


def test_pip_downloads_through_html(serve, pypi_tree, tmp_path):
    server = serve(pypi_tree)
    result = pip_download(f"{server.url}/pypi/simple", "htmlonly", tmp_path / "out", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["htmlonly-1.0-py3-none-any.whl"]
    # the same server hands the demo project to an HTML-only client as HTML (2.0)
    page = requests.get(f"{server.url}/pypi/simple/demo/", headers={"Accept": "text/html"})
    assert page.headers["Content-Type"].startswith("text/html")
    assert "demo-2.0-py3-none-any.whl" in page.text and "demo-1.0" not in page.text


# ---------------------------------------------------------------------- rattler


def test_rattler_solves_and_installs_from_the_served_channel(serve, tmp_path):
    root = tmp_path / "mirror"
    channel = build_channel(root / "internal-pkgs", [
        PkgSpec("app", subdir="linux-64", depends=["lib >=2"], fmt=".tar.bz2"),
        PkgSpec("lib", version="1.0"),
        PkgSpec("lib", version="2.1", payload_size=2048),
    ])
    assert set(channel.repodata) == {"noarch", "linux-64"}
    server = serve(root)

    import rattler

    async def solve_and_install() -> list:
        gateway = rattler.Gateway(cache_dir=tmp_path / "rattler-cache")
        records = await rattler.solve(
            [rattler.Channel(f"{server.url}/internal-pkgs")], ["app"], gateway=gateway,
            platforms=["linux-64", "noarch"], virtual_packages=[])
        await rattler.install(records, tmp_path / "prefix", cache_dir=tmp_path / "pkgs-cache",
                              show_progress=False,
                              platform=rattler.Subdir("linux-64"))
        return records

    records = asyncio.run(solve_and_install())
    assert sorted((r.name.normalized, str(r.version)) for r in records) == [
        ("app", "1.0"), ("lib", "2.1")]
    prefix = tmp_path / "prefix"
    assert (prefix / "share/app/data.bin").is_file()
    assert (prefix / "share/lib/data.bin").stat().st_size == 2048
    log = server.wait_for_log("lib-2.1-0.conda")
    assert "GET /internal-pkgs/linux-64/repodata.json HTTP/1.1\" 200" in log
    assert "GET /internal-pkgs/noarch/lib-2.1-0.conda HTTP/1.1\" 200" in log


# ---------------------------------------------------------------------- replacement


def version_bytes(name: str, number: int, big: bool) -> bytes:
    """Version `number` of a file: a header naming it, then a fill unique to it; sizes
    differ between versions so a mix of two cannot have a valid length and content."""
    base = STREAM_THRESHOLD + 1000 if big else 20_000
    size = base + (number % 7) * 4099
    header = f"{name} version {number:08d}\n".encode()
    fill = bytes([number % 251]) * (size - len(header))
    return header + fill


def check_body(name: str, body: bytes, big: bool) -> int:
    header = body.split(b"\n", 1)[0].decode()
    prefix = f"{name} version "
    assert header.startswith(prefix), header[:80]
    number = int(header[len(prefix):])
    assert body == version_bytes(name, number, big), f"{name} v{number}: mixed or cut body"
    return number


def test_readers_see_whole_versions_while_files_are_renamed_into_place(serve, tmp_path):
    root = tmp_path / "mirror"
    folder = root / "internal-pkgs" / "noarch"
    folder.mkdir(parents=True)
    files = {"repodata.json": False, "big-1.0-0.conda": True}
    for name, big in files.items():
        (folder / name).write_bytes(version_bytes(name, 0, big))
    server = serve(root)
    readers_done = threading.Event()
    written = dict.fromkeys(files, 0)
    errors: list[BaseException] = []

    def writer() -> None:
        number = 0
        while not readers_done.is_set() and number < 100_000:
            number += 1
            for name, big in files.items():
                if big and number % 8:  # the large file changes less often
                    continue
                tmp = folder / f".tmp-{name}.{number}"
                tmp.write_bytes(version_bytes(name, number, big))
                os.replace(tmp, folder / name)
                written[name] = number

    def reader(name: str, big: bool, count: int, seen: list[int]) -> None:
        try:
            with requests.Session() as session:  # keep-alive, like conda and pip
                for _ in range(count):
                    response = session.get(f"{server.url}/internal-pkgs/noarch/{name}")
                    assert response.status_code == 200
                    assert int(response.headers["Content-Length"]) == len(response.content)
                    seen.append(check_body(name, response.content, big))
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    seen: dict[str, list[int]] = {name: [] for name in files}
    threads = [threading.Thread(target=reader, args=(name, big, 12 if big else 150, seen[name]))
               for name, big in files.items() for _ in range(3)]
    write_thread = threading.Thread(target=writer)
    write_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    readers_done.set()
    write_thread.join(timeout=60)
    assert not errors, errors[0]
    assert len(seen["repodata.json"]) == 450 and len(seen["big-1.0-0.conda"]) == 36
    # the readers really raced the writer: they saw several versions, not one
    assert len(set(seen["repodata.json"])) > 1
    assert written["repodata.json"] > 1
