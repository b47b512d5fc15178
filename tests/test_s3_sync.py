"""cas-sync (conda) into a bucket (`mirror_dir: s3://bucket/prefix`) on a real S3 API (moto's
server on 127.0.0.1 behind the recording proxy of tests/support/s3.py): a cold sync
publishes what a folder sync does, metadata after packages and repodata.json last; a
no-op run sends no LIST; --verify repairs the bucket; faults of the endpoint, a killed
run, two writers on one platform, two platforms at once and wrong credentials end as the
README says."""

from __future__ import annotations

import json
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

    def keys(self, prefix="") -> dict[str, int]:
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
    keys = mirror.keys()
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
