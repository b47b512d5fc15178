"""cas-sync pypi into an S3 bucket (pypi.mirror_dir: s3://bucket/prefix, or bandersnatch's
storage-backend = s3) on a real S3 API (moto's server on 127.0.0.1 behind the recording,
fault-injecting proxy of tests/support/s3.py), from a Simple-API upstream of real wheels
and sdists; pip installs through cas-server --root s3://...; a no-op run sends nothing to
the bucket (no LIST); --verify repairs; faults, a second writer and wrong credentials
stop the run in one line with the documented status."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from cas_mirror.cli import main
from cas_mirror.storage import S3Settings, open_storage
from tests.support.cas_server import CasServer
from tests.support.pypi_mirror import make_upstream
from tests.support.s3 import REGION, s3_credentials, s3_endpoint  # noqa: F401 - fixtures
from tests.test_proxy_pypi import pip_install, uv_install

PREFIX = "mirror"


class BucketMirror:
    """A cas-sync pypi configuration whose tree is s3://<bucket>/mirror/pypi/web/."""

    def __init__(self, endpoint, bucket: str, config: Path, run_cli, upstream, state: Path):
        self.endpoint, self.bucket, self.config = endpoint, bucket, config
        self.run_cli, self.upstream, self.state = run_cli, upstream, state
        self.url = f"s3://{bucket}/{PREFIX}"
        self.configure()

    def configure(self, **keys):
        pypi = {"remote_url": self.upstream.url, "retries": 1, "retry_backoff": 0.01,
                "timeout": 5, "workers": 2, "mirror_dir": self.url, **keys}
        self.config.write_text(yaml.safe_dump({
            "mirror_dir": str(self.state.parent / "unused"), "minimum_free_space": 0,
            "s3_endpoint_url": self.endpoint.url, "s3_region": REGION, "retries": 1,
            "timeout": 5, "pypi": pypi}))

    def sync(self, *args):
        return self.run_cli(main, ["pypi", *args])

    @property
    def storage(self):
        return open_storage(self.url, S3Settings(self.endpoint.url, REGION, retries=0))

    def objects(self) -> dict[str, int]:
        return {o.key: o.size for o in self.storage.list("pypi/")}

    def read(self, key: str) -> bytes:
        found = self.storage.read(key)
        assert found is not None, key
        return found[0]

    def page(self, name: str) -> dict:
        return json.loads(self.read(f"pypi/web/simple/{name}/index.v1_json"))

    def lists(self) -> int:
        return len(self.endpoint.lists(self.bucket))


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def bucket_mirror(s3_endpoint, s3_credentials, isolated_config, upstream, run_cli,  # noqa: F811
                  tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    bucket = s3_endpoint.new_bucket("pypi")
    yield BucketMirror(s3_endpoint, bucket, isolated_config.user, run_cli, upstream,
                       tmp_path / "state")
    s3_endpoint.clear()


def error_lines(result) -> list[str]:
    """The lines of stderr that are not progress (the run's own info lines)."""
    return [line for line in result.err.strip().splitlines()
            if " pypi: " not in line[:40]]


def _local_state(mirror: BucketMirror) -> Path:
    return mirror.state / "cas-mirror" / "sync" / mirror.bucket / PREFIX / "pypi"


@pytest.mark.slow
def test_cold_sync_into_the_bucket_pip_installs_and_noop_sends_nothing(bucket_mirror,
                                                                       upstream, tmp_path):
    m = bucket_mirror
    result = m.sync()
    assert result.code == 0, result
    objects = m.objects()
    simple = "pypi/web/simple"
    for folder in (simple, f"{simple}/alpha", f"{simple}/beta", f"{simple}/gamma"):
        assert {f"{folder}/{n}" for n in ("index.html", "index.v1_html", "index.v1_json")} \
            <= set(objects)
    for f in upstream.projects["alpha"].files:
        key = f"pypi/web/packages/{f.relpath}"
        assert hashlib.sha256(m.read(key)).hexdigest() == f.sha256
        if f.metadata is not None:
            assert m.read(f"{key}.metadata") == f.metadata
    page = m.page("alpha")
    assert {e["url"] for e in page["files"]} == {
        f"../../packages/{f.relpath}" for f in upstream.projects["alpha"].files}
    root = json.loads(m.read(f"{simple}/index.v1_json"))
    assert [p["name"] for p in root["projects"]] == ["Alpha", "beta", "gamma"]
    # staging is emptied as files go up; state and the inventory stay on this machine
    local = _local_state(m)
    assert not [p for p in (local / "web").rglob("*") if p.is_file()]
    inventory = json.loads((local / ".cas-sync" / "published.json").read_bytes())
    assert set(inventory["objects"]) == {k.removeprefix("pypi/") for k in objects}

    m.endpoint.clear()
    result = m.sync("--json")
    assert result.code == 0, result
    assert json.loads(result.out)["unchanged"] == 3
    assert m.lists() == 0 and m.endpoint.requests == []  # not even a HEAD

    server = CasServer(m.url, tmp_path / "logs", "-f", str(m.config), workers=1)
    try:
        index = f"{server.url}/pypi/simple/"
        for install in (pip_install, uv_install):
            target = tmp_path / install.__name__
            done = install(index, target, tmp_path, "alpha")
            assert done.returncode == 0, done.stdout + done.stderr
            assert (target / "alpha-2.0.dist-info").is_dir(), sorted(target.iterdir())
    finally:
        server.stop()


def test_verify_lists_once_and_repairs_a_deleted_object(bucket_mirror, upstream):
    m = bucket_mirror
    assert m.sync().code == 0
    wheel = upstream.find("gamma-1.0-py3-none-any.whl")[1]
    key = f"pypi/web/packages/{wheel.relpath}"
    m.storage.delete(key)
    m.storage.delete("pypi/web/simple/beta/index.v1_json")
    m.storage.put_bytes("pypi/web/packages/zz/stray.whl", b"nobody's")
    assert m.sync().code == 0 and key not in m.objects()  # the state says all is there
    m.endpoint.clear()
    result = m.sync("--verify", "--json")
    assert result.code == 0, result
    assert m.lists() == 1
    assert hashlib.sha256(m.read(key)).hexdigest() == wheel.sha256
    assert m.page("beta")["name"] == "beta"
    assert "pypi/web/packages/zz/stray.whl" not in m.objects()
    assert json.loads(result.out)["strays_removed"] == 1


def test_minimum_free_space_is_not_asked_of_the_whole_sync(bucket_mirror):
    """The staging folder holds a few files at a time, not the sync's total: a cold sync
    into the bucket does not need room for every file on this machine. Its diff file
    lists s3:// URLs."""
    m = bucket_mirror
    m.configure(minimum_free_space=10**18, diff_file=str(m.state / "changed"))
    result = m.sync()
    assert result.code == 0, result
    assert "pypi/web/simple/index.html" in m.objects()
    # the diff file names the objects written, by URL
    listed = (m.state / "changed").read_text().splitlines()
    assert f"{m.url}/pypi/web/simple/index.html" in listed
    assert all(line.startswith(f"{m.url}/pypi/web/") for line in listed), listed


def test_slowdown_is_retried(bucket_mirror):
    m = bucket_mirror
    m.endpoint.add_fault("*/pypi/web/packages/*", 503, method="PUT", times=2)
    m.endpoint.add_fault("*/pypi/web/simple/index.v1_json", 503, method="PUT", times=1)
    result = m.sync()
    assert result.code == 0, result
    assert "pypi/web/simple/index.v1_json" in m.objects()


def test_persistent_500_is_one_line_exit_1_and_nothing_half_published(bucket_mirror):
    m = bucket_mirror
    m.endpoint.add_fault("*/pypi/web/packages/*", 500, method="PUT")
    result = m.sync()
    m.endpoint.clear()
    assert result.code == 1, result
    lines = error_lines(result)
    assert len(lines) == 1 and "HTTP 500" in lines[0] and "InternalError" in lines[0], result.err
    assert "Traceback" not in result.err + result.out
    assert not [k for k in m.objects() if "/simple/" in k]  # no page names a missing file
    assert m.sync().code == 0  # the next run completes the tree
    assert "pypi/web/simple/index.v1_json" in m.objects()


def test_two_writers_one_stops_with_exit_3(bucket_mirror, upstream, tmp_path, monkeypatch):
    m = bucket_mirror
    machine_a, machine_b = str(m.state), str(tmp_path / "other-machine")
    assert m.sync().code == 0
    # B has no state: refused before it downloads or writes anything
    monkeypatch.setenv("XDG_STATE_HOME", machine_b)
    m.endpoint.clear()
    result = m.sync()
    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1 and "does not know it" in lines[0] and "--verify" in lines[0]
    assert [r.method for r in m.endpoint.requests] == ["HEAD"]
    # B adopts the bucket and publishes a new release
    assert m.sync("--verify").code == 0
    upstream.add("beta", "0.6", kinds=("sdist",))
    assert m.sync().code == 0
    by_b = m.read("pypi/web/simple/beta/index.v1_json")
    # A's recorded ETag of beta's page is stale now: its conditional write loses
    monkeypatch.setenv("XDG_STATE_HOME", machine_a)
    upstream.add("beta", "0.7", kinds=("sdist",))
    result = m.sync()
    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1 and "changed by another writer" in lines[0], lines
    assert "simple/beta/index" in lines[0]
    assert m.read("pypi/web/simple/beta/index.v1_json") == by_b  # not overwritten
    assert m.sync("--verify").code == 0
    assert {"beta-0.6.tar.gz", "beta-0.7.tar.gz"} <= {f["filename"]
                                                      for f in m.page("beta")["files"]}


def test_wrong_credentials_are_one_line_exit_2(bucket_mirror, monkeypatch):
    m = bucket_mirror
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    m.endpoint.add_fault(f"/{m.bucket}/*", 403)
    result = m.sync()
    assert result.code == 2, result
    lines = error_lines(result)
    assert len(lines) == 1 and "access denied" in lines[0] and m.bucket in lines[0], lines


def test_storage_backend_must_agree_with_the_location(bucket_mirror, tmp_path):
    m = bucket_mirror
    m.configure(storage_backend="filesystem")
    result = m.sync("--dry-run")
    assert result.code == 2 and "storage_backend is filesystem" in result.err, result
    m.configure(mirror_dir=str(tmp_path / "folder"), storage_backend="s3")
    result = m.sync("--dry-run")
    assert result.code == 2 and "storage_backend is s3" in result.err, result
    m.configure(keep_index_versions=2)
    result = m.sync("--dry-run")
    assert result.code == 2 and "keep_index_versions" in result.err, result


def test_bandersnatch_config_with_storage_backend_s3(bucket_mirror, upstream, tmp_path):
    m = bucket_mirror
    m.config.write_text("")
    conf = tmp_path / "bandersnatch.conf"
    conf.write_text(f"""\
[mirror]
directory = /{m.bucket}/{PREFIX}/pypi
master = {upstream.url}
storage-backend = s3
workers = 2
timeout = 5

[s3]
region_name = {REGION}
endpoint_url = {m.endpoint.url}
signature_version = s3v4
""")
    result = m.sync("--bandersnatch-config", conf, "--retries", "1")
    assert result.code == 0, result
    assert m.page("alpha")["name"] == "alpha"
    assert "pypi/web/simple/index.html" in m.objects()
    show = m.sync("--bandersnatch-config", conf, "--show")
    assert f"mirror_dir: s3://{m.bucket}/{PREFIX}  # --bandersnatch-config" in show.out
    assert f"# The tree: s3://{m.bucket}/{PREFIX}/pypi/web/ (served as /pypi/simple/)" \
        in show.out


def test_the_journal_keeps_what_a_killed_run_published(tmp_path):
    """A run killed before it saved its inventory: the next one replays the journal, so
    its conditional writes still carry the ETags the bucket has."""
    from cas_mirror.pypi.inventory import Inventory, entry

    first = Inventory.load(tmp_path)
    first.put("web/simple/index.html", entry(10, "ab" * 32, '"etag-1"'))
    first.put("web/simple/gone/index.html", entry(5, "cd" * 32, '"etag-2"'))
    first.drop("web/simple/gone/index.html")  # ... and the process dies here
    again = Inventory.load(tmp_path)
    assert again.get("web/simple/index.html") == entry(10, "ab" * 32, '"etag-1"')
    assert again.get("web/simple/gone/index.html") is None
    again.save()
    assert not (tmp_path / "published.journal").exists()
    assert Inventory.load(tmp_path).entries == again.entries


def test_deletions_come_after_the_pages_that_dropped_them(bucket_mirror, upstream):
    m = bucket_mirror
    upstream.add("beta", "0.6", kinds=("sdist",))
    assert m.sync().code == 0
    old = upstream.find("beta-0.5.tar.gz")[1]
    gamma = [f"pypi/web/packages/{f.relpath}" for f in upstream.projects["gamma"].files]
    upstream.remove_file("beta-0.5.tar.gz")
    upstream.remove_project("gamma")
    m.endpoint.clear()
    assert m.sync().code == 0
    # (the storage layer deletes with DeleteObjects: POST /<bucket>?delete)
    writes = [("DELETE" if r.method == "POST" and "delete" in r.query else r.method,
               r.path.split("/", 2)[-1]) for r in m.endpoint.requests
              if r.method in ("PUT", "DELETE", "POST")]
    puts = [key for method, key in writes if method == "PUT"]
    first_delete = next(i for i, (method, _) in enumerate(writes) if method == "DELETE")
    assert puts.index(f"{PREFIX}/pypi/web/simple/beta/index.v1_json") \
        < puts.index(f"{PREFIX}/pypi/web/simple/index.v1_json")
    assert writes[first_delete - 1] == ("PUT", f"{PREFIX}/pypi/web/simple/index.v1_json")
    assert all(method == "DELETE" for method, _ in writes[first_delete:])
    objects = m.objects()
    assert f"pypi/web/packages/{old.relpath}" not in objects
    assert not set(gamma) & set(objects)
    assert not [k for k in objects if "/simple/gamma/" in k]
