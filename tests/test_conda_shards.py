"""cas-sync publishes sharded repodata (CEP-16) beside each mirrored repodata.json: the
shards describe exactly the filtered, published records, py-rattler reads them from
cas-server instead of repodata.json, and the `shards` / `shard_grace_period` keys work."""

from __future__ import annotations

import pytest

from cas_index.shards import SHARD_INDEX, SHARDS_DIR
from tests.support.cas_server import CasServer
from tests.support.clients import rattler_install
from tests.test_conda_sync import mirror, upstream  # noqa: F401 - fixtures
from tests.test_index_shards import assert_shards_match_repodata, read_sharded


def test_mirror_shards_hold_exactly_the_filtered_records(mirror, tmp_path):  # noqa: F811
    diff = tmp_path / "changed.txt"
    mirror.configure(blacklist=["beta"], diff_file=str(diff))
    assert mirror.sync().code == 0
    linux = assert_shards_match_repodata(mirror.folder("linux-64"))
    assert sorted(linux) == ["alpha", "delta"]  # beta was filtered out
    assert sorted(linux["alpha"]["packages"]) == ["alpha-1.0-0.tar.bz2"]
    assert sorted(linux["alpha"]["packages.conda"]) == ["alpha-1.0-0.conda"]
    assert sorted(assert_shards_match_repodata(mirror.folder("noarch"))) == ["gamma"]
    changed = diff.read_text().splitlines()
    assert str(mirror.folder("linux-64") / SHARD_INDEX) in changed
    assert sum(f"/linux-64/{SHARDS_DIR}/" in line for line in changed) == 2

    mirror.configure(diff_file=str(diff))  # beta comes back: only its shard is new
    before = {p.name for p in (mirror.folder("linux-64") / SHARDS_DIR).iterdir()}
    assert mirror.sync().code == 0
    index = read_sharded(mirror.folder("linux-64"))[0]
    added = {p.name for p in (mirror.folder("linux-64") / SHARDS_DIR).iterdir()} - before
    assert added == {index["shards"]["beta"].hex() + ".msgpack.zst"}


def test_noop_resync_rewrites_no_shard(mirror):  # noqa: F811
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    assert any(SHARD_INDEX in name for name in before)
    assert mirror.sync().code == 0
    assert mirror.snapshot() == before


def install_delta_through_shards(mirror_dir, tmp_path) -> str:
    """py-rattler (sharded reading on) installs `delta` from the mirror served by
    cas-server; returns the server's access log, which must show shards, not repodata."""
    server = CasServer(mirror_dir, tmp_path / "logs")
    try:
        installed = rattler_install([f"{server.url}/pkgs/main"], ["delta"],
                                    tmp_path / "prefix", sharded=True)
        assert installed == ["alpha-1.0-0.conda", "delta-1.0-0.conda", "gamma-1.0-0.conda"]
        assert (tmp_path / "prefix/share/delta/data.bin").is_file()
        log = server.wait_for_log("delta-1.0-0.conda")
        assert "GET /pkgs/main/linux-64/repodata_shards.msgpack.zst " in log
        assert "repodata.json" not in log
        return log
    finally:
        server.stop()


def test_rattler_installs_from_the_mirror_through_its_shards(mirror, tmp_path):  # noqa: F811
    assert mirror.sync().code == 0
    assert "GET /pkgs/main/noarch/shards/" in install_delta_through_shards(mirror.dir, tmp_path)


def test_shards_false_removes_the_index_and_later_the_shards(mirror):  # noqa: F811
    assert mirror.sync().code == 0
    folder = mirror.folder("linux-64")
    mirror.configure(shards=False)
    assert mirror.sync().code == 0
    assert not (folder / SHARD_INDEX).exists()
    assert len(list((folder / SHARDS_DIR).iterdir())) == 3  # alpha, beta, delta: waiting
    mirror.configure(shards=False, shard_grace_period=0)
    assert mirror.sync().code == 0
    assert not (folder / SHARDS_DIR).exists()
    assert (folder / "repodata.json").is_file()


@pytest.mark.parametrize(("value", "seconds"), [
    ("7 days", 604800.0), ("12 hours", 43200.0), ("30 min", 1800.0), (90, 90.0),
    ("1 week", 604800.0), ("0", 0.0)])
def test_shard_grace_period_takes_a_duration(mirror, value, seconds):  # noqa: F811
    mirror.configure(shard_grace_period=value)
    result = mirror.sync("--show", "--json")
    assert result.code == 0, result
    import json

    assert json.loads(result.out)["values"]["shard_grace_period"] == seconds


@pytest.mark.parametrize("value", ["soon", "7 fortnights", -1, True])
def test_a_bad_shard_grace_period_is_one_line_naming_the_key(mirror, value):  # noqa: F811
    mirror.configure(shard_grace_period=value)
    result = mirror.sync()
    assert result.code == 2
    assert "shard_grace_period" in result.err and "duration" in result.err
    assert "Traceback" not in result.err


def test_json_summary_counts_shards_written_and_kept(mirror):  # noqa: F811
    import json

    first = mirror.sync("--json")
    assert first.code == 0, first
    linux = next(p for p in json.loads(first.out)["platforms"] if p["platform"] == "linux-64")
    assert linux["shards"]["written"] == 3 and linux["shards"]["kept"] == 0
    again = mirror.sync("--json")
    linux = next(p for p in json.loads(again.out)["platforms"] if p["platform"] == "linux-64")
    assert linux["shards"]["written"] == 0
    mirror.configure(shards=False)
    off = mirror.sync("--json")
    assert all(p["shards"] is None for p in json.loads(off.out)["platforms"])
