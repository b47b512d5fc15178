"""The caching proxy's conda side against a real upstream channel on 127.0.0.1 (the
fault-injecting test server) and py-rattler: filtered repodata and its variants and
shards, verified packages, one upstream fetch for many clients, Range while caching,
faults (corrupt, truncated, 500, slow), stale metadata with upstream stopped, and the
LRU bound across a restart."""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import zstandard

from cas_index.shards import SHARD_INDEX, decode_index
from cas_mirror.net import part_path
from tests.support.cas_server import CasServer, server_env
from tests.support.clients import rattler_install
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.http_server import TestHTTPServer
from tests.support.mounts import PAGE, Mounts, free_bytes

SPECS = [
    PkgSpec("app", subdir="linux-64", depends=["lib >=2"], fmt=".tar.bz2"),
    PkgSpec("lib", version="1.0"),
    PkgSpec("lib", version="2.1", payload_size=2048),
    PkgSpec("gplthing", license="GPL-3.0-only", license_family="GPL"),
    PkgSpec("gplok", license="GPL-2.0-or-later", license_family="GPL"),
    PkgSpec("big", payload_size=3_000_000),
    *(PkgSpec(f"fault{n}", payload_size=200_000) for n in range(6)),
]


def config_text(upstream: str, extra: str = "", ttl: str = "600") -> str:
    return (f"timeout: 2\ncache_proxy:\n  metadata_ttl: {ttl}\n{extra}"
            f"  channels:\n    - {{upstream: '{upstream}', path: proxy/up,\n"
            "       license_blacklist: [GPL], whitelist: [gplok]}\n")


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    return build_channel(root / "chan", SPECS)


@pytest.fixture(scope="module")
def upstream(channel):
    with TestHTTPServer(channel.root) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(channel, upstream, tmp_path_factory):
    work = tmp_path_factory.mktemp("proxy")
    config = work / "proxy.yaml"
    config.write_text(config_text(upstream.url))
    (work / "root").mkdir()
    server = CasServer(work / "root", work / "logs", "-f", str(config))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_faults(upstream):
    yield
    upstream.clear_faults()


def poll(read, done, deadline_s: float = 10.0):
    """`read()` once `done` says so (evictions happen just after the response)."""
    deadline = time.monotonic() + deadline_s
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.02)  # poll interval, bounded by the deadline
    return value


def package_bytes(channel, subdir: str, fn: str) -> bytes:
    return (channel.root / subdir / fn).read_bytes()


def upstream_gets(upstream, fn: str) -> int:
    return sum(1 for p in upstream.paths("GET") if p.endswith("/" + fn))


def test_repodata_filtered_with_variants_shards_and_cache_marks(proxy, upstream):
    url = f"{proxy.url}/proxy/up/noarch/repodata.json"
    first = requests.get(url, timeout=10)
    assert first.status_code == 200
    doc = first.json()
    names = {r["name"] for r in doc["packages.conda"].values()}
    assert "gplthing" not in names and {"lib", "gplok", "big"} <= names  # whitelist wins
    assert "base_url" not in doc.get("info", {})
    zst = requests.get(url + ".zst", timeout=10).content
    assert json.loads(zstandard.ZstdDecompressor().decompress(zst, 10**8)) == doc
    assert json.loads(bz2.decompress(requests.get(url + ".bz2", timeout=10).content)) == doc
    index = decode_index(requests.get(f"{proxy.url}/proxy/up/noarch/{SHARD_INDEX}",
                                      timeout=10).content)
    assert "gplthing" not in index["shards"] and "lib" in index["shards"]
    shard = requests.get(f"{proxy.url}/proxy/up/noarch/shards/"
                         f"{index['shards']['lib'].hex()}.msgpack.zst", timeout=10)
    assert shard.status_code == 200
    assert upstream.paths("GET").count("/noarch/repodata.json") == 1  # one fetch, then cache
    log = proxy.wait_for_log("repodata.json.bz2")
    assert '"GET /proxy/up/noarch/repodata.json HTTP/1.1" 200' in log
    assert " MISS\n" in log and " HIT\n" in log
    assert f"caching proxy (cache {proxy.root}/.cas-proxy): {proxy.url}/proxy/up <- " in log


def test_filtered_package_is_refused_even_by_url(proxy, upstream):
    response = requests.get(f"{proxy.url}/proxy/up/noarch/gplthing-1.0-0.conda", timeout=10)
    assert response.status_code == 403
    assert "license_blacklist" in response.text and len(response.text.splitlines()) == 2
    assert upstream_gets(upstream, "gplthing-1.0-0.conda") == 0
    assert requests.get(f"{proxy.url}/proxy/up/noarch/nothere-1.0-0.conda",
                        timeout=10).status_code == 404


def test_fifty_clients_on_one_missing_file_make_one_upstream_fetch(proxy, upstream, channel):
    fn = "big-1.0-0.conda"
    want = package_bytes(channel, "noarch", fn)
    # Upstream holds the body back a moment, so every client arrives while it is fetched.
    upstream.add_fault(f"*/{fn}", delay=0.5, times=1)
    results: list[bytes | Exception] = []
    lock = threading.Lock()

    def fetch() -> None:
        try:
            body = requests.get(f"{proxy.url}/proxy/up/noarch/{fn}", timeout=30).content
        except requests.RequestException as exc:  # recorded: the assertion shows it
            body = exc
        with lock:
            results.append(body)

    threads = [threading.Thread(target=fetch) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 50
    assert all(r == want for r in results), [type(r) for r in results if r != want][:3]
    assert upstream_gets(upstream, fn) == 1


def test_range_on_a_file_being_cached(proxy, upstream, channel):
    fn = "fault0-1.0-0.conda"
    want = package_bytes(channel, "noarch", fn)
    upstream.add_fault(f"*/{fn}", stall=0.5, stall_after=1000, times=1)
    url = f"{proxy.url}/proxy/up/noarch/{fn}"
    whole: list[bytes] = []
    reader = threading.Thread(target=lambda: whole.append(requests.get(url, timeout=30).content))
    reader.start()
    part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
    reader.join()
    assert part.status_code == 206 and part.content == want[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(want)}"
    assert whole == [want]
    assert upstream_gets(upstream, fn) == 1


@pytest.mark.parametrize(("number", "fault"), [(1, {"corrupt": True}), (2, {"truncate": 5000})])
def test_corrupt_or_truncated_body_is_never_cached_and_breaks_the_connection(
        proxy, upstream, channel, number, fault):
    fn = f"fault{number}-1.0-0.conda"
    upstream.add_fault(f"*/{fn}", times=1, **fault)
    url = f"{proxy.url}/proxy/up/noarch/{fn}"
    # The client sees a broken connection when it got part of the body, or a 502 when the
    # transfer failed before anything was sent: never a 200 with the whole (bad) body.
    try:
        response = requests.get(url, timeout=30)
    except requests.exceptions.ChunkedEncodingError:
        pass
    else:
        assert response.status_code == 502, response.status_code
    cache = Path(proxy.root) / ".cas-proxy" / "files" / "proxy" / "up" / "noarch"
    assert not (cache / fn).exists()
    assert not list(cache.glob(f".{fn}.part"))
    again = requests.get(url, timeout=30)
    assert again.status_code == 200 and again.content == package_bytes(channel, "noarch", fn)
    # the client's last byte goes once the body is verified; the entry is renamed just after
    assert poll((cache / fn).exists, bool)


@pytest.mark.slow
def test_500_and_slow_upstream_give_502_and_504_for_what_was_never_cached(proxy, upstream,
                                                                          channel):
    fn = "fault3-1.0-0.conda"
    upstream.add_fault(f"*/{fn}", status=500)
    failed = requests.get(f"{proxy.url}/proxy/up/noarch/{fn}", timeout=30)
    assert failed.status_code == 502 and "HTTP 500" in failed.text
    upstream.clear_faults()
    slow = "fault4-1.0-0.conda"
    upstream.add_fault(f"*/{slow}", delay=5)  # the proxy's timeout is 2 s
    timed_out = requests.get(f"{proxy.url}/proxy/up/noarch/{slow}", timeout=30)
    assert timed_out.status_code == 504 and "timed out" in timed_out.text
    upstream.clear_faults()
    upstream.add_fault("/linux-aarch64/repodata.json", delay=5)
    never = requests.get(f"{proxy.url}/proxy/up/linux-aarch64/repodata.json", timeout=30)
    assert never.status_code == 504 and "timed out" in never.text
    upstream.add_fault("/osx-64/repodata.json", status=503)
    assert requests.get(f"{proxy.url}/proxy/up/osx-64/repodata.json",
                        timeout=30).status_code == 502


@pytest.mark.slow
def test_rattler_installs_then_again_from_cache_then_with_upstream_stopped(channel, tmp_path):
    upstream = TestHTTPServer(channel.root).start()
    (tmp_path / "root").mkdir()
    config = tmp_path / "proxy.yaml"
    config.write_text(config_text(upstream.url, ttl="0"))
    proxy = CasServer(tmp_path / "root", tmp_path / "logs", "-f", str(config))
    try:
        channel_url = f"{proxy.url}/proxy/up"
        first = rattler_install([channel_url], ["app"], tmp_path / "p1")
        assert first == ["app-1.0-0.tar.bz2", "lib-2.1-0.conda"]
        assert (tmp_path / "p1" / "share/lib/data.bin").stat().st_size == 2048
        upstream.clear_log()
        # the second client reads the proxy's CEP-16 shards instead of repodata.json
        assert rattler_install([channel_url], ["app"], tmp_path / "p2", sharded=True) == first
        assert "GET /proxy/up/noarch/shards/" in proxy.wait_for_log("/shards/")
        assert [p for p in upstream.paths() if p.endswith((".conda", ".tar.bz2"))] == []
        assert any(r.path.endswith("repodata.json") and "If-None-Match" in r.headers
                   for r in upstream.requests)  # ttl 0: revalidated, conditionally
        upstream.stop()
        # connections the stopped server still keeps alive are cut too
        upstream.add_fault("*", reset=True)
        again = rattler_install([channel_url], ["app"], tmp_path / "p3")
        assert again == first
        stale = requests.get(f"{channel_url}/noarch/repodata.json", timeout=10)
        assert stale.status_code == 200 and "Revalidation Failed" in stale.headers["warning"]
        log = proxy.wait_for_log("STALE")
        assert "upstream failed" in log and "serving the copy cached" in log
    finally:
        proxy.stop()
        upstream.stop()


@pytest.mark.slow
def test_cache_max_size_evicts_least_recently_used_and_survives_a_restart(channel, tmp_path):
    sizes = {n: len(package_bytes(channel, "noarch", f"fault{n}-1.0-0.conda")) for n in (3, 4, 5)}
    limit = sizes[3] + sizes[4] + sizes[5] // 2  # room for two of the three
    (tmp_path / "root").mkdir()
    config = tmp_path / "proxy.yaml"
    with TestHTTPServer(channel.root) as upstream:
        config.write_text(config_text(upstream.url, extra=f"  cache_max_size: {limit}\n"))
        cache = tmp_path / "root" / ".cas-proxy" / "files" / "proxy" / "up" / "noarch"
        proxy = CasServer(tmp_path / "root", tmp_path / "logs", "-f", str(config))
        try:
            base = f"{proxy.url}/proxy/up/noarch"
            for n in (3, 4):
                assert requests.get(f"{base}/fault{n}-1.0-0.conda", timeout=30).ok
                assert poll(lambda n=n: (cache / f"fault{n}-1.0-0.conda").exists(), bool)
            # the last access is the atime: make fault4 the least recently used
            os.utime(cache / "fault4-1.0-0.conda", (1_000_000, 1_000_000))
            assert requests.get(f"{base}/fault5-1.0-0.conda", timeout=30).ok
            left = poll(lambda: sorted(p.name for p in cache.glob("*.conda")),
                        lambda names: names == ["fault3-1.0-0.conda", "fault5-1.0-0.conda"])
            assert left == ["fault3-1.0-0.conda", "fault5-1.0-0.conda"]
        finally:
            proxy.stop()
        upstream.clear_log()
        restarted = CasServer(tmp_path / "root", tmp_path / "logs", "-f", str(config))
        try:
            body = requests.get(f"{restarted.url}/proxy/up/noarch/fault3-1.0-0.conda",
                                timeout=30).content
            assert hashlib.sha256(body).hexdigest() == hashlib.sha256(
                package_bytes(channel, "noarch", "fault3-1.0-0.conda")).hexdigest()
            assert upstream_gets(upstream, "fault3-1.0-0.conda") == 0
        finally:
            restarted.stop()
    stats = subprocess.run([sys.executable, "-m", "cas_mirror.server", "proxy-stats", "-f",
                            str(config), "--root", str(tmp_path / "root")],
                           capture_output=True, text=True, env=server_env(tmp_path),
                           timeout=60, check=False)
    assert stats.returncode == 0, stats.stderr
    assert "evictions            1\n" in stats.stdout and "hits                 1\n" in stats.stdout


def test_a_cache_that_cannot_be_written_serves_packages_uncached(proxy, upstream, channel):
    cache = Path(proxy.root) / ".cas-proxy"
    (cache / "meta" / "proxy" / "up").mkdir(parents=True, exist_ok=True)
    (cache / "meta" / "proxy" / "up" / "win-64").write_text("in the way")
    metadata = requests.get(f"{proxy.url}/proxy/up/win-64/repodata.json", timeout=10)
    assert metadata.status_code == 502 and "cannot write the cache" in metadata.text
    assert requests.get(f"{proxy.url}/proxy/up/linux-64/repodata.json", timeout=10).ok
    (cache / "files" / "proxy" / "up").mkdir(parents=True, exist_ok=True)
    (cache / "files" / "proxy" / "up" / "linux-64").write_text("in the way")
    fn = "app-1.0-0.tar.bz2"
    url = f"{proxy.url}/proxy/up/linux-64/{fn}"
    # a GET is still served, straight from upstream and verified, with one warning line
    package = requests.get(url, timeout=10)
    assert package.status_code == 200 and package.content == package_bytes(channel,
                                                                            "linux-64", fn)
    warnings = [line for line in proxy.log().splitlines() if "serving it uncached" in line]
    assert len(warnings) == 1 and fn in warnings[0], warnings
    # a HEAD (or Range) needs the cached entry: a one-line 502
    head = requests.head(url, timeout=10)
    assert head.status_code == 502
    ranged = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert ranged.status_code == 502 and "cannot write the cache" in ranged.text
    assert len(ranged.text.splitlines()) == 2
    assert upstream_gets(upstream, fn) == 1
    assert "Traceback" not in proxy.log(), proxy.log()[-2500:]


def test_head_of_an_uncached_package_and_other_methods(proxy, upstream, channel):
    fn = "lib-1.0-0.conda"
    url = f"{proxy.url}/proxy/up/noarch/{fn}"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(package_bytes(channel, "noarch", fn))
    assert requests.get(url, timeout=30).content == package_bytes(channel, "noarch", fn)
    assert upstream_gets(upstream, fn) == 1  # HEAD cached it; the GET was a hit
    assert requests.post(url, data=b"x", timeout=30).status_code == 405


def test_a_disk_that_fills_up_mid_transfer_still_serves_the_client(channel, upstream,
                                                                   tmp_path):
    """The cache on a 1 MiB tmpfs and a 3 MB package: the write fails part-way (ENOSPC);
    the client still gets the whole verified file, the log says so in one line, and no
    entry or partial file is left."""
    mounts = Mounts()
    try:
        disk = mounts.tmpfs(tmp_path / "disk", 256 * PAGE)
        config = tmp_path / "proxy.yaml"
        config.write_text(config_text(upstream.url, extra=f"  cache_dir: {disk}\n"))
        (tmp_path / "root").mkdir()
        proxy = CasServer(tmp_path / "root", tmp_path / "logs", "-f", str(config))
        try:
            fn = "big-1.0-0.conda"
            want = package_bytes(channel, "noarch", fn)
            assert len(want) > 2 * free_bytes(disk)
            response = requests.get(f"{proxy.url}/proxy/up/noarch/{fn}", timeout=30)
            assert response.status_code == 200 and response.content == want
            folder = disk / "files" / "proxy" / "up" / "noarch"
            assert not (folder / fn).exists() and not part_path(folder / fn).exists()
            log = proxy.log()
            warnings = [line for line in log.splitlines() if fn in line and "cache" in line]
            assert len(warnings) == 1 and "disk" in warnings[0].lower(), warnings
            assert "Traceback" not in log, log[-2500:]
        finally:
            proxy.stop()
    finally:
        mounts.unmount_all()
