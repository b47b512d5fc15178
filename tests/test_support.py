"""The test infrastructure itself: real packages, correct repodata, a server that misbehaves
exactly as told. Later tests rely on these, so they are checked like product code."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
import requests
from conda_package_streaming.package_streaming import stream_conda_info

from tests.support.conda_packages import PkgSpec


def test_channel_has_real_packages_of_both_formats(make_channel):
    channel = make_channel([
        PkgSpec("alpha", "1.0", subdir="linux-64", fmt=".conda"),
        PkgSpec("alpha", "1.0", subdir="linux-64", fmt=".tar.bz2"),
        PkgSpec("beta", "2.1", subdir="noarch", depends=["alpha >=1"]),
    ])
    linux = channel.repodata["linux-64"]
    assert list(linux["packages"]) == ["alpha-1.0-0.tar.bz2"]
    assert list(linux["packages.conda"]) == ["alpha-1.0-0.conda"]
    assert linux["info"] == {"subdir": "linux-64"}
    assert (channel.root / "noarch/repodata.json").is_file()
    for subdir in ("linux-64", "noarch"):
        on_disk = json.loads((channel.root / subdir / "repodata.json").read_text())
        for fn, record in {**on_disk["packages"], **on_disk["packages.conda"]}.items():
            path = channel.root / subdir / fn
            data = path.read_bytes()
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
            assert record["md5"] == hashlib.md5(data).hexdigest()
            assert record["size"] == len(data)
            members = {}
            with path.open("rb") as fh:
                for tar, member in stream_conda_info(str(path), fh):
                    if member.name in ("info/index.json", "info/paths.json", "info/about.json"):
                        members[member.name] = json.load(tar.extractfile(member))
            assert members["info/index.json"]["name"] == record["name"]
            assert members["info/index.json"]["subdir"] == subdir
            assert "arch" not in record and "platform" not in record
            assert members["info/paths.json"]["paths"][0]["size_in_bytes"] == 256


def test_channel_add_and_remove_rewrite_repodata(make_channel):
    channel = make_channel([PkgSpec("alpha", "1.0")])
    channel.add([PkgSpec("alpha", "2.0")])
    assert set(channel.records("noarch")) == {"alpha-1.0-0.conda", "alpha-2.0-0.conda"}
    channel.remove("noarch", "alpha-1.0-0.conda")
    on_disk = json.loads((channel.root / "noarch/repodata.json").read_text())
    assert list(on_disk["packages.conda"]) == ["alpha-2.0-0.conda"]
    assert not (channel.root / "noarch/alpha-1.0-0.conda").exists()


@pytest.fixture
def served(tmp_path, http_server):
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 4)
    return http_server(tmp_path)


def test_server_get_head_and_range(served):
    url = served.url + "/data.bin"
    full = requests.get(url, timeout=5)
    assert full.status_code == 200 and len(full.content) == 1024
    head = requests.head(url, timeout=5)
    assert head.headers["Content-Length"] == "1024" and head.content == b""
    part = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=5)
    assert part.status_code == 206
    assert part.content == full.content[1000:]
    assert part.headers["Content-Range"] == "bytes 1000-1023/1024"
    assert requests.get(url, headers={"Range": "bytes=5000-"}, timeout=5).status_code == 416
    assert requests.get(served.url + "/missing", timeout=5).status_code == 404
    assert requests.get(served.url + "/../etc/passwd", timeout=5).status_code in (403, 404)


def test_server_conditional_requests(served):
    url = served.url + "/data.bin"
    first = requests.get(url, timeout=5)
    again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
    assert again.status_code == 304 and again.content == b""
    since = requests.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]},
                         timeout=5)
    assert since.status_code == 304


def test_server_without_range_support(tmp_path, http_server):
    (tmp_path / "f").write_bytes(b"x" * 100)
    server = http_server(tmp_path, range_support=False)
    response = requests.get(server.url + "/f", headers={"Range": "bytes=50-"}, timeout=5)
    assert response.status_code == 200 and len(response.content) == 100


def test_faults_status_times_and_headers(served):
    served.add_fault("/data.bin", status=503, times=2, headers={"Retry-After": "1"})
    codes = [requests.get(served.url + "/data.bin", timeout=5).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert served.paths("GET") == ["/data.bin"] * 3


def test_fault_truncated_body(served):
    served.add_fault("*.bin", truncate=100)
    with pytest.raises(requests.exceptions.RequestException):
        _ = requests.get(served.url + "/data.bin", timeout=5).content


def test_fault_corrupted_body_keeps_length(served):
    good = requests.get(served.url + "/data.bin", timeout=5).content
    served.add_fault("*.bin", corrupt=True, times=1)
    bad = requests.get(served.url + "/data.bin", timeout=5).content
    assert len(bad) == len(good) and bad != good


def test_fault_delay_causes_client_timeout(served):
    served.add_fault("*.bin", delay=1.0, times=1)
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(served.url + "/data.bin", timeout=0.2)


def test_fault_reset_drops_the_connection(served):
    served.add_fault("*.bin", reset=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(served.url + "/data.bin", timeout=5)


def test_routes_answer_dynamically(served):
    from tests.support.http_server import Response

    served.route("/api/*", lambda req: Response(200, req.path.encode(), {"X-Test": "1"}))
    response = requests.get(served.url + "/api/hello", timeout=5)
    assert response.content == b"/api/hello" and response.headers["X-Test"] == "1"


def test_server_binds_loopback_only(served):
    assert served._server.server_address[0] == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", served.port), timeout=5):
        pass
