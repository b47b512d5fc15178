"""The storage layer (cas_mirror/storage): one contract, checked on a local folder and on
a real S3 API on 127.0.0.1 (moto's server behind the recording proxy of tests/support/s3.py),
plus what only a bucket has: multipart uploads, retries, access errors, credentials."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cas_mirror.errors import EXIT_LOCKED, EXIT_PARTIAL, EXIT_USAGE
from cas_mirror.storage import (
    NEW,
    Conflict,
    S3Settings,
    StorageAccessError,
    StorageError,
    open_storage,
    parse_bucket_url,
)
from cas_mirror.storage.s3 import MULTIPART_CHUNK
from tests.support.s3 import (  # noqa: F401 - fixtures
    ACCESS_KEY,
    SECRET_KEY,
    s3_credentials,
    s3_endpoint,
)

pytestmark = pytest.mark.usefixtures("s3_credentials")


def settings(endpoint, **kwargs) -> S3Settings:
    return S3Settings(endpoint_url=endpoint.url, region="us-east-1", **kwargs)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, s3_endpoint):  # noqa: F811
    if request.param == "local":
        return open_storage(str(tmp_path / "tree"))
    bucket = s3_endpoint.new_bucket()
    return open_storage(f"s3://{bucket}/mirror", settings(s3_endpoint))


def test_contract_write_read_list_delete(storage, tmp_path):
    source = tmp_path / "pkg.conda"
    source.write_bytes(b"package bytes")
    storage.put_file("main/linux-64/pkg.conda", source)
    storage.put_bytes("main/linux-64/repodata.json", b"{}")
    storage.put_bytes("main/noarch/repodata.json", b"{}")

    data, info = storage.read("main/linux-64/pkg.conda")
    assert data == b"package bytes" and info.size == 13 and info.etag
    assert storage.head("main/linux-64/pkg.conda").etag == info.etag
    assert storage.read("main/linux-64/missing") is None
    assert storage.head("main/linux-64/missing") is None
    assert [o.key for o in storage.list("main/linux-64")] == [
        "main/linux-64/pkg.conda", "main/linux-64/repodata.json"]
    assert storage.has_any("main/linux-64/") and not storage.has_any("main/linux")
    folder = storage.list_folder("main/")
    assert folder.folders == ["linux-64", "noarch"] and folder.objects == []

    storage.delete("main/linux-64/pkg.conda")
    storage.delete("main/linux-64/pkg.conda")  # missing: not an error
    assert [o.key for o in storage.list("main")] == [
        "main/linux-64/repodata.json", "main/noarch/repodata.json"]


def test_contract_conditional_writes(storage):
    first = storage.put_bytes("c/channeldata.json", b"one", expect=NEW)
    with pytest.raises(Conflict) as created_twice:
        storage.put_bytes("c/channeldata.json", b"two", expect=NEW)
    assert created_twice.value.exit_code == EXIT_LOCKED
    assert "another writer" in str(created_twice.value)

    second = storage.put_bytes("c/channeldata.json", b"two", expect=first.etag)
    assert storage.read("c/channeldata.json")[0] == b"two"
    with pytest.raises(Conflict):  # the ETag read before the other writer's change
        storage.put_bytes("c/channeldata.json", b"three", expect=first.etag)
    assert storage.read("c/channeldata.json")[0] == b"two"
    storage.put_bytes("c/channeldata.json", b"three", expect=second.etag)
    assert storage.read("c/channeldata.json")[0] == b"three"


def test_contract_ranged_async_read(storage):
    storage.put_bytes("f/file.bin", bytes(range(200)))

    async def read(start=None, end=None):
        body = await storage.get_async("f/file.bin", start, end)
        return body.start, body.length, b"".join([c async for c in body.chunks])

    assert asyncio.run(read()) == (0, 200, bytes(range(200)))
    assert asyncio.run(read(10, 19)) == (10, 10, bytes(range(10, 20)))
    assert asyncio.run(storage.get_async("f/none")) is None


def test_moto_honours_put_preconditions(s3_endpoint):  # noqa: F811
    """The conflict tests rely on the endpoint's own If-None-Match / If-Match checks: see
    that the requests really carry them and that the endpoint answers 412."""
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}", settings(s3_endpoint))
    store.put_bytes("k", b"1", expect=NEW)
    s3_endpoint.requests.clear()
    with pytest.raises(Conflict):
        store.put_bytes("k", b"2", expect=NEW)
    with pytest.raises(Conflict):
        store.put_bytes("k", b"2", expect='"0123"')
    assert [(r.method, r.path) for r in s3_endpoint.requests] == [
        ("PUT", f"/{bucket}/k"), ("PUT", f"/{bucket}/k")]
    assert store.read("k")[0] == b"1"


def test_large_file_goes_as_multipart_upload(s3_endpoint, tmp_path):  # noqa: F811
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}/p", settings(s3_endpoint))
    big = tmp_path / "big.conda"
    data = os.urandom(MULTIPART_CHUNK + 1000)
    big.write_bytes(data)
    s3_endpoint.requests.clear()
    info = store.put_file("ch/linux-64/big.conda", big)
    assert info.size == len(data)
    assert any(r.method == "POST" and "uploads" in r.query for r in s3_endpoint.requests)
    assert store.read("ch/linux-64/big.conda")[0] == data
    # Parts are never visible as objects, only the completed upload.
    assert [o.key for o in store.list("")] == ["ch/linux-64/big.conda"]


def test_slow_down_is_retried(s3_endpoint):  # noqa: F811
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}", settings(s3_endpoint))
    s3_endpoint.add_fault(f"/{bucket}/a.json", 503, method="PUT", times=2)
    try:
        store.put_bytes("a.json", b"x")
    finally:
        s3_endpoint.clear()
    assert store.read("a.json")[0] == b"x"


def test_endpoint_failing_for_good_is_one_clear_error(s3_endpoint):  # noqa: F811
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}/m", settings(s3_endpoint, retries=1, timeout=5))
    s3_endpoint.add_fault(f"/{bucket}/m/a.json", 500)
    try:
        with pytest.raises(StorageError) as failed:
            store.put_bytes("a.json", b"x")
    finally:
        s3_endpoint.clear()
    message = str(failed.value)
    assert failed.value.exit_code == EXIT_PARTIAL
    assert message == (f"cannot write s3://{bucket}/m/a.json: HTTP 500 Internal Server Error, "
                       "InternalError (after 1 retries)")


def test_access_denied_names_the_credentials(s3_endpoint):  # noqa: F811
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}", settings(s3_endpoint, retries=0))
    s3_endpoint.add_fault(f"/{bucket}*", 403)
    try:
        with pytest.raises(StorageAccessError) as denied:
            store.head("a.json")
    finally:
        s3_endpoint.clear()
    assert denied.value.exit_code == EXIT_USAGE
    assert "access denied" in str(denied.value) and "credentials" in str(denied.value)


def test_missing_bucket_is_named(s3_endpoint):  # noqa: F811
    store = open_storage("s3://no-such-bucket-here/x", settings(s3_endpoint, retries=0))
    with pytest.raises(StorageAccessError, match="'no-such-bucket-here' does not exist"):
        store.read("a.json")
    with pytest.raises(StorageAccessError, match="'no-such-bucket-here' does not exist"):
        store.check_access()


def test_credentials_from_a_profile_in_the_shared_files(s3_endpoint, tmp_path,  # noqa: F811
                                                        monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageAccessError, match="no AWS credentials found"):
        open_storage("s3://b", settings(s3_endpoint))
    shared = tmp_path / "aws-credentials"
    shared.write_text(f"[mirror]\naws_access_key_id = {ACCESS_KEY}\n"
                      f"aws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    with pytest.raises(StorageAccessError, match="profile 'other' is not in"):
        open_storage("s3://b", settings(s3_endpoint, profile="other"))
    bucket = s3_endpoint.new_bucket()
    store = open_storage(f"s3://{bucket}", settings(s3_endpoint, profile="mirror"))
    store.put_bytes("k", b"v")
    assert store.read("k")[0] == b"v"


@pytest.mark.parametrize("text", ["s3://", "s3:///x", "s3://b/a//c", "s3://b/../c"])
def test_bad_bucket_urls(text):
    with pytest.raises(StorageAccessError.__mro__[1], match="mirror_dir: "):
        parse_bucket_url(text, "mirror_dir")


def test_local_writes_leave_no_temporary_files(tmp_path):
    store = open_storage(str(tmp_path / "t"))
    store.put_bytes("a/b.json", b"1")
    store.put_file("a/c.bin", Path(__file__))
    assert sorted(os.listdir(tmp_path / "t" / "a")) == ["b.json", "c.bin"]


def test_a_bad_bucket_mirror_dir_is_refused_in_one_line(isolated_config, run_cli, tmp_path):
    from cas_mirror.cli import main as cas_sync_main

    isolated_config.write_user("mirror_dir: s3://bucket/../mirror\n")
    result = run_cli(cas_sync_main, ["--dry-run"])
    assert result.code == 2
    assert "mirror_dir" in result.err and "'..' are not allowed" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "s3:").exists()
