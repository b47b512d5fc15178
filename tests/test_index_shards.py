"""Sharded repodata (CEP-16) and run_exports.json (CEP-12) published by cas-index: every
shard decodes to exactly the records of repodata.json (patches included), py-rattler reads
the shards over HTTP from cas-server instead of repodata.json and gets the same records,
unchanged shards are never rewritten, a shard the index dropped stays for the grace
period, and the index is only published after the shards it names."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

import cas_index.shard_files as shard_files
import cas_index.shards as shards_module
from cas_index.channel import Options, index_channel
from cas_index.cli import main
from cas_index.repodata import dumps_repodata
from cas_index.shard_files import stage_shards, write_shards
from cas_index.shards import (
    SHARD_INDEX,
    SHARDS_DIR,
    decode_index,
    decode_shard,
    derive_shards,
    shard_document,
)
from tests.support.cas_server import CasServer
from tests.support.conda_packages import PkgSpec, build_package
from tests.support.index_tools import read_json

DAY = 86400.0
T0 = 1_800_000_000.0  # the "now" of the grace-period tests


def hexed(record: dict) -> dict:
    """A shard record as repodata.json spells it: hashes in hex."""
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in record.items()}


def read_sharded(folder: Path) -> tuple[dict, dict[str, dict]]:
    """The shard index of a platform folder and every shard it names, checking that each
    shard's file name is the sha256 of its bytes."""
    index = decode_index((folder / SHARD_INDEX).read_bytes())
    shards = {}
    for name, digest in index["shards"].items():
        assert isinstance(digest, bytes) and len(digest) == 32
        packed = (folder / SHARDS_DIR / f"{digest.hex()}.msgpack.zst").read_bytes()
        assert hashlib.sha256(packed).digest() == digest
        shards[name] = decode_shard(packed)
    return index, shards


def assert_shards_match_repodata(folder: Path, no_unnamed: bool = True) -> dict[str, dict]:
    """Decoding every shard gives exactly the records (and `removed`) of repodata.json;
    with `no_unnamed`, shards/ holds no other shard."""
    doc = read_json(folder / "repodata.json")
    index, shards = read_sharded(folder)
    assert index["version"] == 1
    assert index["info"]["subdir"] == doc["info"]["subdir"] == folder.name
    assert index["info"]["base_url"] == "./"
    assert index["info"]["shards_base_url"] == "./shards/"
    assert index["info"]["created_at"].endswith("Z")
    for key in ("packages", "packages.conda"):
        from_shards = {}
        for name, shard in shards.items():
            assert set(shard) == {"packages", "packages.conda", "removed"}
            for fn, record in shard[key].items():
                assert record["name"] == name
                assert isinstance(record["sha256"], bytes) and isinstance(record["md5"], bytes)
                from_shards[fn] = hexed(record)
        assert from_shards == doc[key]
    removed = sorted(fn for shard in shards.values() for fn in shard["removed"])
    assert removed == sorted(doc["removed"])
    named = {d.hex() + ".msgpack.zst" for d in index["shards"].values()}
    files = {p.name for p in (folder / SHARDS_DIR).iterdir()}
    assert files == named if no_unnamed else files >= named
    return shards


SPECS = [
    PkgSpec("lib", "1.0", run_exports={"weak": ["lib >=1.0,<2"]}),
    PkgSpec("lib", "2.0", fmt=".tar.bz2", run_exports={"strong": ["lib >=2"]}),
    PkgSpec("lib", "2.1", payload_size=2048),
    PkgSpec("tool", "1.0", subdir="linux-64", depends=["lib >=2"], fmt=".tar.bz2"),
    PkgSpec("tool", "1.1", subdir="linux-64", depends=["lib >=2", "helper"]),
    PkgSpec("helper", "0.3", subdir="linux-64"),
    PkgSpec("unused", "9.0", subdir="linux-64"),
]


@pytest.fixture
def channel(tmp_path) -> Path:
    root = tmp_path / "mirror" / "internal-pkgs"
    for spec in SPECS:
        build_package(spec, root / spec.subdir)
    return root


def index(root: Path, **options) -> None:
    report = index_channel(root, options=Options(threads=1, **options))
    assert report.exit_code == 0, report


# --------------------------------------------------------------------------- round trip


def test_every_shard_decodes_to_exactly_the_records_of_repodata_json(channel):
    index(channel)
    for platform in ("noarch", "linux-64"):
        shards = assert_shards_match_repodata(channel / platform)
        assert sorted(shards) == {"noarch": ["lib"],
                                  "linux-64": ["helper", "tool", "unused"]}[platform]
    lib = read_sharded(channel / "noarch")[1]["lib"]
    assert sorted(lib["packages"]) == ["lib-2.0-0.tar.bz2"]
    assert sorted(lib["packages.conda"]) == ["lib-1.0-0.conda", "lib-2.1-0.conda"]


def test_patched_records_are_what_the_shards_say(channel, run_cli, tmp_path):
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({
        "patch_instructions_version": 1,
        "packages.conda": {"tool-1.1-0.conda": {"depends": ["lib >=2.1", "helper"]}},
        "remove": ["unused-9.0-0.conda"],
    }))
    assert run_cli(main, [str(channel), "--patch", str(patch), "-q"]).code == 0
    folder = channel / "linux-64"
    shards = assert_shards_match_repodata(folder)
    assert shards["tool"]["packages.conda"]["tool-1.1-0.conda"]["depends"] == [
        "lib >=2.1", "helper"]
    assert shards["unused"] == {"packages": {}, "packages.conda": {},
                                "removed": ["unused-9.0-0.conda"]}
    # the unpatched records stay in repodata_from_packages.json, not in the shards
    raw = read_json(folder / "repodata_from_packages.json")
    assert raw["packages.conda"]["tool-1.1-0.conda"]["depends"] == ["lib >=2", "helper"]


def test_shard_document_is_pure_and_deterministic(channel):
    index(channel)
    data = (channel / "linux-64/repodata.json").read_bytes()
    first = shard_document(data, created_at=T0)
    again = shard_document(data, created_at=T0)
    assert first == again
    on_disk = read_sharded(channel / "linux-64")[0]
    assert {n: bytes.fromhex(s.sha256) for n, s in first.shards.items()} == on_disk["shards"]
    # key order in the JSON does not change a shard
    reordered = json.dumps(json.loads(data), sort_keys=False, indent=None).encode()
    assert shard_document(reordered, created_at=T0).shards == first.shards


# --------------------------------------------------------------------------- a real client


def _query(url: str, cache: Path, sharded: bool) -> list[tuple]:
    import rattler

    async def run():
        gateway = rattler.Gateway(cache_dir=cache,
                                  default_config=rattler.SourceConfig(sharded_enabled=sharded))
        found = await gateway.query([rattler.Channel(url)], ["linux-64", "noarch"],
                                    ["tool"], recursive=True)
        return sorted((r.file_name, r.url, r.sha256.hex(), r.md5.hex(), r.size,
                       [str(d) for d in r.depends], str(r.version), r.build)
                      for records in found for r in records)

    return asyncio.run(run())


def _solve_and_install(url: str, workdir: Path) -> list[str]:
    import rattler

    async def run():
        gateway = rattler.Gateway(cache_dir=workdir / "repodata-cache",
                                  default_config=rattler.SourceConfig(sharded_enabled=True))
        records = await rattler.solve([url], ["tool"], gateway=gateway,
                                      platforms=["linux-64", "noarch"], virtual_packages=[])
        await rattler.install(records, workdir / "prefix", cache_dir=workdir / "pkgs",
                              show_progress=False, platform=rattler.Subdir("linux-64"))
        return sorted(r.file_name for r in records)

    return asyncio.run(run())


def test_rattler_reads_the_shards_from_cas_server_not_repodata_json(channel, tmp_path):
    index(channel)
    server = CasServer(channel.parent, tmp_path / "logs")
    try:
        url = f"{server.url}/internal-pkgs"
        installed = _solve_and_install(url, tmp_path / "client")
        assert installed == ["helper-0.3-0.conda", "lib-2.1-0.conda", "tool-1.1-0.conda"]
        assert (tmp_path / "client/prefix/share/lib/data.bin").stat().st_size == 2048
        log = server.wait_for_log("tool-1.1-0.conda")
        for platform in ("linux-64", "noarch"):
            assert f"GET /internal-pkgs/{platform}/repodata_shards.msgpack.zst " in log
            assert f"GET /internal-pkgs/{platform}/shards/" in log
        assert "repodata.json" not in log

        sharded = _query(url, tmp_path / "cache-sharded", sharded=True)
        whole = _query(url, tmp_path / "cache-whole", sharded=False)
        assert whole == sharded
        assert {row[0] for row in sharded} == {
            "tool-1.0-0.tar.bz2", "tool-1.1-0.conda", "helper-0.3-0.conda",
            "lib-1.0-0.conda", "lib-2.0-0.tar.bz2", "lib-2.1-0.conda"}
        assert "GET /internal-pkgs/linux-64/repodata.json" in server.log()  # sharding off
    finally:
        server.stop()


# --------------------------------------------------------------------------- publishing


def test_unchanged_shards_and_index_are_not_rewritten(channel):
    index(channel)
    folder = channel / "linux-64"
    index_path = folder / SHARD_INDEX
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
              for p in (folder / SHARDS_DIR).iterdir()}
    index_stat = (index_path.stat().st_ino, index_path.stat().st_mtime_ns)
    index_bytes = index_path.read_bytes()

    index(channel, force=True)  # everything re-derived, nothing differs
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (folder / SHARDS_DIR).iterdir()} == before
    assert (index_path.stat().st_ino, index_path.stat().st_mtime_ns) == index_stat
    assert index_path.read_bytes() == index_bytes  # created_at included

    build_package(PkgSpec("helper", "0.4", subdir="linux-64"), folder)
    index(channel)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in (folder / SHARDS_DIR).iterdir()}
    shards = read_sharded(folder)[1]
    new_helper = read_sharded(folder)[0]["shards"]["helper"].hex() + ".msgpack.zst"
    assert new_helper not in before
    for name in ("tool", "unused"):  # their shards are the very same files
        kept = read_sharded(folder)[0]["shards"][name].hex() + ".msgpack.zst"
        assert after[kept] == before[kept]
    assert sorted(shards["helper"]["packages.conda"]) == ["helper-0.3-0.conda",
                                                         "helper-0.4-0.conda"]
    assert index_path.read_bytes() != index_bytes


def test_json_summary_counts_shards_written_and_kept(channel, run_cli):
    result = run_cli(main, [str(channel), "--json"])
    assert result.code == 0, result
    subdirs = {s["subdir"]: s for s in json.loads(result.out)["channels"][0]["subdirs"]}
    assert subdirs["linux-64"]["shards"] == {"written": 3, "kept": 0, "deleted": 0,
                                             "waiting": 0, "index_written": True}
    assert SHARD_INDEX in subdirs["linux-64"]["written"]
    again = run_cli(main, [str(channel), "--json"])
    subdirs = {s["subdir"]: s for s in json.loads(again.out)["channels"][0]["subdirs"]}
    assert subdirs["linux-64"]["unchanged"]
    assert subdirs["linux-64"]["shards"] == {"written": 0, "kept": 3, "deleted": 0,
                                             "waiting": 0, "index_written": False}
    text = run_cli(main, [str(channel), "--force"])
    assert "shards: 0 written, 3 kept" in text.out


def test_an_unnamed_shard_stays_for_the_grace_period(tmp_path):
    folder = tmp_path / "linux-64"
    folder.mkdir()

    def doc(version: str) -> bytes:
        record = {"name": "lib", "version": version, "build": "0", "build_number": 0,
                  "depends": [], "subdir": "linux-64", "md5": "0" * 32, "sha256": "1" * 64,
                  "size": 10}
        return dumps_repodata({"info": {"subdir": "linux-64"}, "packages": {},
                               "packages.conda": {f"lib-{version}-0.conda": record},
                               "removed": [], "repodata_version": 1})

    first = write_shards(folder, doc("1.0"), now=T0)
    assert (first.written, first.kept, first.deleted) == (1, 0, 0)
    old_shard = folder / SHARDS_DIR / next(iter(shard_document(
        doc("1.0"), created_at=T0).shards.values())).filename
    assert old_shard.is_file()

    second = write_shards(folder, doc("2.0"), now=T0 + DAY)  # lib changed: old shard unnamed
    assert (second.written, second.deleted, second.waiting) == (1, 0, 1)
    assert old_shard.is_file()  # a client holding the first index still finds its shard
    later = write_shards(folder, doc("2.0"), now=T0 + 7 * DAY)  # 6 days unnamed
    assert (later.written, later.kept, later.deleted, later.waiting) == (0, 1, 0, 1)
    assert old_shard.is_file()
    gone = write_shards(folder, doc("2.0"), now=T0 + 8 * DAY + 1)  # 7 days and a second
    assert (gone.deleted, gone.waiting) == (1, 0)
    assert not old_shard.exists()
    assert len(list((folder / SHARDS_DIR).iterdir())) == 1


def test_shards_staged_ahead_count_as_written_and_those_never_named_go_at_once(tmp_path):
    """A sync writes the shards of the document it expects while its packages download
    (stage_shards); when another document is published (a download failed), the staged
    shards it does not name were never named by any index, so they need no grace."""
    folder = tmp_path / "noarch"
    folder.mkdir()

    def doc(*versions: str) -> bytes:
        return dumps_repodata({"info": {"subdir": "noarch"}, "packages": {}, "removed": [],
                               "packages.conda": {f"{name}-{v}-0.conda": {"name": name,
                                                                          "version": v}
                                                  for name, v in versions}})

    old = doc(("a", "1"))
    write_shards(folder, old, now=T0)
    [old_shard] = os.listdir(folder / SHARDS_DIR)
    expected = doc(("a", "2"), ("b", "1"))
    staged = stage_shards(folder, derive_shards(expected))
    assert len(staged) == 2 and staged <= set(os.listdir(folder / SHARDS_DIR))
    assert not decode_index((folder / SHARD_INDEX).read_bytes())["shards"].keys() - {"a"}

    published = doc(("a", "2"))  # b's download failed
    counts = write_shards(folder, published, now=T0 + DAY, staged=staged)
    named = {sha.hex() + ".msgpack.zst"
             for sha in decode_index((folder / SHARD_INDEX).read_bytes())["shards"].values()}
    assert (counts.written, counts.kept, counts.waiting) == (1, 0, 1)
    assert {p.name for p in counts.paths} == named | {SHARD_INDEX}
    # a's old shard waits for its grace period; b's staged shard is gone
    assert set(os.listdir(folder / SHARDS_DIR)) == named | {old_shard}


def test_a_lost_record_keeps_unnamed_shards_longer_never_shorter(tmp_path):
    folder = tmp_path / "noarch"
    folder.mkdir()
    one = dumps_repodata({"info": {"subdir": "noarch"}, "packages": {}, "removed": [],
                          "packages.conda": {"a-1-0.conda": {"name": "a", "version": "1"}}})
    two = dumps_repodata({"info": {"subdir": "noarch"}, "packages": {}, "removed": [],
                          "packages.conda": {"a-2-0.conda": {"name": "a", "version": "2"}}})
    write_shards(folder, one, now=T0)
    write_shards(folder, two, now=T0)  # the first shard is unnamed from T0
    state = folder / ".cache" / "shards-state.json"
    state.write_text("{not json")  # lost or damaged
    kept = write_shards(folder, two, now=T0 + 30 * DAY)
    assert (kept.deleted, kept.waiting) == (0, 1)  # counted as unnamed from T0 + 30 days
    assert write_shards(folder, two, now=T0 + 36 * DAY).deleted == 0
    assert write_shards(folder, two, now=T0 + 37 * DAY).deleted == 1


def test_cas_index_deletes_a_shard_once_its_grace_period_passed_even_if_nothing_changed(
        channel):
    index(channel, now=T0)
    folder = channel / "linux-64"
    old = read_sharded(folder)[0]["shards"]["unused"].hex() + ".msgpack.zst"
    (folder / "unused-9.0-0.conda").unlink()
    index(channel, now=T0 + DAY)
    assert (folder / SHARDS_DIR / old).is_file()  # unnamed, within the grace period
    assert "unused" not in read_sharded(folder)[0]["shards"]
    report = index_channel(channel, options=Options(threads=1, now=T0 + 3 * DAY))
    assert report.subdirs[0].unchanged or report.subdirs[1].unchanged
    assert (folder / SHARDS_DIR / old).is_file()
    # nothing changed in the folder, but the grace period has run out
    report = index_channel(channel, options=Options(threads=1, now=T0 + 8 * DAY + 1))
    linux = next(s for s in report.subdirs if s.subdir == "linux-64")
    assert not linux.unchanged and linux.shards["deleted"] == 1
    assert not (folder / SHARDS_DIR / old).exists()
    assert_shards_match_repodata(folder)


def test_shards_are_published_before_the_index_that_names_them(channel, monkeypatch):
    index(channel)
    folder = channel / "linux-64"
    old_index = (folder / SHARD_INDEX).read_bytes()
    build_package(PkgSpec("helper", "0.5", subdir="linux-64"), folder)
    real_write = shard_files.write_atomic

    def failing_write(path, data, **kwargs):
        if Path(path).name == SHARD_INDEX:
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(shard_files, "write_atomic", failing_write)
    with pytest.raises(Exception, match="No space left"):
        index(channel)
    # the old index is still in place and every shard it names is there and whole
    assert (folder / SHARD_INDEX).read_bytes() == old_index
    shards = read_sharded(folder)[1]
    assert "helper-0.5-0.conda" not in shards["helper"]["packages.conda"]
    # the new shard was written first
    new = shard_document((folder / "repodata.json").read_bytes(), created_at=T0)
    assert (folder / SHARDS_DIR / new.shards["helper"].filename).is_file()
    assert not list((folder / SHARDS_DIR).glob(".tmp-*"))

    monkeypatch.setattr(shard_files, "write_atomic", real_write)
    index(channel)
    assert "helper-0.5-0.conda" in read_sharded(folder)[1]["helper"]["packages.conda"]
    assert_shards_match_repodata(folder, no_unnamed=False)  # the old helper shard waits


def test_no_shards_removes_the_index_at_once_and_the_shards_after_the_grace_period(
        channel, run_cli):
    index(channel)
    folder = channel / "noarch"
    assert run_cli(main, [str(channel), "--no-shards", "-q"]).code == 0
    assert not (folder / SHARD_INDEX).exists()  # clients fall back to repodata.json
    assert len(list((folder / SHARDS_DIR).iterdir())) == 1  # an old index may name it
    result = run_cli(main, [str(channel), "--no-shards", "--shard-grace-days", "0", "--json"])
    assert result.code == 0
    assert not (folder / SHARDS_DIR).exists()
    assert all(s["shards"] is None for s in json.loads(result.out)["channels"][0]["subdirs"])
    assert run_cli(main, [str(channel), "-q"]).code == 0  # on again
    assert_shards_match_repodata(folder)


def test_bad_shard_grace_days_is_a_usage_error(channel, run_cli):
    result = run_cli(main, [str(channel), "--shard-grace-days", "-1"])
    assert result.code == 2 and "--shard-grace-days" in result.err


# --------------------------------------------------------------------------- run_exports.json


def test_run_exports_json_lists_every_package_with_its_run_exports(channel, run_cli, tmp_path):
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"patch_instructions_version": 1,
                                 "remove": ["lib-1.0-0.conda"]}))
    assert run_cli(main, [str(channel), "--patch", str(patch), "-q"]).code == 0
    doc = read_json(channel / "noarch/run_exports.json")
    # CEP-12: not patched; every package file, {} when it exports nothing
    assert doc == {
        "info": {"subdir": "noarch", "version": 1},
        "packages": {"lib-2.0-0.tar.bz2": {"run_exports": {"strong": ["lib >=2"]}}},
        "packages.conda": {"lib-1.0-0.conda": {"run_exports": {"weak": ["lib >=1.0,<2"]}},
                           "lib-2.1-0.conda": {"run_exports": {}}},
    }
    linux = read_json(channel / "linux-64/run_exports.json")
    assert set(linux["packages.conda"]) == {"tool-1.1-0.conda", "helper-0.3-0.conda",
                                            "unused-9.0-0.conda"}
    assert linux["packages"] == {"tool-1.0-0.tar.bz2": {"run_exports": {}}}
    for suffix in (".zst", ".bz2"):
        assert (channel / f"noarch/run_exports.json{suffix}").is_file()


def test_run_exports_come_from_the_cache_on_later_runs(channel, run_cli):
    index(channel)
    build_package(PkgSpec("lib", "3.0", run_exports={"weak": ["lib >=3"]}), channel / "noarch")
    report = index_channel(channel, options=Options(threads=1))
    noarch = next(s for s in report.subdirs if s.subdir == "noarch")
    assert noarch.read == 1  # only the new file was opened
    doc = read_json(channel / "noarch/run_exports.json")
    assert doc["packages.conda"]["lib-1.0-0.conda"] == {"run_exports": {"weak": ["lib >=1.0,<2"]}}
    assert doc["packages.conda"]["lib-3.0-0.conda"] == {"run_exports": {"weak": ["lib >=3"]}}
    (channel / "noarch/run_exports.json").unlink()  # a deleted output is rebuilt
    index(channel)
    assert read_json(channel / "noarch/run_exports.json") == doc


def test_no_run_exports_removes_it(channel, run_cli):
    index(channel)
    assert run_cli(main, [str(channel), "--no-run-exports", "-q"]).code == 0
    assert not list(channel.glob("*/run_exports.json*"))


def test_a_run_with_the_same_document_derives_nothing_until_a_shard_goes_missing(
        channel, monkeypatch):
    index(channel)
    folder = channel / "linux-64"
    data = (folder / "repodata.json").read_bytes()

    def no_deriving(parsed):
        raise AssertionError("shards derived again")

    with monkeypatch.context() as patch:
        patch.setattr(shards_module, "_shards", no_deriving)
        counts = write_shards(folder, data, state_dir=folder / ".cache")
        assert (counts.written, counts.kept, counts.index_written) == (0, 3, False)
    victim = next((folder / SHARDS_DIR).iterdir())
    victim.unlink()  # shards/ no longer as recorded: derive, and repair
    counts = write_shards(folder, data, state_dir=folder / ".cache")
    assert (counts.written, counts.kept) == (1, 2) and victim.is_file()
    assert_shards_match_repodata(folder)
