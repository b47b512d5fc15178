"""cas-index while the channel is served: readers never see a partial file, and a real
conda client (py-rattler) solves and installs freshly indexed internal packages over HTTP
from 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading

import requests
import zstandard

from cas_index.channel import Options, index_channel
from tests.support.conda_packages import PkgSpec, build_package


def test_concurrent_reader_never_sees_a_partial_repodata(make_channel, http_server):
    channel = make_channel([PkgSpec(f"seed{i}", subdir="linux-64", payload_size=64)
                            for i in range(30)], name="internal-pkgs")
    assert index_channel(channel.root).exit_code == 0
    server = http_server(channel.root.parent)
    folder = channel.root / "linux-64"
    url = f"{server.url}/internal-pkgs/linux-64/repodata.json"
    rounds = [30] + [3] * 12
    expected_last = 30 + sum(rounds)
    stop, saw_last = threading.Event(), threading.Event()
    failures: list[str] = []
    session = requests.Session()

    def over_http():  # what a client gets from the server
        return (session.get(url, timeout=10).content,
                session.get(url + ".zst", timeout=10).content)

    def from_disk():  # what a server would read: many more samples per second
        return (folder / "repodata.json").read_bytes(), (folder / "repodata.json.zst").read_bytes()

    def reader(fetch, seen):
        decompress = zstandard.ZstdDecompressor().decompress  # one per thread: not shareable
        while not stop.is_set():
            try:
                body, packed = fetch()
                doc = json.loads(body)
                json.loads(decompress(packed))
            except (ValueError, zstandard.ZstdError) as exc:
                failures.append(f"{fetch.__name__}: {type(exc).__name__}: {exc}")
                continue
            seen.append(len(doc["packages.conda"]))
            if fetch is over_http and seen[-1] == expected_last:
                saw_last.set()

    seen_http: list[int] = []
    seen_disk: list[int] = []
    threads = [threading.Thread(target=reader, args=args, daemon=True)
               for args in ((over_http, seen_http), (from_disk, seen_disk))]
    for thread in threads:
        thread.start()
    try:
        for round_, count in enumerate(rounds):  # round 0 is big enough for worker processes
            # build_package, not channel.add: the test builder rewrites repodata.json itself
            for i in range(count):
                build_package(PkgSpec(f"new{round_}-{i}", subdir="linux-64", payload_size=64),
                              folder)
            assert index_channel(channel.root, options=Options(threads=2)).exit_code == 0
        assert saw_last.wait(timeout=30), "the HTTP reader never saw the last index"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    for seen in (seen_http, seen_disk):
        assert len(set(seen)) > 3  # the readers saw several versions come and go
        assert seen == sorted(seen)  # each read was a whole document, old or new
    assert seen_http[-1] == expected_last


def _solve_and_install(url, specs, workdir):
    import rattler

    async def run():
        gateway = rattler.Gateway(cache_dir=workdir / "repodata-cache")
        records = await rattler.solve(sources=[url], specs=specs, gateway=gateway,
                                      platforms=["linux-64", "noarch"])
        await rattler.install(records, target_prefix=workdir / "prefix",
                              cache_dir=workdir / "package-cache", show_progress=False)
        return {r.name.normalized: str(r.version) for r in records}

    return asyncio.run(run())


def test_rattler_installs_a_freshly_indexed_internal_package(tmp_path, http_server):
    # the seed FAQ's layout: <mirror_dir>/internal-pkgs/<platform>/
    mirror = tmp_path / "mirror"
    channel = mirror / "internal-pkgs"
    build_package(PkgSpec("internal-lib", "2.0", payload_size=512), channel / "noarch")
    build_package(PkgSpec("internal-tool", "1.0", subdir="linux-64", fmt=".tar.bz2",
                          depends=["internal-lib >=2"], payload_size=512), channel / "linux-64")
    assert index_channel(channel).exit_code == 0
    server = http_server(mirror)
    url = f"{server.url}/internal-pkgs"

    first = tmp_path / "client1"
    assert _solve_and_install(url, ["internal-tool"], first) == {
        "internal-tool": "1.0", "internal-lib": "2.0"}
    assert (first / "prefix/share/internal-tool/data.bin").stat().st_size == 512
    assert (first / "prefix/conda-meta/internal-tool-1.0-0.json").is_file()

    # a new build dropped in while the channel is served, then indexed
    build_package(PkgSpec("internal-tool", "1.1", subdir="linux-64",
                          depends=["internal-lib >=2"], payload_size=256), channel / "linux-64")
    assert index_channel(channel).exit_code == 0
    second = tmp_path / "client2"
    assert _solve_and_install(url, ["internal-tool"], second)["internal-tool"] == "1.1"
    assert (second / "prefix/share/internal-tool/data.bin").stat().st_size == 256
    assert any(p.endswith("/internal-pkgs/linux-64/internal-tool-1.1-0.conda")
               for p in server.paths("GET"))
