"""cas-server over real HTTP: files, types, HEAD, Range, 304, folders, PEP 691, refusals.

One server (two worker processes) serves one tree for the whole module; requests, and
http.client where the exact bytes of the request line matter.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import socket
from pathlib import Path

import pytest
import requests

from cas_mirror.server.app import STREAM_THRESHOLD
from tests.support.cas_server import CasServer, write_project, write_root_index

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01"
SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"
HIDDEN = "HIDDEN-STATE-NOT-SERVED"
SHARD = "ab" * 32 + ".msgpack.zst"
IMMUTABLE = "public, max-age=31536000, immutable"


def build_tree(base: Path) -> Path:
    root = base / "mirror"
    linux = root / "pkgs" / "main" / "linux-64"
    linux.mkdir(parents=True)
    (linux / "repodata.json").write_text(json.dumps({"info": {"subdir": "linux-64"},
                                                     "packages": {}, "packages.conda": {}}))
    (linux / "repodata.json.zst").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(100))
    (linux / "repodata.json.bz2").write_bytes(b"BZh9" + os.urandom(100))
    (linux / "foo-1.0-0.conda").write_bytes(bytes(range(256)) * 40)
    (linux / "foo-1.0-0.tar.bz2").write_bytes(os.urandom(5000))
    (linux / ".tmp-repodata.json.1234").write_text(HIDDEN)
    (linux / "shards").mkdir()
    (linux / "shards" / SHARD).write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))
    (linux / "shards" / "notes.txt").write_text("not a shard")
    (root / "pkgs" / "main" / ".cas-sync.lock").write_text(HIDDEN)
    (root / "pkgs" / "main" / "noarch").mkdir()
    (root / "pkgs" / "main" / "noarch" / "repodata.json").write_text("{}")
    (root / "internal-pkgs" / "noarch").mkdir(parents=True)
    (root / "internal-pkgs" / "noarch" / "repodata.json").write_text("{}")
    (root / "internal-pkgs" / "index.html").write_text("<html>channel page</html>")
    (root / ".cache").mkdir()
    (root / ".cache" / "secret").write_text(HIDDEN)
    (root / ".cas-sync").mkdir()
    (root / ".cas-sync" / "state.json").write_text(HIDDEN)
    odd = root / "odd names"
    odd.mkdir()
    (odd / "a&b <c>.txt").write_text("odd")
    (odd / '"quoted".conda').write_bytes(b"q")
    (odd / "caf\u00e9.conda").write_bytes(b"c")
    (root / "empty.bin").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(STREAM_THRESHOLD + 3 * 1024 * 1024 + 17))

    web = root / "pypi" / "web"
    write_root_index(web, ["demo", "htmlonly", "jsononly"])
    write_project(web, "demo", ["../../packages/aa/bb/demo-1.0-py3-none-any.whl#sha256=00"],
                  ["../../packages/aa/bb/demo-2.0-py3-none-any.whl#sha256=00"])
    write_project(web, "htmlonly", None, ["../../packages/x/htmlonly-1.0.tar.gz#sha256=00"],
                  legacy_html=False)
    write_project(web, "jsononly", ["../../packages/x/jsononly-1.0.tar.gz#sha256=00"], None)
    (web / "packages" / "aa" / "bb").mkdir(parents=True)
    (web / "packages" / "aa" / "bb" / "demo-1.0-py3-none-any.whl").write_bytes(b"PK wheel")
    (web / "pypi" / "demo").mkdir(parents=True)
    (web / "pypi" / "demo" / "json").write_text('{"info": {"name": "demo"}}')
    (root / "pypi" / "status").write_text(HIDDEN)  # bandersnatch state beside web/

    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "escape-dir").symlink_to(outside)
    (root / "escape-file").symlink_to(outside / "secret.txt")
    (root / "escape-relative").symlink_to(Path("..") / "outside" / "secret.txt")
    (root / "pkgs" / "main" / "escape-up").symlink_to(Path("..") / ".." / ".." / "outside")
    (root / "hidden-link").symlink_to(root / ".cache")
    (root / "inside-link").symlink_to(Path("pkgs") / "main")
    os.mkfifo(root / "fifo")
    # Python virtual environments (a folder holding pyvenv.cfg) inside the root: the
    # program's own venv put there by mistake, a hidden .venv, one deeper in a channel
    for venv in (root / "venv", root / ".venv", root / "pkgs" / "main" / "tools-venv"):
        (venv / "bin").mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\n# {HIDDEN}\n")
        (venv / "bin" / "activate").write_text(HIDDEN)
        (venv / "lib").mkdir()
        (venv / "lib" / "x.py").write_text(HIDDEN)
    (root / "venv-link").symlink_to(Path("venv") / "bin")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("server-http"))


@pytest.fixture(scope="module")
def server(tree: Path):
    running = CasServer(tree, tree.parent / "logs")
    yield running
    running.stop()


def raw_get(server: CasServer, target: str, method: str = "GET",
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Send `target` exactly as given (no client-side normalisation of dots or escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------- files


@pytest.mark.parametrize("path, content_type", [
    ("/pkgs/main/linux-64/repodata.json", "application/json"),
    ("/pkgs/main/linux-64/repodata.json.zst", "application/octet-stream"),
    ("/pkgs/main/linux-64/repodata.json.bz2", "application/octet-stream"),
    ("/pkgs/main/linux-64/foo-1.0-0.conda", "application/octet-stream"),
    ("/pkgs/main/linux-64/foo-1.0-0.tar.bz2", "application/octet-stream"),
    ("/pypi/simple/demo/index.v1_json", JSON_V1),
    ("/pypi/simple/demo/index.v1_html", HTML_V1),
    ("/pypi/simple/demo/index.html", "text/html; charset=utf-8"),
    ("/pypi/pypi/demo/json", "application/json"),
    ("/pypi/packages/aa/bb/demo-1.0-py3-none-any.whl", "application/octet-stream"),
])
def test_files_have_their_content_type_and_bytes(server, tree, path, content_type):
    response = requests.get(server.url + path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    on_disk = path.replace("/pypi/", "/pypi/web/", 1) if path.startswith("/pypi/") else path
    assert response.content == (tree / on_disk.lstrip("/")).read_bytes()
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_head_has_the_headers_of_get_and_no_body(server):
    url = server.url + "/pkgs/main/linux-64/foo-1.0-0.conda"
    get, head = requests.get(url), requests.head(url)
    assert head.status_code == 200 and head.content == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges"):
        assert head.headers[name] == get.headers[name]
    assert head.headers["Content-Length"] == "10240"


def test_empty_file(server):
    response = requests.get(server.url + "/empty.bin")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Content-Length"] == "0"


def test_file_larger_than_the_stream_threshold_is_streamed_whole(server, tree):
    data = (tree / "big.bin").read_bytes()
    response = requests.get(server.url + "/big.bin")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(data)
    assert response.content == data
    tail = requests.get(server.url + "/big.bin", headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206 and tail.content == data[1000:]
    assert tail.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"


# ---------------------------------------------------------------------- Range


@pytest.mark.parametrize("range_header, status, expected, content_range", [
    ("bytes=0-9", 206, slice(0, 10), "bytes 0-9/10240"),
    ("bytes=10230-", 206, slice(10230, None), "bytes 10230-10239/10240"),
    ("bytes=-5", 206, slice(-5, None), "bytes 10235-10239/10240"),
    ("bytes=10000-99999", 206, slice(10000, None), "bytes 10000-10239/10240"),
    ("bytes=0-0", 206, slice(0, 1), "bytes 0-0/10240"),
    ("bytes=-99999", 206, slice(0, None), "bytes 0-10239/10240"),
    ("bytes=10240-", 416, None, "bytes */10240"),
    ("bytes=99999-100000", 416, None, "bytes */10240"),
    ("bytes=-0", 416, None, "bytes */10240"),
    # ignored: the whole file comes back
    ("bytes=5-2", 200, slice(None), None),
    ("bytes=0-1,5-6", 200, slice(None), None),
    ("items=0-5", 200, slice(None), None),
    ("bytes=abc", 200, slice(None), None),
])
def test_single_byte_ranges(server, tree, range_header, status, expected, content_range):
    data = (tree / "pkgs/main/linux-64/foo-1.0-0.conda").read_bytes()
    response = requests.get(server.url + "/pkgs/main/linux-64/foo-1.0-0.conda",
                            headers={"Range": range_header})
    assert response.status_code == status
    assert response.headers.get("Content-Range") == content_range
    if expected is not None:
        assert response.content == data[expected]
        assert int(response.headers["Content-Length"]) == len(data[expected])


def test_if_range_with_a_stale_validator_sends_the_whole_file(server):
    url = server.url + "/pkgs/main/linux-64/foo-1.0-0.conda"
    etag = requests.head(url).headers["ETag"]
    fresh = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    stale = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": '"old"'})
    assert (fresh.status_code, len(fresh.content)) == (206, 4)
    assert (stale.status_code, len(stale.content)) == (200, 10240)


# ---------------------------------------------------------------------- 304


def test_if_none_match_gives_304(server):
    url = server.url + "/pkgs/main/linux-64/repodata.json"
    first = requests.get(url)
    etag = first.headers["ETag"]
    again = requests.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    listed = requests.get(url, headers={"If-None-Match": f'"nope", W/{etag}'})
    assert listed.status_code == 304
    other = requests.get(url, headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.content == first.content


def test_if_modified_since_gives_304_unless_the_file_is_newer(server, tree):
    url = server.url + "/pkgs/main/noarch/repodata.json"
    last_modified = requests.head(url).headers["Last-Modified"]
    assert requests.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    earlier = email.utils.formatdate(
        email.utils.parsedate_to_datetime(last_modified).timestamp() - 60, usegmt=True)
    assert requests.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    garbage = requests.get(url, headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200
    # If-None-Match wins over If-Modified-Since
    both = requests.get(url, headers={"If-Modified-Since": last_modified,
                                      "If-None-Match": '"other"'})
    assert both.status_code == 200


def test_etag_changes_when_the_file_is_replaced(server, tree):
    path = tree / "pkgs/main/noarch/replaced.json"
    path.write_text('{"v": 1}')
    url = server.url + "/pkgs/main/noarch/replaced.json"
    etag = requests.get(url).headers["ETag"]
    tmp = path.with_name(".tmp-replaced")
    tmp.write_text('{"v": 2}')
    os.replace(tmp, path)
    response = requests.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.json() == {"v": 2}


# ---------------------------------------------------------------------- folders


def test_folder_without_slash_redirects_to_the_slash_form(server):
    for path in ("/pypi/simple/demo", "/pkgs/main", "/pypi"):
        response = requests.get(server.url + path + "?x=1", allow_redirects=False)
        assert response.status_code == 301
        assert response.headers["Location"] == path + "/?x=1"


def test_folder_listing_escapes_names_and_hides_dotfiles(server):
    response = requests.get(server.url + "/odd%20names/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.text
    assert "a&amp;b &lt;c&gt;.txt" in page and "<c>" not in page
    assert 'href="a%26b%20%3Cc%3E.txt"' in page
    assert 'href="%22quoted%22.conda"' in page and "&quot;quoted&quot;.conda" in page
    assert "caf\u00e9.conda" in page
    assert '<a href="../">../</a>' in page


def test_root_listing_hides_hidden_names_and_links_that_leave_the_root(server):
    page = requests.get(server.url + "/").text
    for shown in ("pkgs/", "pypi/", "internal-pkgs/", "inside-link/"):
        assert f">{shown}<" in page
    for hidden in (".cache", ".cas-sync", "escape-dir", "escape-file", "escape-relative",
                   "hidden-link", "fifo", "venv"):
        assert hidden not in page
    assert '<a href="../">' not in page
    channel = requests.get(server.url + "/pkgs/main/").text
    assert ".cas-sync.lock" not in channel and "escape-up" not in channel
    assert "tools-venv" not in channel


def test_folder_with_index_html_serves_it(server):
    response = requests.get(server.url + "/internal-pkgs/")
    assert response.text == "<html>channel page</html>"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def test_symlink_inside_the_root_is_served(server, tree):
    response = requests.get(server.url + "/inside-link/linux-64/repodata.json")
    assert response.status_code == 200
    assert response.content == (tree / "pkgs/main/linux-64/repodata.json").read_bytes()


def test_pypi_folder_is_served_from_web(server):
    page = requests.get(server.url + "/pypi/").text
    for name in ("simple/", "packages/", "pypi/"):
        assert f">{name}<" in page
    assert requests.get(server.url + "/pypi/status").status_code == 404
    assert requests.get(server.url + "/pypi/web/simple/").status_code == 404


# ---------------------------------------------------------------------- PEP 691


@pytest.mark.parametrize("path, accept, content_type, marker", [
    ("/pypi/simple/demo/", PIP_ACCEPT, JSON_V1, "demo-1.0"),
    ("/pypi/simple/demo/", None, "text/html; charset=utf-8", "demo-2.0"),
    ("/pypi/simple/demo/", "text/html", "text/html; charset=utf-8", "demo-2.0"),
    ("/pypi/simple/demo/", HTML_V1, HTML_V1, "demo-2.0"),
    ("/pypi/simple/demo/", "application/vnd.pypi.simple.latest+json", JSON_V1, "demo-1.0"),
    ("/pypi/simple/demo/", "application/vnd.pypi.simple.latest+html", HTML_V1, "demo-2.0"),
    ("/pypi/simple/demo/", f"{JSON_V1};q=0.4, text/html;q=0.5", "text/html; charset=utf-8",
     "demo-2.0"),
    ("/pypi/simple/demo/", f"{JSON_V1};q=0, */*", "text/html; charset=utf-8", "demo-2.0"),
    ("/pypi/simple/htmlonly/", PIP_ACCEPT, HTML_V1, "htmlonly-1.0"),
    ("/pypi/simple/htmlonly/", "text/html", "text/html; charset=utf-8", "htmlonly-1.0"),
    ("/pypi/simple/jsononly/", PIP_ACCEPT, JSON_V1, "jsononly-1.0"),
    ("/pypi/simple/jsononly/", None, JSON_V1, "jsononly-1.0"),
    ("/pypi/simple/", PIP_ACCEPT, JSON_V1, '"name": "htmlonly"'),
    ("/pypi/simple/", "text/html", "text/html; charset=utf-8", 'href="htmlonly/"'),
])
def test_simple_api_negotiation(server, path, accept, content_type, marker):
    headers = {"Accept": accept} if accept is not None else {}
    response = requests.get(server.url + path, headers=headers)
    if accept is None:  # requests sends */* by default; send no Accept at all
        status, got_headers, body = raw_get(server, path)
        got_headers = {k.lower(): v for k, v in got_headers.items()}
        assert status == 200
        assert got_headers["content-type"] == content_type
        assert marker in body.decode()
        return
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Vary"] == "Accept"
    assert marker in response.text


@pytest.mark.parametrize("path, accept", [
    ("/pypi/simple/demo/", "application/xml"),
    ("/pypi/simple/demo/", f"{JSON_V1};q=0, {HTML_V1};q=0, text/html;q=0"),
    ("/pypi/simple/htmlonly/", JSON_V1),
    ("/pypi/simple/jsononly/", "text/html"),
])
def test_simple_api_406_when_nothing_fits(server, path, accept):
    response = requests.get(server.url + path, headers={"Accept": accept})
    assert response.status_code == 406
    assert response.headers["Vary"] == "Accept"


def test_simple_api_304_keeps_vary_and_is_per_representation(server):
    url = server.url + "/pypi/simple/demo/"
    as_json = requests.get(url, headers={"Accept": JSON_V1})
    as_html = requests.get(url, headers={"Accept": "text/html"})
    assert as_json.headers["ETag"] != as_html.headers["ETag"]
    again = requests.get(url, headers={"Accept": JSON_V1, "If-None-Match": as_json.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Vary"] == "Accept"
    other = requests.get(url, headers={"Accept": "text/html",
                                       "If-None-Match": as_json.headers["ETag"]})
    assert other.status_code == 200


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("target", [
    "/../outside/secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/outside/secret.txt",
    "/.%2e/outside/secret.txt",
    "/pkgs/main/../../../outside/secret.txt",
    "/pkgs/..%2f..%2foutside%2fsecret.txt",
    "/pkgs/%2e%2e%2f%2e%2e%2foutside%2fsecret.txt",
    "/%252e%252e/outside/secret.txt",
    "/%25252e%25252e/outside/secret.txt",
    "/..%5coutside%5csecret.txt",
    "/pkgs\\..\\..\\outside\\secret.txt",
    "/%2foutside/secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/pypi/../../outside/secret.txt",
    "/pypi/%2e%2e/%2e%2e/outside/secret.txt",
    "/pkgs/main/linux-64/repodata.json%00",
    "/pkgs/main/linux-64/repodata.json%00.html",
    "/escape-dir/secret.txt",
    "/escape-dir/",
    "/escape-file",
    "/escape-relative",
    "/pkgs/main/escape-up/secret.txt",
    "/hidden-link/secret",
    "/.cache/secret",
    "/.cache/",
    "/.cas-sync/state.json",
    "/%2ecache/secret",
    "/pkgs/main/.cas-sync.lock",
    "/pkgs/main/linux-64/.tmp-repodata.json.1234",
    "/fifo",
    "/venv/bin/activate",
    "/venv/pyvenv.cfg",
    "/venv/",
    "/venv",
    "/venv/lib/",
    "/.venv/bin/activate",
    "/pkgs/main/tools-venv/lib/x.py",
    "/pkgs/main/tools-venv/",
    "/venv-link/activate",
    "/venv-link/",
])
def test_nothing_outside_the_root_or_hidden_is_served(server, target):
    status, _, body = raw_get(server, target)
    assert status in (400, 403, 404), target
    assert SECRET.encode() not in body and HIDDEN.encode() not in body
    assert b"root:" not in body


def test_absolute_form_request_target_is_confined_too(server):
    status, _, body = raw_get(server, f"http://127.0.0.1:{server.port}/../outside/secret.txt")
    assert status in (400, 403, 404) and SECRET.encode() not in body


def test_traversal_over_a_raw_socket(server):
    """No client library in between: the bytes of the request line go out as written."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /pkgs/../../outside/secret.txt HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.split(b" ", 2)[1] in (b"400", b"403", b"404")
    assert SECRET.encode() not in data


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST", "PATCH", "OPTIONS"])
def test_read_only(server, tree, method):
    response = requests.request(method, server.url + "/pkgs/main/linux-64/repodata.json",
                                data=b"x")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert (tree / "pkgs/main/linux-64/repodata.json").read_text().startswith('{"info"')


def test_shards_are_immutable_and_the_rest_is_revalidated(server):
    shard = requests.get(f"{server.url}/pkgs/main/linux-64/shards/{SHARD}")
    assert shard.status_code == 200
    assert shard.headers["Cache-Control"] == IMMUTABLE
    again = requests.get(shard.url, headers={"If-None-Match": shard.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == IMMUTABLE
    for path in ("pkgs/main/linux-64/repodata.json", "pkgs/main/linux-64/shards/notes.txt",
                 "pkgs/main/linux-64/foo-1.0-0.conda"):
        response = requests.get(f"{server.url}/{path}")
        assert response.status_code == 200
        assert "Cache-Control" not in response.headers, path


def test_missing_file_is_404(server):
    assert requests.get(server.url + "/pkgs/main/linux-64/nope.conda").status_code == 404
    assert requests.get(server.url + "/pkgs/main/linux-64/repodata.json/x").status_code == 404


# ---------------------------------------------------------------------- access log


def test_access_log_in_common_log_format(server):
    requests.get(server.url + "/pkgs/main/linux-64/foo-1.0-0.conda?probe=log")
    requests.get(server.url + "/pkgs/main/linux-64/nope-for-log.conda")
    server.wait_for_log("probe=log")
    log = server.wait_for_log("nope-for-log")
    lines = [line for line in log.splitlines() if "probe=log" in line]
    assert len(lines) == 1
    host, ident, user, rest = lines[0].split(" ", 3)
    assert (host, ident, user) == ("127.0.0.1", "-", "-")
    assert rest.startswith("[")
    assert rest.endswith('] "GET /pkgs/main/linux-64/foo-1.0-0.conda?probe=log HTTP/1.1" '
                         "200 10240")
    assert any(line.endswith('"GET /pkgs/main/linux-64/nope-for-log.conda HTTP/1.1" 404 14')
               for line in log.splitlines())
