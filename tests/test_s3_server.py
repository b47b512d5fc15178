"""cas-server --root s3://bucket/prefix: conda channels and the PyPI tree served from a
bucket on a real S3 API (moto's server on 127.0.0.1), with the answers a folder gets:
Range, HEAD, 304, PEP 691 negotiation, folder redirects and listings, streaming; real
clients (py-rattler, pip) install through it; a bucket that refuses us is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cas_mirror.server.app import STREAM_THRESHOLD
from cas_mirror.storage import S3Settings, open_storage
from cas_mirror.storage.local import LocalStorage
from tests.support.cas_server import (
    CasServer,
    add_to_packages,
    build_wheel,
    server_env,
    write_project,
    write_root_index,
)
from tests.support.clients import rattler_install
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.s3 import credentials_env, s3_endpoint  # noqa: F401 - fixture
from tests.test_server_clients import pip_download

PREFIX = "mirror"


def upload_tree(local: Path, url: str, settings: S3Settings) -> None:
    """Copy a folder into the bucket (what cas-sync will publish there)."""
    bucket = open_storage(url, settings)
    for info in LocalStorage(local).list():
        bucket.put_file(info.key, local / info.key)


@pytest.fixture(scope="module")
def served(s3_endpoint, tmp_path_factory):  # noqa: F811
    """A bucket holding a conda channel and a PyPI tree, served by cas-server; the
    server's environment has the test credentials and a config naming the endpoint."""
    work = tmp_path_factory.mktemp("s3-server")
    root = work / "tree"
    build_channel(root / "internal-pkgs", [
        PkgSpec("app", subdir="linux-64", depends=["lib >=2"], fmt=".tar.bz2"),
        PkgSpec("lib", version="1.0"),
        PkgSpec("lib", version="2.1", payload_size=2048),
    ])
    web = root / "pypi" / "web"
    wheels = work / "wheels"
    demo1 = add_to_packages(web, build_wheel(wheels, "demo", "1.0"))
    demo2 = add_to_packages(web, build_wheel(wheels, "demo", "2.0"))
    write_root_index(web, ["demo"])
    write_project(web, "demo", json_links=[demo1], html_links=[demo2])
    (root / "big").mkdir()
    (root / "big" / "large.bin").write_bytes(os.urandom(STREAM_THRESHOLD + 12345))
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (root / "internal-pkgs" / ".hidden").write_text("secret")

    env = credentials_env(work)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    bucket = s3_endpoint.new_bucket("served")
    url = f"s3://{bucket}/{PREFIX}"
    upload_tree(root, url, S3Settings(s3_endpoint.url, "us-east-1"))
    config = work / "cas-mirror.yaml"
    config.write_text(f"s3_endpoint_url: {s3_endpoint.url}\ns3_region: us-east-1\n")
    server = CasServer(url, work / "logs", "-f", str(config), workers=2)  # type: ignore[arg-type]
    try:
        yield server, root, work
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_files_come_from_the_bucket_with_validators(served):
    server, root, _ = served
    local = (root / "internal-pkgs/noarch/lib-2.1-0.conda").read_bytes()
    answer = requests.get(f"{server.url}/internal-pkgs/noarch/lib-2.1-0.conda", timeout=30)
    assert answer.status_code == 200 and answer.content == local
    assert answer.headers["content-type"] == "application/octet-stream"
    etag, modified = answer.headers["etag"], answer.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")

    head = requests.head(f"{server.url}/internal-pkgs/noarch/lib-2.1-0.conda", timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(local) and head.headers["etag"] == etag

    again = requests.get(f"{server.url}/internal-pkgs/noarch/lib-2.1-0.conda", timeout=30,
                         headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    since = requests.get(f"{server.url}/internal-pkgs/noarch/lib-2.1-0.conda", timeout=30,
                         headers={"if-modified-since": modified})
    assert since.status_code == 304

    repodata = requests.get(f"{server.url}/internal-pkgs/linux-64/repodata.json", timeout=30)
    assert repodata.headers["content-type"] == "application/json"
    assert repodata.json()["info"]["subdir"] == "linux-64"


def test_ranges(served):
    server, root, _ = served
    data = (root / "internal-pkgs/noarch/lib-2.1-0.conda").read_bytes()
    url = f"{server.url}/internal-pkgs/noarch/lib-2.1-0.conda"
    part = requests.get(url, headers={"range": "bytes=10-29"}, timeout=30)
    assert part.status_code == 206 and part.content == data[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{len(data)}"
    tail = requests.get(url, headers={"range": "bytes=-7"}, timeout=30)
    assert tail.status_code == 206 and tail.content == data[-7:]
    beyond = requests.get(url, headers={"range": f"bytes={len(data)}-"}, timeout=30)
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    stale = requests.get(url, headers={"range": "bytes=0-9", "if-range": '"other"'}, timeout=30)
    assert stale.status_code == 200 and stale.content == data


def test_large_objects_are_streamed_whole(served):
    server, root, _ = served
    data = (root / "big/large.bin").read_bytes()
    with requests.get(f"{server.url}/big/large.bin", stream=True, timeout=60) as answer:
        assert answer.status_code == 200
        assert int(answer.headers["content-length"]) == len(data)
        assert b"".join(answer.iter_content(65536)) == data


def test_folders_listings_and_refusals(served):
    server, _, _ = served
    moved = requests.get(f"{server.url}/internal-pkgs/noarch?x=1", allow_redirects=False,
                         timeout=30)
    assert moved.status_code == 301 and moved.headers["location"] == "/internal-pkgs/noarch/?x=1"
    listing = requests.get(f"{server.url}/internal-pkgs/noarch/", timeout=30)
    assert listing.status_code == 200 and "lib-2.1-0.conda" in listing.text
    top = requests.get(f"{server.url}/internal-pkgs/", timeout=30)
    assert 'href="linux-64/"' in top.text and ".hidden" not in top.text
    assert requests.get(f"{server.url}/docs/", timeout=30).text == "<p>docs</p>"
    for path in ("/internal-pkgs/.hidden", "/internal-pkgs/nothing", "/nothing/",
                 "/internal-pkgs/%2e%2e/x"):
        assert requests.get(server.url + path, timeout=30).status_code == 404, path
    refused = requests.post(f"{server.url}/internal-pkgs/", timeout=30)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


def test_pep_691_negotiation(served):
    server, _, _ = served
    url = f"{server.url}/pypi/simple/demo/"
    as_json = requests.get(url, headers={"accept": "application/vnd.pypi.simple.v1+json"},
                           timeout=30)
    assert as_json.headers["content-type"] == "application/vnd.pypi.simple.v1+json"
    assert as_json.headers["vary"] == "Accept" and as_json.json()["name"] == "demo"
    plain = requests.get(url, timeout=30)
    assert plain.headers["content-type"] == "text/html; charset=utf-8"
    assert "demo-2.0" in plain.text
    refused = requests.get(url, headers={"accept": "application/xml"}, timeout=30)
    assert refused.status_code == 406
    head = requests.head(url, headers={"accept": "application/vnd.pypi.simple.v1+json"},
                         timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(
        as_json.content)


def test_rattler_installs_from_the_bucket_backed_channel(served):
    server, _, work = served
    installed = rattler_install([f"{server.url}/internal-pkgs"], ["app"], work / "prefix")
    assert installed == ["app-1.0-0.tar.bz2", "lib-2.1-0.conda"]
    assert (work / "prefix/share/lib/data.bin").stat().st_size == 2048


def test_pip_installs_through_the_bucket(served):
    server, _, work = served
    out = work / "pip-out"
    result = pip_download(f"{server.url}/pypi/simple/", "demo", out, work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in out.iterdir()] == ["demo-1.0-py3-none-any.whl"]  # the JSON page
    assert "pip index: http://127.0.0.1" in server.log()


def test_bucket_that_refuses_us_is_one_line_exit_2(s3_endpoint, tmp_path):  # noqa: F811
    bucket = s3_endpoint.new_bucket("refused")
    config = tmp_path / "cas-mirror.yaml"
    config.write_text(f"s3_endpoint_url: {s3_endpoint.url}\nretries: 0\n")
    env = {**server_env(tmp_path), **credentials_env(tmp_path)}
    s3_endpoint.add_fault(f"/{bucket}*", 403)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cas_mirror.server", "--host", "127.0.0.1", "--port",
             "1", "--root", f"s3://{bucket}/x", "-f", str(config)],
            capture_output=True, text=True, env=env, timeout=60, check=False)
    finally:
        s3_endpoint.clear()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "access denied" in lines[0] and f"s3://{bucket}/x" in lines[0]


def test_failing_bucket_answers_502_and_logs_one_line(served, s3_endpoint):  # noqa: F811
    server, _, _ = served
    s3_endpoint.add_fault("*/internal-pkgs/noarch/lib-1.0-0.conda", 503)
    try:
        answer = requests.get(f"{server.url}/internal-pkgs/noarch/lib-1.0-0.conda", timeout=60)
    finally:
        s3_endpoint.clear()
    assert answer.status_code == 502
    log = server.wait_for_log("cas-server: cannot read")
    line = next(x for x in log.splitlines() if x.startswith("cas-server: cannot read"))
    assert "lib-1.0-0.conda: HTTP 503" in line and "SlowDown" in line
    assert "Traceback" not in log
