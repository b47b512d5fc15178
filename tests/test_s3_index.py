"""cas-index s3://bucket/channel: a channel in a bucket on a real S3 API (moto's server on
127.0.0.1) indexed through a local staging copy; the outputs match a local cas-index run,
go out in the order clients need, new packages are read once, a no-op run writes nothing,
and a second indexer that published in between makes this one stop (exit 3)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cas_index.channel import index_channel
from cas_index.cli import main as cas_index_main
from cas_index.model import Options
from cas_mirror.storage import Conflict, S3Settings, open_storage
from cas_mirror.stored_index import index_stored_channel
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.s3 import s3_credentials, s3_endpoint  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("s3_credentials")

SPECS = [
    PkgSpec("app", subdir="linux-64", depends=["lib >=2"], fmt=".tar.bz2"),
    PkgSpec("lib", version="1.0"),
    PkgSpec("lib", version="2.1", payload_size=2048),
]


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Path:
    """Real packages in a channel layout (built once for the module)."""
    root = tmp_path_factory.mktemp("s3-index") / "src"
    build_channel(root, [*SPECS, PkgSpec("extra", version="0.1")])
    return root


def package_keys(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".conda", ".tar.bz2")) and p.name not in skip)


@pytest.fixture
def bucket_channel(s3_endpoint, packages, isolated_config, tmp_path, monkeypatch):  # noqa: F811
    """A bucket whose channel 'internal' holds the packages only (as users drop them), the
    user config naming the endpoint, the staging copies under tmp_path."""
    bucket = s3_endpoint.new_bucket("index")
    url = f"s3://{bucket}/team/internal"
    settings = S3Settings(s3_endpoint.url, "us-east-1")
    storage = open_storage(url, settings)
    for key in package_keys(packages, skip=("extra-0.1-0.conda",)):
        storage.put_file(key, packages / key)
    isolated_config.write_user(f"s3_endpoint_url: {s3_endpoint.url}\ns3_region: us-east-1\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return url, storage, settings


def test_outputs_match_a_local_run_and_go_out_in_order(bucket_channel, packages, tmp_path,
                                                       s3_endpoint, run_cli):  # noqa: F811
    url, storage, _ = bucket_channel
    s3_endpoint.requests.clear()
    result = run_cli(cas_index_main, [url])
    assert result.code == 0, result.err
    assert "3 downloaded" in result.out and result.err == ""

    local = tmp_path / "local" / "internal"
    for key in package_keys(packages, skip=("extra-0.1-0.conda",)):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(packages / key, local / key)
    index_channel(local)
    for key in ("noarch/repodata.json", "linux-64/repodata.json", "channeldata.json",
                "linux-64/run_exports.json"):
        data, _ = storage.read(key)
        assert data == (local / key).read_bytes(), key
    # shards are named by their content; the shard index differs only in created_at
    for subdir in ("noarch", "linux-64"):
        assert {o.key.rsplit("/", 1)[1] for o in storage.list(f"{subdir}/shards")} == set(
            os.listdir(local / subdir / "shards"))

    puts = [r.path.split("/team/internal/", 1)[1] for r in s3_endpoint.requests
            if r.method == "PUT"]
    for subdir in ("noarch", "linux-64"):
        mine = [p for p in puts if p.startswith(subdir + "/")]
        assert mine[-1] == f"{subdir}/repodata.json"  # repodata last in its folder
        shards = [i for i, p in enumerate(mine) if "/shards/" in p]
        assert shards and max(shards) < mine.index(f"{subdir}/repodata_shards.msgpack.zst")
    assert puts.index("channeldata.json") > max(puts.index("noarch/repodata.json"),
                                                puts.index("linux-64/repodata.json"))
    assert not any(p.endswith((".conda", ".tar.bz2")) for p in puts)  # inputs stay


def test_no_op_run_downloads_and_writes_nothing(bucket_channel, s3_endpoint,  # noqa: F811
                                                run_cli):
    url, _, _ = bucket_channel
    assert run_cli(cas_index_main, [url, "-q"]).code == 0
    s3_endpoint.requests.clear()
    result = run_cli(cas_index_main, [url])
    assert result.code == 0, result.err
    assert "0 downloaded, 0 published, 0 deleted" in result.out
    assert [r.method for r in s3_endpoint.requests] == ["GET"]  # the one LIST
    assert s3_endpoint.requests[0].is_list


def test_new_package_read_once_and_removed_package_dropped(bucket_channel, packages,
                                                           s3_endpoint, run_cli):  # noqa: F811
    url, storage, _ = bucket_channel
    assert run_cli(cas_index_main, [url, "-q"]).code == 0
    storage.put_file("noarch/extra-0.1-0.conda", packages / "noarch/extra-0.1-0.conda")
    storage.delete("noarch/lib-1.0-0.conda")
    s3_endpoint.requests.clear()
    result = run_cli(cas_index_main, [url])
    assert result.code == 0, result.err
    gets = [r.path for r in s3_endpoint.requests if r.method == "GET" and not r.is_list]
    assert [g.rsplit("/", 1)[1] for g in gets] == ["extra-0.1-0.conda"]
    repodata = json.loads(storage.read("noarch/repodata.json")[0])
    assert sorted(repodata["packages.conda"]) == ["extra-0.1-0.conda", "lib-2.1-0.conda"]
    # the shard of the removed version's name is replaced, the old one waits for its grace
    # period; channeldata names the new package
    assert "extra" in json.loads(storage.read("channeldata.json")[0])["packages"]


def test_second_indexer_that_published_in_between_stops_this_one(bucket_channel, packages,
                                                                 tmp_path):
    """Two machines index the same channel. A package is added; B lists; then a package is
    deleted and A indexes and publishes; then B would publish its older view. B's
    conditional PUTs carry the ETags B listed, which A replaced: B stops with exit 3 and
    A's newer index stays."""
    _, storage, _ = bucket_channel
    index_stored_channel(storage, "internal", tmp_path / "machine-b", None, Options())

    class OtherMachinePublishesAfterList:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def list(self, prefix=""):
            listed = list(self.inner.list(prefix))
            self.inner.delete("noarch/lib-1.0-0.conda")
            index_stored_channel(self.inner, "internal", tmp_path / "machine-a", None,
                                 Options())
            return iter(listed)

    storage.put_file("noarch/extra-0.1-0.conda", packages / "noarch/extra-0.1-0.conda")
    with pytest.raises(Conflict) as stopped:
        index_stored_channel(OtherMachinePublishesAfterList(storage), "internal",
                             tmp_path / "machine-b", None, Options())
    assert stopped.value.exit_code == 3
    assert "changed by another writer" in str(stopped.value)
    repodata = json.loads(storage.read("noarch/repodata.json")[0])
    assert sorted(repodata["packages.conda"]) == ["extra-0.1-0.conda", "lib-2.1-0.conda"]
    # B's next run starts from the store as it is and publishes nothing stale
    index_stored_channel(storage, "internal", tmp_path / "machine-b", None, Options())
    assert repodata == json.loads(storage.read("noarch/repodata.json")[0])


def test_bucket_that_refuses_us_is_one_line_exit_2(bucket_channel, s3_endpoint,  # noqa: F811
                                                   run_cli, isolated_config):
    url, _, _ = bucket_channel
    isolated_config.write_user(f"s3_endpoint_url: {s3_endpoint.url}\nretries: 0\n")
    bucket = url.split("/")[2]
    s3_endpoint.add_fault(f"/{bucket}*", 403)
    try:
        result = run_cli(cas_index_main, [url])
    finally:
        s3_endpoint.clear()
    assert result.code == 2
    assert result.err.startswith("cas-index: error: cannot list ")
    assert "access denied" in result.err and len(result.err.strip().splitlines()) == 1


def test_killed_run_leaves_a_consistent_bucket_that_the_next_run_completes(
        bucket_channel, packages, tmp_path, s3_endpoint, isolated_config):  # noqa: F811
    """SIGKILL cas-index in the middle of its uploads (after its first shard PUT): what
    clients read stays consistent (no repodata.json naming shards that are missing), and
    the next run finishes the job and matches a local index."""
    import signal
    import subprocess
    import sys
    import time

    from tests.support.s3 import credentials_env

    url, storage, _ = bucket_channel
    env = {**os.environ, **credentials_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")}
    s3_endpoint.requests.clear()
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cas_index.cli import main; sys.exit(main())",
         url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while not any(r.method == "PUT" and "/shards/" in r.path
                      for r in list(s3_endpoint.requests)):
            assert process.poll() is None, "cas-index finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)  # poll interval, bounded by the deadline
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    keys = {o.key for o in storage.list("")}
    for subdir in ("noarch", "linux-64"):
        if f"{subdir}/repodata.json" in keys:  # published: everything it names is there
            assert f"{subdir}/repodata_shards.msgpack.zst" in keys
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from cas_index.cli import main; sys.exit(main())",
         url], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    local = tmp_path / "local" / "internal"
    for key in package_keys(packages, skip=("extra-0.1-0.conda",)):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(packages / key, local / key)
    index_channel(local)
    for key in ("noarch/repodata.json", "linux-64/repodata.json", "channeldata.json"):
        assert storage.read(key)[0] == (local / key).read_bytes(), key
    shards = {o.key.rsplit("/", 1)[1] for o in storage.list("noarch/shards")}
    assert shards == set(os.listdir(local / "noarch" / "shards"))


def test_rattler_installs_straight_from_the_indexed_bucket(bucket_channel, tmp_path,
                                                           s3_endpoint, run_cli,  # noqa: F811
                                                           monkeypatch):
    """py-rattler's own s3:// channel support (path-style, the endpoint, credentials from
    its auth file) against the channel cas-index published in the bucket."""
    import asyncio

    import rattler
    from rattler.networking import Client, S3Middleware
    from rattler.networking.middleware import S3Config

    from tests.support.s3 import ACCESS_KEY, SECRET_KEY

    url, _, _ = bucket_channel
    assert run_cli(cas_index_main, [url, "-q"]).code == 0
    bucket = url.split("/")[2]
    auth = tmp_path / "rattler-auth.json"
    auth.write_text(json.dumps({f"s3://{bucket}": {"S3Credentials": {
        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}}}))
    monkeypatch.setenv("RATTLER_AUTH_FILE", str(auth))
    client = Client([S3Middleware({bucket: S3Config(s3_endpoint.url, "us-east-1", "path")})])

    async def solve_and_install() -> list[str]:
        gateway = rattler.Gateway(cache_dir=tmp_path / "rattler-cache", client=client)
        records = await rattler.solve([url], ["app"], gateway=gateway,
                                      platforms=["linux-64", "noarch"], virtual_packages=[])
        await rattler.install(records, tmp_path / "prefix", cache_dir=tmp_path / "pkgs",
                              client=client, show_progress=False,
                              platform=rattler.Subdir("linux-64"))
        return sorted(r.file_name for r in records)

    assert asyncio.run(solve_and_install()) == ["app-1.0-0.tar.bz2", "lib-2.1-0.conda"]
    assert (tmp_path / "prefix/share/lib/data.bin").stat().st_size == 2048


def test_machines_indexing_different_platforms_leave_each_other_alone(
        bucket_channel, packages, tmp_path, run_cli):
    """Machine M indexed the whole channel once; then N indexes noarch only (a new noarch
    package), then M indexes linux-64 only with its older copy of noarch: noarch keeps N's
    index, and channeldata.json is left to whole-channel runs."""
    _, storage, _ = bucket_channel
    index_stored_channel(storage, "internal", tmp_path / "m", None, Options())
    channeldata = storage.read("channeldata.json")[0]
    storage.put_file("noarch/extra-0.1-0.conda", packages / "noarch/extra-0.1-0.conda")
    n = index_stored_channel(storage, "internal", tmp_path / "n", ["noarch"], Options())
    assert all(k.startswith("noarch/") for k in n.downloaded + n.published)
    noarch = storage.read("noarch/repodata.json")[0]
    assert "extra-0.1-0.conda" in json.loads(noarch)["packages.conda"]

    storage.delete("linux-64/app-1.0-0.tar.bz2")
    m = index_stored_channel(storage, "internal", tmp_path / "m", ["linux-64"], Options())
    assert m.published and all(k.startswith("linux-64/") for k in m.published + m.deleted)
    assert storage.read("noarch/repodata.json")[0] == noarch
    assert json.loads(storage.read("linux-64/repodata.json")[0])["packages"] == {}
    assert storage.read("channeldata.json")[0] == channeldata
