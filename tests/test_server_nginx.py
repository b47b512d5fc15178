"""etc/nginx.conf, the documented alternative to cas-server: it is valid, and on the same
tree it gives the same answers as cas-server for what clients send.

nginx is optional (the product does not need it), so these tests skip when it is not
installed; `apt-get install nginx` enables them.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.cas_server import CasServer, free_port
from tests.support.nginx import Nginx, check_config, nginx_binary, render_site, write_main_config
from tests.test_server_http import HIDDEN, HTML_V1, JSON_V1, PIP_ACCEPT, SECRET, SHARD, build_tree

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")


def test_documented_config_passes_nginx_t(tmp_path):
    for root, port, folder in ((tmp_path / "mirror", 8080, "pypi"),
                               (tmp_path / "other", 9000, "mypypi")):
        config = write_main_config(tmp_path / f"nginx-{port}", render_site(root, port, folder))
        result = check_config(config)
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base = tmp_path_factory.mktemp("nginx-parity")
    root = build_tree(base)
    cas = CasServer(root, base / "logs", workers=1)
    try:
        nginx = Nginx(root, free_port(), base / "nginx")
    except BaseException:
        cas.stop()
        raise
    yield cas, nginx
    nginx.stop()
    cas.stop()


def answer(url: str, accept: str | None) -> tuple[int, str | None, str | None]:
    session = requests.Session()
    if accept is None:
        session.headers.pop("Accept")
    else:
        session.headers["Accept"] = accept
    response = session.get(url, allow_redirects=False)
    # error pages are each server's own: compare their type only for answers
    ctype = response.headers.get("Content-Type") if response.status_code == 200 else None
    return response.status_code, ctype, response.headers.get("Vary")


@pytest.mark.parametrize("accept", [
    PIP_ACCEPT,
    None,
    "*/*",
    "text/html",
    "text/*",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    JSON_V1,
    HTML_V1,
    "application/vnd.pypi.simple.latest+json",
    "application/vnd.pypi.simple.latest+html",
    f"{HTML_V1}, {JSON_V1}",
    f"{JSON_V1};q=0, */*",
    f"{JSON_V1};q=0.0, {HTML_V1}",
    "application/*",
    "application/xml",
    f"{JSON_V1};q=0, {HTML_V1};q=0, text/html;q=0",
])
@pytest.mark.parametrize("path", ["/pypi/simple/", "/pypi/simple/demo/"])
def test_pep691_negotiation_matches_cas_server(both, path, accept):
    cas, nginx = both
    expected = answer(cas.url + path, accept)
    assert answer(nginx.url + path, accept) == expected
    assert expected[2] == "Accept"


@pytest.mark.parametrize("path", [
    "/pkgs/main/linux-64/repodata.json",
    "/pkgs/main/linux-64/repodata.json.zst",
    "/pkgs/main/linux-64/foo-1.0-0.conda",
    "/pypi/simple/demo/index.v1_json",
    "/pypi/pypi/demo/json",
    "/pypi/packages/aa/bb/demo-1.0-py3-none-any.whl",
    "/pypi/simple/demo",
    "/pkgs/main",
    "/pypi",
    "/pypi/status",
    "/pypi/web/simple/",
    "/.cache/secret",
    "/pkgs/main/.cas-sync.lock",
    "/pkgs/main/linux-64/.tmp-repodata.json.1234",
    "/pypi/pypi/.hidden/json",
    "/nope.conda",
    "/venv/bin/activate",
    "/venv/pyvenv.cfg",
    "/venv/",
    "/venv",
    "/.venv/bin/activate",
    "/pkgs/main/tools-venv/lib/x.py",
    "/pkgs/main/tools-venv",
])
def test_files_redirects_and_refusals_match_cas_server(both, path):
    cas, nginx = both
    ours = requests.get(cas.url + path, allow_redirects=False)
    theirs = requests.get(nginx.url + path, allow_redirects=False)
    assert theirs.status_code == ours.status_code
    if ours.status_code == 200:
        assert theirs.content == ours.content
        assert theirs.headers["Content-Type"] == ours.headers["Content-Type"]
    if ours.status_code == 301:
        assert theirs.headers["Location"] == ours.headers["Location"]


@pytest.mark.parametrize("path", ["/escape-dir/secret.txt", "/escape-file", "/escape-relative",
                                  "/hidden-link/secret", "/pkgs/main/escape-up/secret.txt"])
def test_nginx_refuses_symlinks_out_of_the_root(both, path):
    _, nginx = both
    response = requests.get(nginx.url + path)
    assert response.status_code in (403, 404)
    assert SECRET not in response.text and HIDDEN not in response.text


def test_nginx_is_read_only_and_lists_without_dotfiles(both):
    _, nginx = both
    response = requests.delete(nginx.url + "/pkgs/main/linux-64/repodata.json")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"
    page = requests.get(nginx.url + "/pkgs/main/").text
    assert "linux-64/" in page and ".cas-sync.lock" not in page


@pytest.mark.parametrize("path", ["/venv/bin/activate", "/venv/pyvenv.cfg", "/venv/lib/x.py",
                                  "/.venv/bin/activate", "/pkgs/main/tools-venv/bin/activate"])
def test_nginx_never_serves_a_venv(both, path):
    _, nginx = both
    response = requests.get(nginx.url + path)
    assert response.status_code == 404 and HIDDEN not in response.text


@pytest.mark.parametrize("path", [f"/pkgs/main/linux-64/shards/{SHARD}",
                                  "/pkgs/main/linux-64/shards/notes.txt",
                                  "/pkgs/main/linux-64/repodata.json"])
def test_nginx_caching_headers_match_cas_server(both, path):
    cas, nginx = both
    ours, theirs = requests.get(cas.url + path), requests.get(nginx.url + path)
    assert theirs.status_code == ours.status_code == 200
    assert theirs.headers.get("Cache-Control") == ours.headers.get("Cache-Control")
    assert theirs.headers.get("Allow") == ours.headers.get("Allow")
