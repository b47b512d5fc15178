"""cas-sync (conda) into a bucket (`mirror_dir: s3://bucket/prefix`) on a real S3 API (moto's
server on 127.0.0.1 behind the recording proxy of tests/support/s3.py): a cold sync
publishes what a folder sync does, metadata after packages and repodata.json last; a
no-op run sends no LIST; --verify repairs the bucket; faults of the endpoint, a killed
run, two writers on one platform, two platforms at once and wrong credentials end as the
README says."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from cas_mirror.cli import main
from cas_mirror.storage import S3Settings, open_storage
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.s3 import credentials_env, s3_credentials, s3_endpoint  # noqa: F401

pytestmark = pytest.mark.usefixtures("s3_credentials")

SPECS = [
    PkgSpec("alpha", "1.0", subdir="linux-64"),
    PkgSpec("alpha", "1.0", subdir="linux-64", fmt=".tar.bz2"),
    PkgSpec("delta", "1.0", subdir="linux-64", depends=["alpha >=1", "gamma"]),
    PkgSpec("gamma", "1.0", subdir="noarch"),
    PkgSpec("orca", "1.0", subdir="osx-arm64", depends=["gamma"]),
    PkgSpec("big", "1.0", subdir="linux-64", payload_size=400_000),
]
CHANNEL = "pkgs/main"


@pytest.fixture(scope="module")
def upstream_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s3-sync-upstream")
    build_channel(root / CHANNEL, SPECS)
    return root


class BucketMirror:
    """A mirror in a fresh bucket; `sync()` runs cas-sync in this process."""

    def __init__(self, endpoint, upstream_url: str, tmp_path: Path, run_cli):
        self.endpoint = endpoint
        self.bucket = endpoint.new_bucket("sync")
        self.url = f"s3://{self.bucket}/mirror"
        self.tmp_path = tmp_path
        self.run_cli = run_cli
        self.upstream_url = upstream_url
        self.storage = open_storage(self.url, S3Settings(endpoint.url, "us-east-1"))
        self.config = tmp_path / "sync.yaml"
        self.configure()

    def configure(self, state="state", **keys) -> Path:
        settings = {"remote_url": self.upstream_url, "mirror_dir": self.url,
                    "state_dir": str(self.tmp_path / state), "platforms": ["linux-64"],
                    "s3_endpoint_url": self.endpoint.url, "s3_region": "us-east-1",
                    "retries": 2, "retry_backoff": 0.01, "timeout": 5,
                    "minimum_free_space": 0, "workers": 4}
        settings.update(keys)
        path = self.tmp_path / f"{state}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def sync(self, *args, state="state"):
        return self.run_cli(main, ["-f", self.tmp_path / f"{state}.yaml", *args])

    def objects(self, prefix="") -> dict[str, int]:
        return {i.key: i.size for i in self.storage.list(prefix)}

    def json(self, key: str) -> dict:
        got = self.storage.read(key)
        assert got is not None, key
        return json.loads(got[0])

    def records(self, platform: str) -> dict:
        doc = self.json(f"{CHANNEL}/{platform}/repodata.json")
        return {**doc["packages"], **doc["packages.conda"]}


@pytest.fixture
def mirror(s3_endpoint, upstream_root, http_server, tmp_path, run_cli):  # noqa: F811
    server = http_server(upstream_root)
    s3_endpoint.clear()
    return BucketMirror(s3_endpoint, server.url, tmp_path, run_cli)


def package_files(root: Path, platform: str) -> dict[str, int]:
    folder = root / CHANNEL / platform
    return {p.name: p.stat().st_size for p in folder.iterdir()
            if p.name.endswith((".conda", ".tar.bz2"))}


def writes(endpoint, bucket: str) -> list[str]:
    """The keys PUT (relative to the mirror's prefix), in order."""
    stem = f"/{bucket}/mirror/"
    return [r.path.split(stem, 1)[1] for r in endpoint.requests
            if r.method == "PUT" and stem in r.path and "partNumber" not in r.query]


def test_cold_sync_publishes_packages_then_metadata_and_a_no_op_sends_no_list(
        mirror, upstream_root, s3_endpoint):  # noqa: F811
    result = mirror.sync()
    assert result.code == 0, result
    keys = mirror.objects()
    for platform in ("linux-64", "noarch"):
        expected = package_files(upstream_root, platform)
        assert {k.rsplit("/", 1)[1]: s for k, s in keys.items()
                if k.startswith(f"{CHANNEL}/{platform}/") and k.endswith((".conda", ".bz2"))
                and "repodata" not in k} == expected
        assert set(mirror.records(platform)) == set(expected)
    assert f"{CHANNEL}/linux-64/repodata.json.zst" in keys
    assert f"{CHANNEL}/linux-64/repodata_shards.msgpack.zst" in keys
    assert mirror.json(f"{CHANNEL}/channeldata.json")["subdirs"] == ["linux-64", "noarch"]
    order = [k for k in writes(s3_endpoint, mirror.bucket) if k.startswith(f"{CHANNEL}/linux-64")]
    packages = [i for i, k in enumerate(order) if k.endswith((".conda", ".tar.bz2"))]
    metadata = [i for i, k in enumerate(order) if i not in packages]
    assert max(packages) < min(metadata)
    assert order[-1].endswith("/repodata.json")
    assert order.index(f"{CHANNEL}/linux-64/repodata_shards.msgpack.zst") > max(
        i for i, k in enumerate(order) if "/shards/" in k)
    # nothing is left on the local disk but metadata and state
    staged = [p for p in (mirror.tmp_path / "state").rglob("*")
              if p.name.endswith((".conda", ".tar.bz2", ".part"))]
    assert staged == []

    s3_endpoint.clear()
    again = mirror.sync()
    assert again.code == 0, again
    assert s3_endpoint.lists(mirror.bucket) == []
    assert writes(s3_endpoint, mirror.bucket) == []

    # A run with work to do (the configuration changed) still lists nothing, and deletes
    # the package it drops only after the repodata that no longer names it.
    mirror.configure(blacklist=["big"])
    s3_endpoint.clear()
    changed = mirror.sync()
    assert changed.code == 0, changed
    assert s3_endpoint.lists(mirror.bucket) == []
    big = f"{CHANNEL}/linux-64/big-1.0-0.conda"
    assert big not in mirror.objects() and "big-1.0-0.conda" not in mirror.records("linux-64")
    sent = [("DELETE" if r.query == "delete" else r.method, r.path.split("/mirror/", 1)[-1])
            for r in s3_endpoint.requests if r.method in ("PUT", "DELETE", "POST")]
    deletes = [i for i, (method, _) in enumerate(sent) if method == "DELETE"]
    assert len(deletes) == 1  # (obstore deletes through DeleteObjects)
    assert deletes[0] > sent.index(("PUT", f"{CHANNEL}/linux-64/repodata.json"))


def upstream_bytes(root: Path, platform: str, fn: str) -> bytes:
    return (root / CHANNEL / platform / fn).read_bytes()


def test_verify_lists_once_per_platform_and_repairs_deleted_and_altered_objects(
        mirror, upstream_root, s3_endpoint):  # noqa: F811
    assert mirror.sync().code == 0
    gone, altered = f"{CHANNEL}/linux-64/alpha-1.0-0.conda", f"{CHANNEL}/noarch/gamma-1.0-0.conda"
    mirror.storage.delete(gone)
    size = len(upstream_bytes(upstream_root, "noarch", "gamma-1.0-0.conda"))
    mirror.storage.put_bytes(altered, b"x" * size)  # same size, other bytes
    s3_endpoint.clear()
    assert mirror.sync().code == 0  # a no-op trusts its inventory: no request sees it
    assert mirror.storage.head(gone) is None and s3_endpoint.lists(mirror.bucket) == []

    s3_endpoint.clear()
    result = mirror.sync("--verify")
    assert result.code == 0, result
    assert len(s3_endpoint.lists(mirror.bucket)) == 2  # linux-64/ and noarch/
    assert sorted(k for k in writes(s3_endpoint, mirror.bucket) if "repodata" not in k
                  and k.endswith(".conda")) == [gone, altered]
    assert mirror.storage.read(gone)[0] == upstream_bytes(upstream_root, "linux-64",
                                                          "alpha-1.0-0.conda")
    assert mirror.storage.read(altered)[0] == upstream_bytes(upstream_root, "noarch",
                                                             "gamma-1.0-0.conda")


def test_lost_local_state_costs_one_list_per_platform_and_no_upload(
        mirror, s3_endpoint):  # noqa: F811
    import shutil

    assert mirror.sync().code == 0
    before = {i.key: i.etag for i in mirror.storage.list()}
    shutil.rmtree(mirror.tmp_path / "state")
    s3_endpoint.clear()
    result = mirror.sync()
    assert result.code == 0, result
    assert len(s3_endpoint.lists(mirror.bucket)) == 2
    # (metadata may be written again: the shard index records when it was made)
    assert [k for k in writes(s3_endpoint, mirror.bucket)
            if k.endswith((".conda", ".tar.bz2"))] == []
    after = {i.key: i.etag for i in mirror.storage.list()}
    assert {k: e for k, e in after.items() if k.endswith((".conda", ".tar.bz2"))} == \
        {k: e for k, e in before.items() if k.endswith((".conda", ".tar.bz2"))}
    assert after.keys() == before.keys()


def test_slow_down_is_retried(mirror, s3_endpoint):  # noqa: F811
    s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/big-1.0-0.conda*", 503, "PUT", times=2)
    result = mirror.sync()
    assert result.code == 0, result
    assert f"{CHANNEL}/linux-64/big-1.0-0.conda" in mirror.objects()
    assert "big-1.0-0.conda" in mirror.records("linux-64")


def test_a_package_the_bucket_refuses_is_left_out_of_the_repodata(
        mirror, s3_endpoint):  # noqa: F811
    s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/big-1.0-0.conda*", 500, "PUT")
    result = mirror.sync()
    assert result.code == 1, result
    failed = [line for line in result.out.splitlines() if "big-1.0-0.conda" in line]
    assert failed and "HTTP 500" in failed[-1]
    assert f"{CHANNEL}/linux-64/big-1.0-0.conda" not in mirror.objects()
    records = mirror.records("linux-64")
    assert "big-1.0-0.conda" not in records and "alpha-1.0-0.conda" in records
    assert list((mirror.tmp_path / "state").rglob("big-1.0-0.conda*")) == []
    s3_endpoint.clear()
    assert mirror.sync().code == 0
    assert "big-1.0-0.conda" in mirror.records("linux-64")


def test_metadata_the_bucket_refuses_leaves_no_repodata_naming_anything_missing(
        mirror, s3_endpoint):  # noqa: F811
    s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/linux-64/repodata.json", 503, "PUT")
    result = mirror.sync()
    assert result.code == 1, result
    lines = [line for line in (result.err + result.out).splitlines()
             if "repodata.json" in line]
    assert lines and "SlowDown" in lines[0] and "linux-64/repodata.json" in lines[0]
    keys = mirror.objects()
    assert f"{CHANNEL}/linux-64/repodata.json" not in keys
    for key in keys:  # whatever metadata went out names packages that are there
        if key.endswith("repodata.json.zst"):
            import zstandard

            doc = json.loads(zstandard.ZstdDecompressor().decompress(
                mirror.storage.read(key)[0], max_output_size=10**7))
            folder = key.rsplit("/", 1)[0]
            assert all(f"{folder}/{fn}" in keys
                       for fn in {**doc["packages"], **doc["packages.conda"]})
    s3_endpoint.clear()
    assert mirror.sync().code == 0
    assert "big-1.0-0.conda" in mirror.records("linux-64")


def test_wrong_credentials_are_one_line_exit_2(mirror, s3_endpoint):  # noqa: F811
    s3_endpoint.add_fault(f"/{mirror.bucket}*", 403)
    result = mirror.sync()
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1
    assert "access denied" in result.err and mirror.bucket in result.err


def start_sync(mirror: BucketMirror, state: str) -> subprocess.Popen:
    """cas-sync in a process of its own (another machine), with the test's environment."""
    return subprocess.Popen([sys.executable, "-m", "cas_mirror", "-f",
                             str(mirror.tmp_path / f"{state}.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_upload_is_completed_by_the_next(mirror, s3_endpoint):  # noqa: F811
    release = threading.Event()
    fault = s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/big-1.0-0.conda*", 500, "PUT",
                                  times=1, release=release)
    process = start_sync(mirror, "state")
    try:
        assert fault.held.wait(60), process.communicate(timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
    finally:
        release.set()
    assert f"{CHANNEL}/linux-64/repodata.json" not in mirror.objects()
    assert list((mirror.tmp_path / "state").rglob("big-1.0-0.conda"))  # staged, not uploaded
    mirror.configure(blacklist=["big"])  # the next run no longer wants it
    result = mirror.sync()
    assert result.code == 0, result
    assert "big-1.0-0.conda" not in mirror.records("linux-64")
    staged = [p for p in (mirror.tmp_path / "state").rglob("*")
              if p.name.endswith((".conda", ".tar.bz2", ".part"))]
    assert staged == []
    mirror.configure()
    assert mirror.sync().code == 0
    assert "big-1.0-0.conda" in mirror.records("linux-64")


def test_two_writers_on_one_platform_one_stops_with_exit_3(mirror, s3_endpoint):  # noqa: F811
    """Machine A is about to publish the shard index of linux-64 when machine B (another
    state folder, a config that drops delta) publishes the platform: A stops (exit 3),
    naming the key, and the bucket is B's, consistent."""
    mirror.configure("other", blacklist=["delta"])
    release = threading.Event()
    fault = s3_endpoint.add_fault(
        f"/{mirror.bucket}/mirror/*/linux-64/repodata_shards.msgpack.zst", 0, "PUT", times=1,
        release=release)
    process = start_sync(mirror, "state")
    try:
        assert fault.held.wait(60), process.communicate(timeout=60)
        other = mirror.sync(state="other")
        assert other.code == 0, other
    finally:
        release.set()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, (out, err)
    lines = [line for line in err.splitlines() if "another writer" in line]
    assert len(lines) == 1 and "linux-64/repodata_shards.msgpack.zst" in lines[0]
    keys = mirror.objects()
    records = mirror.records("linux-64")
    assert "delta-1.0-0.conda" not in records
    assert all(f"{CHANNEL}/linux-64/{fn}" in keys for fn in records)


@pytest.mark.parametrize("held", ["noarch/repodata.json", "channeldata.json"])
def test_two_platforms_at_once_both_land_and_channeldata_lists_both(
        mirror, s3_endpoint, held):  # noqa: F811
    """linux-64 on one machine, osx-arm64 on another, at the same time (the first held
    just before writing `held`): both publish noarch (the same bytes: kept), and the
    channeldata.json written in between is merged."""
    mirror.configure("arm", platforms=["osx-arm64"])
    release = threading.Event()
    fault = s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/{held}", 0, "PUT",
                                  times=1, release=release)
    process = start_sync(mirror, "state")
    try:
        assert fault.held.wait(60), process.communicate(timeout=60)
        arm = mirror.sync(state="arm")
        assert arm.code == 0, arm
    finally:
        release.set()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    channeldata = mirror.json(f"{CHANNEL}/channeldata.json")
    assert channeldata["subdirs"] == ["linux-64", "noarch", "osx-arm64"]
    assert channeldata["packages"]["orca"]["subdirs"] == ["osx-arm64"]
    assert channeldata["packages"]["gamma"]["subdirs"] == ["noarch"]
    assert channeldata["packages"]["alpha"]["subdirs"] == ["linux-64"]
    assert "orca-1.0-0.conda" in mirror.records("osx-arm64")
    assert "alpha-1.0-0.conda" in mirror.records("linux-64")


@pytest.mark.slow
def test_rattler_installs_from_the_synced_bucket(mirror, tmp_path, s3_endpoint,  # noqa: F811
                                                 monkeypatch):
    """Through cas-server --root s3://..., and straight from the bucket with py-rattler's
    own s3:// channel support (path-style requests to the endpoint)."""
    import asyncio

    import rattler
    from rattler.networking import Client, S3Middleware
    from rattler.networking.middleware import S3Config

    from tests.support.cas_server import CasServer
    from tests.support.clients import rattler_install
    from tests.support.s3 import ACCESS_KEY, SECRET_KEY

    assert mirror.sync().code == 0
    server = CasServer(mirror.url, tmp_path / "logs", "-f", str(mirror.tmp_path / "state.yaml"))
    try:
        installed = rattler_install([f"{server.url}/{CHANNEL}"], ["delta"], tmp_path / "p1")
    finally:
        server.stop()
    assert installed == ["alpha-1.0-0.conda", "delta-1.0-0.conda", "gamma-1.0-0.conda"]

    auth = tmp_path / "rattler-auth.json"
    auth.write_text(json.dumps({f"s3://{mirror.bucket}": {"S3Credentials": {
        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}}}))
    monkeypatch.setenv("RATTLER_AUTH_FILE", str(auth))
    client = Client([S3Middleware({mirror.bucket: S3Config(s3_endpoint.url, "us-east-1",
                                                           "path")})])

    async def straight() -> list[str]:
        gateway = rattler.Gateway(cache_dir=tmp_path / "cache2", client=client)
        records = await rattler.solve([f"{mirror.url}/{CHANNEL}"], ["delta"], gateway=gateway,
                                      platforms=["linux-64", "noarch"], virtual_packages=[])
        await rattler.install(records, tmp_path / "p2", cache_dir=tmp_path / "pkgs2",
                              client=client, show_progress=False,
                              platform=rattler.Subdir("linux-64"))
        return sorted(r.file_name for r in records)

    assert asyncio.run(straight()) == installed


@pytest.mark.slow
def test_a_killed_multipart_upload_is_aborted_by_the_next_run(
        s3_endpoint, http_server, tmp_path, run_cli, tmp_path_factory):  # noqa: F811
    """A package larger than the multipart chunk, killed between its parts: the next run
    aborts the incomplete upload (invisible, but stored and billed) and publishes."""
    from cas_mirror.storage.s3 import MULTIPART_CHUNK

    root = tmp_path / "upstream-huge"
    build_channel(root / CHANNEL, [PkgSpec("huge", "1.0", subdir="linux-64",
                                           payload_size=MULTIPART_CHUNK + 100_000),
                                   PkgSpec("gamma", "1.0", subdir="noarch")])
    s3_endpoint.clear()
    mirror = BucketMirror(s3_endpoint, http_server(root).url, tmp_path, run_cli)
    release = threading.Event()
    fault = s3_endpoint.add_fault(f"/{mirror.bucket}/mirror/*/huge-1.0-0.conda?partNumber=2*",
                                  500, "PUT", times=1, release=release)
    process = start_sync(mirror, "state")
    try:
        assert fault.held.wait(60), process.communicate(timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
    finally:
        release.set()
    huge = f"{CHANNEL}/linux-64/huge-1.0-0.conda"
    assert huge not in mirror.objects()
    result = mirror.sync()
    assert result.code == 0, result
    aborts = [r for r in s3_endpoint.requests if r.method == "DELETE" and "uploadId" in r.query
              and r.path.endswith(huge)]
    assert len(aborts) == 1
    assert "huge-1.0-0.conda" in mirror.records("linux-64")
    assert mirror.objects()[huge] > MULTIPART_CHUNK


def test_a_platform_no_longer_configured_leaves_the_bucket_after_channeldata(
        mirror, s3_endpoint):  # noqa: F811
    mirror.configure(platforms=["linux-64", "osx-arm64"])
    assert mirror.sync().code == 0
    assert "orca-1.0-0.conda" in mirror.records("osx-arm64")
    mirror.configure()
    s3_endpoint.clear()
    result = mirror.sync()
    assert result.code == 0, result
    assert [k for k in mirror.objects() if "/osx-arm64/" in k] == []
    channeldata = mirror.json(f"{CHANNEL}/channeldata.json")
    assert channeldata["subdirs"] == ["linux-64", "noarch"]
    assert "orca" not in channeldata["packages"]
    sent = [r for r in s3_endpoint.requests if r.method in ("PUT", "POST")]
    first = min(i for i, r in enumerate(sent) if r.query == "delete")
    assert "channeldata.json" in sent[first - 1].path
    assert all(r.query == "delete" for r in sent[first:])


def test_dry_run_writes_nothing_to_the_bucket(mirror, s3_endpoint):  # noqa: F811
    result = mirror.sync("--dry-run")
    assert result.code == 0, result
    assert mirror.objects() == {}
    assert writes(s3_endpoint, mirror.bucket) == []


def test_a_listing_that_keeps_failing_fails_its_platform_alone(mirror, s3_endpoint):  # noqa: F811
    """--verify lists each platform; linux-64's listing answers 500: that platform fails
    (exit 1, one line naming it), noarch is verified and published."""
    assert mirror.sync().code == 0
    s3_endpoint.add_fault(f"/{mirror.bucket}?*prefix=mirror%2Fpkgs%2Fmain%2Flinux-64*", 500)
    s3_endpoint.add_fault(f"/{mirror.bucket}/?*prefix=mirror%2Fpkgs%2Fmain%2Flinux-64*", 500)
    result = mirror.sync("--verify")
    assert result.code == 1, result
    failed = [line for line in result.out.splitlines() if "cannot list" in line]
    assert len(failed) == 1 and "linux-64" in failed[0] and "HTTP 500" in failed[0]


def test_the_diff_file_names_the_objects_written_by_their_urls(mirror, tmp_path):
    diff = tmp_path / "changed.txt"
    mirror.configure(diff_file=str(diff))
    result = mirror.sync()
    assert result.code == 0, result
    listed = diff.read_text().splitlines()
    assert listed and all(line.startswith(f"{mirror.url}/") for line in listed)
    keys = {line[len(mirror.url) + 1:] for line in listed}
    assert keys <= set(mirror.objects())
    assert f"{CHANNEL}/linux-64/alpha-1.0-0.conda" in keys
    assert f"{CHANNEL}/linux-64/repodata.json" in keys
    assert f"{CHANNEL}/channeldata.json" in keys
