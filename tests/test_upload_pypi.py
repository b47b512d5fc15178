"""Private PyPI uploads through cas-server with real clients: twine uploads a wheel and an
sdist, pip installs the private project from the merged index while the mirror holds a
public project of the same name (the private one wins), the project list merges both,
re-uploads are refused, yank/remove on the command line, revoked tokens refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from cas_mirror.server.cli import main as cas_server
from tests.support.cas_server import (
    CasServer,
    add_to_packages,
    build_wheel,
    server_env,
    write_project,
    write_root_index,
)
from tests.support.pypi_packages import build_sdist
from tests.support.pypi_packages import build_wheel as wheel_bytes
from tests.support.uploads import add_token, form_upload

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A served tree whose PyPI mirror holds public acme-tools 9.0 (a name the private
    index takes), public-only 1.0 and shared-lib 1.0 (a name allowed to merge)."""
    base = tmp_path_factory.mktemp("upload-pypi")
    root = base / "mirror"
    web = root / "pypi" / "web"
    wheels = base / "public-wheels"
    for name, version in (("acme-tools", "9.0"), ("public-only", "1.0"), ("shared-lib", "1.0")):
        link = add_to_packages(web, build_wheel(wheels, name, version))
        write_project(web, name, json_links=[link], html_links=[link])
    write_root_index(web, ["acme-tools", "public-only", "shared-lib"])
    config = base / "cas-mirror.yaml"
    config.write_text("upload_max_size: 3 MB\npypi_merge_allowed: [shared-lib]\n")
    token = add_token(root, config, base, "ci", "pypi:upload")
    server = CasServer(root, base / "logs", "-f", str(config), workers=2)
    yield SimpleNamespace(root=root, base=base, config=config, token=token, server=server,
                          url=server.url, private=root / "pypi-private",
                          dist=base / "dist")
    server.stop()


def twine_upload(site, *files: Path, token: str | None = None) -> subprocess.CompletedProcess:
    env = server_env(site.base)
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{site.url}/pypi/legacy/", "-u", "__token__",
         "-p", token or site.token, *map(str, files)],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def pip_install(site, name: str, target: Path) -> subprocess.CompletedProcess:
    env = {**server_env(site.base), "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
         "--no-cache-dir", "--no-deps", "--index-url", f"{site.url}/pypi/simple/",
         "--target", str(target), name],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def upload(site, path: Path) -> None:
    response = form_upload(f"{site.url}/pypi/legacy/", site.token, path)
    assert response.status_code == 200, response.text


def cli(run_cli, site, *args: str):
    return run_cli(cas_server, ["--root", site.root, "-f", site.config, *args])


def write_dist(site, name: str, version: str, sdist: bool = False) -> Path:
    site.dist.mkdir(exist_ok=True)
    if sdist:
        filename, data = build_sdist(name, version)
    else:
        filename, data, _ = wheel_bytes(name, version)
    path = site.dist / filename
    path.write_bytes(data)
    return path


def audit_lines(site) -> list[dict]:
    text = (site.root / ".cas-server" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_twine_uploads_then_pip_installs_the_private_project_not_the_public_one(site, tmp_path):
    wheel = write_dist(site, "acme-tools", "1.0")
    sdist = write_dist(site, "acme-tools", "1.0", sdist=True)
    result = twine_upload(site, wheel, sdist)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = site.private / "packages" / "acme-tools"
    assert (stored / wheel.name).read_bytes() == wheel.read_bytes()
    assert (stored / sdist.name).read_bytes() == sdist.read_bytes()

    installed = pip_install(site, "acme-tools", tmp_path / "target")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    module = (tmp_path / "target" / "acme_tools" / "__init__.py").read_text()
    assert "VERSION = '1.0'" in module  # the mirror's 9.0 never showed up
    page = requests.get(f"{site.url}/pypi/simple/acme-tools/", headers={"Accept": JSON},
                        timeout=10).json()
    assert sorted(f["filename"] for f in page["files"]) == sorted([sdist.name, wheel.name])
    assert page["versions"] == ["1.0"]

    uploads = [line for line in audit_lines(site) if line["action"] == "pypi-upload"]
    assert {line["path"].rsplit("/", 1)[1] for line in uploads} >= {wheel.name, sdist.name}
    line = next(u for u in uploads if u["path"].endswith(wheel.name))
    assert line["token"] == "ci" and line["client"] == "127.0.0.1"
    assert line["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert line["size"] == wheel.stat().st_size


def test_the_private_page_carries_pep658_metadata_and_the_standalone_index_works(site):
    wheel = write_dist(site, "meta-demo", "2.1")
    upload(site, wheel)
    for base in ("pypi", "pypi-private"):
        page = requests.get(f"{site.url}/{base}/simple/meta-demo/", headers={"Accept": JSON},
                            timeout=10)
        assert page.status_code == 200 and page.headers["content-type"] == JSON
        entry = page.json()["files"][0]
        url = requests.compat.urljoin(page.url, entry["url"])
        assert requests.get(url, timeout=10).content == wheel.read_bytes()
        metadata = requests.get(url + ".metadata", timeout=10).content
        assert b"Name: meta-demo" in metadata
        assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    html = requests.get(f"{site.url}/pypi/simple/meta-demo/", timeout=10).text
    assert "data-core-metadata=" in html and wheel.name in html


def test_the_project_list_merges_private_and_public_names(site):
    upload(site, write_dist(site, "only-private", "0.1"))
    listing = requests.get(f"{site.url}/pypi/simple/", headers={"Accept": JSON}, timeout=10)
    names = {p["name"] for p in listing.json()["projects"]}
    assert {"acme-tools", "public-only", "shared-lib", "only-private"} <= names
    html = requests.get(f"{site.url}/pypi/simple/", timeout=10).text
    assert 'href="only-private/"' in html and 'href="public-only/"' in html
    # the mirror's own files are untouched
    mirror_list = json.loads((site.root / "pypi/web/simple/index.v1_json").read_text())
    assert "only-private" not in {p["name"] for p in mirror_list["projects"]}
    # a public project is still the mirror's
    public = requests.get(f"{site.url}/pypi/simple/public-only/", headers={"Accept": JSON},
                          timeout=10).json()
    assert public["files"][0]["url"].startswith("../../packages/")


def test_a_name_allowed_to_merge_lists_private_and_public_files(site):
    upload(site, write_dist(site, "shared-lib", "2.0"))
    page = requests.get(f"{site.url}/pypi/simple/shared-lib/", headers={"Accept": JSON},
                        timeout=10).json()
    assert sorted(f["filename"] for f in page["files"]) == [
        "shared_lib-1.0-py3-none-any.whl", "shared_lib-2.0-py3-none-any.whl"]
    base = f"{site.url}/pypi/simple/shared-lib/"
    for entry in page["files"]:  # each link leads to its file, public or private
        body = requests.get(requests.compat.urljoin(base, entry["url"]), timeout=10).content
        assert hashlib.sha256(body).hexdigest() == entry["hashes"]["sha256"]


def test_uploading_a_file_name_again_is_refused_with_409(site):
    wheel = write_dist(site, "again", "1.0")
    upload(site, wheel)
    before = (site.private / "packages/again" / wheel.name).stat()
    second = twine_upload(site, wheel)
    assert second.returncode != 0
    assert "409" in second.stdout + second.stderr
    assert (site.private / "packages/again" / wheel.name).stat().st_ino == before.st_ino


def test_yank_and_remove_on_the_command_line(site, run_cli):
    wheel = write_dist(site, "yanky", "1.0")
    newer = write_dist(site, "yanky", "1.1")
    upload(site, wheel)
    upload(site, newer)
    assert cli(run_cli, site, "pypi", "yank", "yanky", "1.0", "--reason", "broken build"
               ).code == 0
    page = requests.get(f"{site.url}/pypi/simple/yanky/", headers={"Accept": JSON},
                        timeout=10).json()
    yanked = {f["filename"]: f["yanked"] for f in page["files"]}
    assert yanked == {wheel.name: "broken build", newer.name: False}
    assert 'data-yanked="broken build"' in requests.get(
        f"{site.url}/pypi/simple/yanky/", timeout=10).text

    assert cli(run_cli, site, "pypi", "remove", "yanky", "1.1").code == 0
    page = requests.get(f"{site.url}/pypi/simple/yanky/", headers={"Accept": JSON},
                        timeout=10).json()
    assert [f["filename"] for f in page["files"]] == [wheel.name]
    assert not (site.private / "packages/yanky" / newer.name).exists()
    actions = [(line["action"], line["token"]) for line in audit_lines(site)]
    assert ("pypi-yank", "-") in actions and ("pypi-remove", "-") in actions

    assert cli(run_cli, site, "pypi", "remove", "yanky", "1.0").code == 0  # the last one
    assert requests.get(f"{site.url}/pypi/simple/yanky/", timeout=10).status_code == 404
    assert not (site.private / "simple/yanky").exists()
    assert not (site.private / "packages/yanky").exists()
    listing = requests.get(f"{site.url}/pypi/simple/", headers={"Accept": JSON}, timeout=10)
    assert "yanky" not in {p["name"] for p in listing.json()["projects"]}

    missing = cli(run_cli, site, "pypi", "remove", "yanky", "7.0")
    assert missing.code == 2
    assert "no private project 'yanky'" in missing.err and "Traceback" not in missing.err


def test_a_revoked_token_is_refused(site, run_cli):
    token = cli(run_cli, site, "token", "add", "short-lived", "--scope", "pypi:upload"
                ).out.strip()
    first = form_upload(f"{site.url}/pypi/legacy/", token, write_dist(site, "revoke-me", "1.0"))
    assert first.status_code == 200
    assert cli(run_cli, site, "token", "revoke", "short-lived").code == 0
    refused = twine_upload(site, write_dist(site, "revoke-me", "1.1"), token=token)
    assert refused.returncode != 0
    assert not (site.private / "packages/revoke-me/revoke_me-1.1-py3-none-any.whl").exists()
    response = requests.post(f"{site.url}/pypi/legacy/", auth=("__token__", token),
                             files={"content": ("x.whl", b"x")}, timeout=10)
    assert response.status_code == 401
    assert "revoked" in response.text
    assert ("token-revoke", "token:short-lived") in [
        (line["action"], line["path"]) for line in audit_lines(site)]


class Captured:
    """What a handler sent on granian's protocol object."""

    def __init__(self):
        self.status, self.headers, self.body = None, [], b""

    def response_bytes(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def response_empty(self, status, headers):
        self.status, self.headers = status, headers


def test_a_private_index_marked_private_never_falls_back_to_the_public_project(tmp_path):
    import asyncio

    from cas_mirror.server.files import MirrorTree
    from cas_mirror.server.private_index import PrivateIndex
    from cas_mirror.server.private_view import MergedView, ReadGuard
    from cas_mirror.server.pypi_archive import inspect
    from cas_mirror.server.tokens import TokenStore

    root = tmp_path / "mirror"
    web = root / "pypi" / "web"
    link = add_to_packages(web, build_wheel(tmp_path / "public", "acme", "9.0"))
    write_project(web, "acme", json_links=[link], html_links=[link])
    write_root_index(web, ["acme"])
    index = PrivateIndex(root / "pypi-private")
    filename, data, _ = wheel_bytes("acme", "1.0")
    received = tmp_path / filename
    received.write_bytes(data)
    with index.lock():
        index.add(received, inspect(received, filename))
    store = TokenStore(tmp_path / "state")
    _, reader = store.add("reader", ["read:pypi-private"])
    _, uploader = store.add("uploader", ["pypi:upload"])
    guard = ReadGuard(("pypi-private",), store)
    view = MergedView(MirrorTree(root, "pypi"), "pypi", index, (), guard)

    def get(path: str, token: str | None):
        scope = SimpleNamespace(method="GET", path=path, query_string="",
                                client="127.0.0.1:1")
        headers = {"accept": JSON, **({"authorization": f"Bearer {token}"} if token else {})}
        sent = Captured()
        return asyncio.run(view(scope, sent, headers)), sent

    for token, status in ((None, 401), (uploader, 403)):
        handled, sent = get("/pypi/simple/acme/", token)
        assert handled.status == status == sent.status and b"read:pypi-private" in sent.body
        assert get("/pypi/simple/", token)[0] is None  # the mirror's own list, unmerged
    handled, sent = get("/pypi/simple/acme/", reader)
    assert handled.status == 200
    assert [f["filename"] for f in json.loads(sent.body)["files"]] == [filename]
    handled, sent = get("/pypi/simple/", reader)
    assert handled.status == 200 and json.loads(sent.body)["projects"] == [{"name": "acme"}]
