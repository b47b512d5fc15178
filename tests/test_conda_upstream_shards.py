"""cas-sync reading a sharded upstream (CEP-16) shard by shard: a whitelist reads the
shard index and exactly its names' shards (never repodata.json), a no-op re-sync is one
304 per platform, a changed package costs only its shard, the published mirror is
byte-for-byte what the whole repodata.json gives, and hostile or broken shards fail the
platform with one line while its previous mirror stays published."""

from __future__ import annotations

import hashlib
import json
import os

import msgspec
import pytest
import zstandard

from cas_index.shard_files import write_shards
from cas_index.shards import (
    SHARD_INDEX,
    SHARDS_DIR,
    encode_index,
    index_content,
)
from tests.support.conda_mirror import SPECS, Mirror
from tests.support.conda_packages import PkgSpec, build_channel
from tests.test_conda_shards import install_delta_through_shards
from tests.test_index_shards import read_sharded

FILLER = [PkgSpec(f"filler{i}", "1.0", subdir="linux-64") for i in range(6)]
INDEX_PATH = f"/pkgs/main/linux-64/{SHARD_INDEX}"


def compact(doc: dict) -> bytes:
    """repodata.json as compact JSON with sorted record keys (so records re-encoded from
    shards are byte-identical to upstream's)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def shard_channel(root, subdirs) -> None:
    """Rewrite each subdir's repodata.json compactly and publish its shards beside it."""
    for subdir in subdirs:
        folder = root / subdir
        data = compact(json.loads((folder / "repodata.json").read_bytes()))
        (folder / "repodata.json").write_bytes(data)
        write_shards(folder, data, grace_seconds=0)


@pytest.fixture
def upstream(tmp_path, http_server):
    from types import SimpleNamespace

    root = tmp_path / "upstream"
    channel = build_channel(root / "pkgs/main", [*SPECS, *FILLER])
    shard_channel(channel.root, channel.repodata)
    server = http_server(root)
    return SimpleNamespace(root=root, channel=channel, server=server, url=server.url)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def shard_path(upstream, subdir: str, name: str) -> str:
    index = read_sharded(upstream.channel.root / subdir)[0]
    return f"/pkgs/main/{subdir}/{SHARDS_DIR}/{index['shards'][name].hex()}.msgpack.zst"


def gets(upstream, run_exports: bool = False) -> list[tuple[str, int]]:
    """The metadata requests upstream answered (run_exports.json's only when asked)."""
    return sorted((r.path, r.status) for r in upstream.server.requests if r.method == "GET"
                  and not r.path.endswith((".conda", ".tar.bz2"))
                  and (run_exports or "/run_exports.json" not in r.path))


def test_a_whitelist_reads_the_index_and_only_its_names_shards(mirror, upstream):
    mirror.configure(blacklist=["*"], whitelist=["alpha", "delta"])
    result = mirror.sync()
    assert result.code == 0, result
    assert gets(upstream) == sorted([
        (INDEX_PATH, 200), ("/pkgs/main/noarch/" + SHARD_INDEX, 200),
        (shard_path(upstream, "linux-64", "alpha"), 200),
        (shard_path(upstream, "linux-64", "delta"), 200)])
    assert not any("repodata.json" in p for p in upstream.server.paths())
    assert mirror.files("linux-64") == {"alpha-1.0-0.conda", "alpha-1.0-0.tar.bz2",
                                        "delta-1.0-0.conda"}
    assert mirror.records("linux-64") == {
        fn: r for fn, r in upstream.channel.records("linux-64").items()
        if r["name"] in ("alpha", "delta")}

    upstream.server.clear_log()  # nothing changed: one 304 per platform, no shard
    assert mirror.sync().code == 0
    assert gets(upstream, run_exports=True) == [("/pkgs/main/linux-64/" + SHARD_INDEX, 304),
                              ("/pkgs/main/noarch/" + SHARD_INDEX, 304)]

    upstream.channel.add([PkgSpec("alpha", "2.0", subdir="linux-64"),
                          PkgSpec("filler0", "2.0", subdir="linux-64")])
    shard_channel(upstream.channel.root, ["linux-64"])
    upstream.server.clear_log()  # alpha changed: its shard alone is fetched
    assert mirror.sync().code == 0
    assert gets(upstream) == sorted([(INDEX_PATH, 200), ("/pkgs/main/noarch/" + SHARD_INDEX, 304),
                                     (shard_path(upstream, "linux-64", "alpha"), 200)])
    assert "alpha-2.0-0.conda" in mirror.files("linux-64")
    cache = mirror.dir / ".cas-sync/channels/pkgs/main/linux-64/shards"
    assert sorted(p.name for p in cache.iterdir()) == sorted(  # bounded: what was read
        shard_path(upstream, "linux-64", n).rsplit("/", 1)[1] for n in ("alpha", "delta"))


def published(mirror) -> dict[str, bytes]:
    out = {}
    for platform in ("linux-64", "noarch"):
        folder = mirror.folder(platform)
        out[f"{platform}/repodata.json"] = (folder / "repodata.json").read_bytes()
        index, shards = read_sharded(folder)
        out[f"{platform}/shards"] = msgspec.msgpack.encode(
            [index["shards"], index["info"]["subdir"], shards])
    return out


@pytest.mark.parametrize("keys", [
    {},
    {"blacklist": ["beta", "filler*"]},
    {"license_blacklist": ["GPL"], "blacklist": ["alpha >=1"]},
    {"blacklist": ["*"], "whitelist": ["delta"]},
])
def test_sharded_and_whole_upstream_publish_the_same_mirror(tmp_path, isolated_config,
                                                            upstream, run_cli, keys):
    via_shards = Mirror(tmp_path / "m1", isolated_config.user, run_cli, upstream)
    via_shards.configure(**keys)
    first = via_shards.sync("--json")
    assert first.code == 0, first
    assert any(SHARD_INDEX in p for p in upstream.server.paths())
    upstream.server.clear_log()
    upstream.server.add_fault(f"*/{SHARD_INDEX}", status=404)  # hide the shards
    whole = Mirror(tmp_path / "m2", isolated_config.user, run_cli, upstream)
    whole.configure(**keys)
    second = whole.sync("--json")
    assert second.code == 0, second
    assert any(p.endswith("repodata.json.zst") or p.endswith("repodata.json")
               for p in upstream.server.paths())
    assert published(via_shards) == published(whole)

    def warnings(result):
        return [(p["platform"], p["unsatisfied"]) for p in json.loads(result.out)["platforms"]]

    assert warnings(first) == warnings(second)  # the dependency check agrees too


def test_dependency_warnings_count_names_whose_shards_were_not_read(mirror):
    mirror.configure(blacklist=["*"], whitelist=["delta"])
    result = mirror.sync("--json")
    assert result.code == 0, result
    linux = next(p for p in json.loads(result.out)["platforms"] if p["platform"] == "linux-64")
    assert [(u["file"], u["missing"]) for u in linux["unsatisfied"]] == [
        ("delta-1.0-0.conda", ["alpha", "gamma"])]


def test_dry_run_and_explain_read_shards_and_write_nothing(mirror, upstream):
    mirror.configure(blacklist=["*"], whitelist=["alpha"])
    dry = mirror.sync("--dry-run")
    assert dry.code == 0, dry
    assert "alpha-1.0-0.conda" in dry.out and "delta" not in dry.out
    assert not mirror.dir.exists()
    explained = mirror.sync("--explain", "alpha")
    assert explained.code == 0, explained
    assert "alpha-1.0-0.tar.bz2" in explained.out and "whitelist" in explained.out
    assert not mirror.dir.exists()
    assert not any("repodata.json" in p for p in upstream.server.paths())


def test_upstream_shards_false_reads_the_whole_document(mirror, upstream):
    mirror.configure(upstream_shards=False, blacklist=["*"], whitelist=["alpha"])
    assert mirror.sync().code == 0
    assert not any(SHARD_INDEX in p or f"/{SHARDS_DIR}/" in p
                   for p in upstream.server.paths())


def test_turning_upstream_shards_off_after_a_sharded_run(mirror, upstream):
    mirror.configure(blacklist=["*"], whitelist=["alpha"])
    assert mirror.sync().code == 0
    before = mirror.repodata("linux-64")
    cache = mirror.dir / ".cas-sync/channels/pkgs/main/linux-64/shards"
    assert cache.is_dir()
    upstream.server.clear_log()
    mirror.configure(upstream_shards=False, blacklist=["*"], whitelist=["alpha"])
    result = mirror.sync()
    assert result.code == 0, result
    assert not any(SHARD_INDEX in p for p in upstream.server.paths())
    assert "/pkgs/main/linux-64/repodata.json.zst" in upstream.server.paths() or \
        "/pkgs/main/linux-64/repodata.json" in upstream.server.paths()
    assert mirror.repodata("linux-64") == before
    assert not cache.exists()  # the shard cache goes with the sharded reading


def test_a_platform_read_whole_looks_for_shards_when_its_repodata_changes(
        mirror, upstream):
    upstream.server.add_fault(f"*/{SHARD_INDEX}", status=404)
    assert mirror.sync().code == 0
    upstream.server.clear_faults()
    upstream.server.clear_log()
    assert mirror.sync().code == 0  # unchanged: one 304, no probing
    assert gets(upstream, run_exports=True) == [("/pkgs/main/linux-64/repodata.json", 304),
                              ("/pkgs/main/noarch/repodata.json", 304)]
    upstream.channel.add([PkgSpec("alpha", "2.0", subdir="linux-64")])
    shard_channel(upstream.channel.root, ["linux-64"])
    assert mirror.sync().code == 0
    upstream.server.clear_log()
    assert mirror.sync().code == 0  # from now on the shards
    assert (INDEX_PATH, 304) in gets(upstream)


def test_a_damaged_shard_cache_is_detected_and_read_again(mirror, upstream):
    mirror.configure(blacklist=["*"], whitelist=["alpha"])
    assert mirror.sync().code == 0
    cache = mirror.dir / ".cas-sync/channels/pkgs/main/linux-64/shards"
    (shard,) = cache.iterdir()
    shard.write_bytes(b"torn")
    (cache / ".left-by-a-killed-run.part").write_bytes(b"x")
    upstream.server.clear_log()
    # (a plain run has nothing to do and reads no shard: quiet.py; --verify reads them)
    assert mirror.sync("--verify").code == 0
    assert (shard_path(upstream, "linux-64", "alpha"), 200) in gets(upstream)
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == shard.name[:64]
    assert [p.name for p in cache.iterdir()] == [shard.name]


# ------------------------------------------------------------------ hostile or broken


def serve_index(upstream, shards: dict[str, bytes]) -> None:
    """Make upstream's linux-64 shard index name `shards` (name -> raw 32-byte hash)."""
    content = index_content({n: h.hex() for n, h in shards.items()}, subdir="linux-64")
    (upstream.channel.root / "linux-64" / SHARD_INDEX).write_bytes(encode_index(content, 0))


def serve_shard(upstream, name: str, payload: dict | bytes) -> bytes:
    """Add a shard (msgpack of `payload`, or raw compressed bytes) to the served index."""
    folder = upstream.channel.root / "linux-64"
    packed = payload if isinstance(payload, bytes) else \
        zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(payload))
    digest = hashlib.sha256(packed).digest()
    (folder / SHARDS_DIR / f"{digest.hex()}.msgpack.zst").write_bytes(packed)
    index = read_sharded(folder)[0]["shards"]
    serve_index(upstream, {**index, name: digest})
    return digest


def assert_platform_failed(mirror, result, before: bytes, *texts: str) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if "linux-64" in line]
    assert len(lines) == 1, result.err
    for text in texts:
        assert text in lines[0], lines[0]
    assert (mirror.folder("linux-64") / "repodata.json").read_bytes() == before


@pytest.fixture
def synced(mirror):
    assert mirror.sync().code == 0
    return (mirror.folder("linux-64") / "repodata.json").read_bytes()


def test_a_shard_not_hashing_to_its_name_is_refused(mirror, upstream, synced):
    upstream.channel.add([PkgSpec("alpha", "2.0", subdir="linux-64")])
    shard_channel(upstream.channel.root, ["linux-64"])
    path = shard_path(upstream, "linux-64", "alpha")
    upstream.server.add_fault(path, corrupt=True)
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "sha256 mismatch", path)


def test_a_shard_index_naming_thousands_of_missing_shards_is_one_line(mirror, upstream,
                                                                      synced):
    serve_index(upstream, {f"ghost{i}": hashlib.sha256(b"%d" % i).digest()
                           for i in range(2000)})
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced,
                           "2000 shards of 2000 could not be fetched: HTTP 404")


def test_shard_decompression_is_bounded(mirror, upstream, synced):
    bomb = zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(
        {"packages": {}, "packages.conda": {}, "removed": ["x" * 64] * 20_000}))
    serve_shard(upstream, "bomb", bomb)
    mirror.configure(max_repodata_size=1_000_000)
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "max_repodata_size", "/shards/")


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-length"])
def test_a_shard_larger_than_the_limit_is_not_downloaded(mirror, upstream, synced, announced):
    digest = serve_shard(upstream, "huge", os.urandom(3_000_000))
    if not announced:  # found out while receiving: the transfer stops at the limit
        upstream.server.add_fault(f"*{digest.hex()}*", no_length=True)
    mirror.configure(max_repodata_size=1_000_000)
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "larger than the limit of 1000000 bytes",
                           "max_repodata_size", digest.hex())
    leftovers = [p for p in mirror.dir.rglob("*") if p.is_file() and p.stat().st_size > 1e6]
    assert leftovers == []


@pytest.mark.parametrize("payload", [
    {"packages": [1, 2], "packages.conda": {}},
    {"packages": {"a-1-0.tar.bz2": "not a record"}},
    {"removed": "everything"},
])
def test_a_shard_of_the_wrong_types_is_one_line_naming_its_url(mirror, upstream, synced,
                                                               payload):
    digest = serve_shard(upstream, "odd", payload)
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "malformed shard", digest.hex())


@pytest.mark.parametrize("index", [
    {"version": 1, "info": {}, "shards": {"alpha": "0" * 64}},
    {"version": 1, "info": {"base_url": 5}, "shards": {}},
    {"version": 1, "info": {}, "shards": {"alpha": b"short"}},
    [1, 2, 3],
])
def test_a_shard_index_of_the_wrong_types_is_one_line_naming_its_url(mirror, upstream,
                                                                     synced, index):
    (upstream.channel.root / "linux-64" / SHARD_INDEX).write_bytes(
        zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(index)))
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "malformed shard index", INDEX_PATH)


def test_hostile_names_in_shards_are_refused(mirror, upstream, synced):
    record = {"name": "evil", "version": "1.0", "build": "0", "size": 1,
              "sha256": b"\0" * 32, "subdir": "linux-64"}
    serve_shard(upstream, "evil", {"packages.conda": {
        "../../evil-1.0-0.conda": record, "evil-1.0-0.conda": {**record, "name": "alpha"}}})
    result = mirror.sync("--json")
    summary = json.loads(result.out)
    linux = next(p for p in summary["platforms"] if p["platform"] == "linux-64")
    failed = {f["item"]: f["error"] for f in linux["failures"]}
    assert "not a plain package file name" in failed["../../evil-1.0-0.conda"]
    assert "names 'alpha'" in failed["evil-1.0-0.conda"]
    assert result.code == 1  # refused records are failures, the rest is published
    assert not (mirror.dir / "pkgs/evil-1.0-0.conda").exists()
    assert "evil" not in json.dumps(mirror.repodata("linux-64"))


def test_rattler_installs_from_a_mirror_of_a_sharded_upstream(mirror, upstream, tmp_path):
    mirror.configure(blacklist=["*"], whitelist=["alpha", "delta", "gamma"])
    assert mirror.sync().code == 0
    assert not any("repodata.json" in p for p in upstream.server.paths())
    install_delta_through_shards(mirror.dir, tmp_path)


def test_a_shard_index_of_another_platform_is_refused(mirror, upstream, synced):
    content = index_content({}, subdir="osx-64")
    (upstream.channel.root / "linux-64" / SHARD_INDEX).write_bytes(encode_index(content, 0))
    result = mirror.sync()
    assert_platform_failed(mirror, result, synced, "info.subdir is 'osx-64'", INDEX_PATH)


def test_packages_come_from_the_shard_index_base_url(mirror, upstream):
    folder = upstream.channel.root / "linux-64"
    pool = upstream.root / "pool"
    pool.mkdir()
    for fn in ("alpha-1.0-0.conda", "alpha-1.0-0.tar.bz2"):
        (folder / fn).rename(pool / fn)
    hashes = {n: h.hex() for n, h in read_sharded(folder)[0]["shards"].items()}
    content = index_content(hashes, subdir="linux-64", base_url="../../../pool/")
    (folder / SHARD_INDEX).write_bytes(encode_index(content, 0))
    mirror.configure(blacklist=["*"], whitelist=["alpha"])
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.files("linux-64") == {"alpha-1.0-0.conda", "alpha-1.0-0.tar.bz2"}
    assert "/pool/alpha-1.0-0.conda" in upstream.server.paths()
    assert "base_url" not in mirror.repodata("linux-64")["info"]  # the files are here now
