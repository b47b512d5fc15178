"""conda uploads into cas-server's upload channels: PUT with an HTTP client, then py-rattler
installs from the served channel (repodata and shards); the same bytes again are fine,
other bytes are 409; DELETE re-indexes; uploads racing cas-index runs on the same channel
lose nothing; a channel listed in private_paths needs a read token."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.support.cas_server import CasServer, server_env
from tests.support.clients import rattler_install
from tests.support.conda_packages import PkgSpec, build_channel, build_package
from tests.support.index_tools import records
from tests.support.uploads import add_token, wait_until

CAS_INDEX = str(Path(sys.executable).with_name("cas-index"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("upload-conda")
    root = base / "mirror"
    build_channel(root / "pkgs" / "main", [PkgSpec("mirrored", "1.0", "0")])
    (root / "internal").mkdir()
    (root / "secret").mkdir()
    config = base / "cas-mirror.yaml"
    config.write_text("upload_channels: [internal, secret]\nprivate_paths: [secret]\n")
    token = add_token(root, config, base, "ci", "conda:internal", "conda:secret")
    reader = add_token(root, config, base, "reader", "read:secret")
    server = CasServer(root, base / "logs", "-f", str(config), workers=2)
    yield SimpleNamespace(root=root, base=base, token=token, reader=reader, server=server,
                          url=server.url, packages=base / "packages")
    server.stop()


def put(site, channel: str, package: Path, subdir: str = "noarch",
        token: str | None = None) -> requests.Response:
    return requests.put(f"{site.url}/{channel}/{subdir}/{package.name}",
                        data=package.read_bytes(), auth=("__token__", token or site.token),
                        timeout=60)


def test_a_put_package_is_indexed_and_rattler_installs_it(site, tmp_path):
    package = build_package(PkgSpec("inhouse", "1.0", "0", subdir="linux-64"), site.packages)
    response = put(site, "internal", package, "linux-64")
    assert response.status_code == 201, response.text
    indexed = records(site.root / "internal" / "linux-64")
    assert list(indexed) == [package.name]
    assert (site.root / "internal/linux-64/repodata_shards.msgpack.zst").is_file()
    for sharded in (False, True):
        installed = rattler_install([f"{site.url}/internal"], ["inhouse"],
                                    tmp_path / f"env-{sharded}", sharded=sharded)
        assert installed == [package.name]
    audit = [json.loads(line) for line in
             (site.root / ".cas-server/audit.log").read_text().splitlines()]
    assert {"token": "ci", "action": "conda-upload", "path": f"internal/linux-64/{package.name}",
            "size": package.stat().st_size} .items() <= audit[-1].items()


def test_the_same_bytes_again_are_fine_and_other_bytes_are_409(site, tmp_path):
    first = build_package(PkgSpec("twice", "1.0", "0", seed=1), site.packages)
    assert put(site, "internal", first).status_code == 201
    assert put(site, "internal", first).status_code == 200
    other = build_package(PkgSpec("twice", "1.0", "0", seed=2), tmp_path)
    assert other.read_bytes() != first.read_bytes()
    response = put(site, "internal", other)
    assert response.status_code == 409 and "exists already with other bytes" in response.text
    assert (site.root / "internal/noarch" / first.name).read_bytes() == first.read_bytes()


def test_delete_removes_the_package_and_reindexes(site):
    package = build_package(PkgSpec("doomed", "1.0", "0"), site.packages)
    assert put(site, "internal", package).status_code == 201
    assert package.name in records(site.root / "internal" / "noarch")
    url = f"{site.url}/internal/noarch/{package.name}"
    assert requests.delete(url, timeout=30).status_code == 401
    assert requests.delete(url, auth=("__token__", site.reader), timeout=30).status_code == 403
    response = requests.delete(url, auth=("__token__", site.token), timeout=30)
    assert response.status_code == 200, response.text
    assert package.name not in records(site.root / "internal" / "noarch")
    assert not (site.root / "internal/noarch" / package.name).exists()
    assert requests.delete(url, auth=("__token__", site.token), timeout=30).status_code == 404


def test_mirrored_channels_refuse_uploads(site):
    package = build_package(PkgSpec("intruder", "1.0", "0"), site.packages)
    response = put(site, "pkgs/main", package)
    assert response.status_code == 403 and "mirrored channels take no uploads" in response.text
    assert not (site.root / "pkgs/main/noarch" / package.name).exists()


def test_uploads_racing_cas_index_runs_lose_nothing(site):
    specs = [PkgSpec(f"race{i}", "1.0", "0") for i in range(8)]
    packages = [build_package(spec, site.packages) for spec in specs]
    stop = threading.Event()
    runs = []

    def index_loop():
        while not stop.is_set():
            runs.append(subprocess.run([CAS_INDEX, str(site.root / "internal")],
                                       capture_output=True, env=server_env(site.base),
                                       timeout=120, check=False).returncode)

    indexer = threading.Thread(target=index_loop)
    indexer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda p: put(site, "internal", p).status_code, packages))
    finally:
        stop.set()
        indexer.join()
    assert statuses == [201] * len(packages)
    assert runs and set(runs) == {0}
    assert {p.name for p in packages} <= set(records(site.root / "internal" / "noarch"))


def test_a_private_channel_needs_a_read_token(site):
    package = build_package(PkgSpec("classified", "1.0", "0"), site.packages)
    assert put(site, "secret", package).status_code == 201
    url = f"{site.url}/secret/noarch/repodata.json"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401 and "read:secret" in anonymous.text
    assert requests.get(url, auth=("__token__", site.token), timeout=10).status_code == 403
    allowed = requests.get(url, auth=("__token__", site.reader), timeout=10)
    assert allowed.status_code == 200 and package.name in allowed.json()["packages.conda"]
    assert requests.get(f"{site.url}/internal/noarch/repodata.json", timeout=10).ok


def test_an_upload_waits_for_the_channel_lock_then_indexes(site):
    from cas_index.lock import ChannelLock

    package = build_package(PkgSpec("patient", "1.0", "0"), site.packages)
    target = site.root / "internal" / "noarch" / package.name
    answers = []
    with ChannelLock(site.root / "internal", timeout=0):
        uploader = threading.Thread(target=lambda: answers.append(put(site, "internal",
                                                                      package)))
        uploader.start()
        assert wait_until(target.exists)
        assert uploader.is_alive()  # in place, waiting for the lock to index it
        assert package.name not in records(site.root / "internal" / "noarch")
    uploader.join(timeout=60)
    assert answers and answers[0].status_code == 201, answers
    assert package.name in records(site.root / "internal" / "noarch")


def test_two_uploads_of_one_name_at_once_publish_one_file(site, tmp_path):
    same = build_package(PkgSpec("atonce", "1.0", "0", seed=1), site.packages)
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: put(site, "internal", same).status_code, range(2)))
    assert statuses == [200, 201]
    first = build_package(PkgSpec("clash", "1.0", "0", seed=1), tmp_path / "a")
    second = build_package(PkgSpec("clash", "1.0", "0", seed=2), tmp_path / "b")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda p: put(site, "internal", p), (first, second)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    winner = (first, second)[[a.status_code for a in answers].index(201)]
    published = site.root / "internal/noarch" / winner.name
    assert published.read_bytes() == winner.read_bytes()
    assert records(site.root / "internal/noarch")[winner.name]["sha256"] == \
        hashlib.sha256(winner.read_bytes()).hexdigest()
