"""A run with nothing to do (quiet.py): recognised from the conditional requests, it
reports the last run's counts without reading the folder, and anything that could change
the mirror (upstream, the configuration, a file it names, the folder, an unnamed shard's
grace period ending) makes the next run look again."""

from __future__ import annotations

import json

import pytest

from tests.support.conda_mirror import Mirror, make_upstream

QUIET = ".cas-sync/channels/pkgs/main/{}/quiet.json"


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def rows(result) -> dict[str, dict]:
    return {p["platform"]: p for p in json.loads(result.out)["platforms"]}


def counts(row: dict) -> tuple:
    return row["selected"], row["dropped"], row["plan"]["up_to_date"], row["downloaded"]


@pytest.fixture
def synced(mirror):
    first = mirror.sync("--json")
    assert first.code == 0, first
    return rows(first)


def truncate_in_place(path) -> None:
    """Shorter bytes under the same name, the folder untouched (no rename)."""
    with open(path, "r+b") as handle:
        handle.truncate(10)


def test_a_no_op_reports_the_last_counts_without_reading_the_folder(mirror, synced):
    # a file damaged in place is only seen by a run that reads the folder: this one does not
    truncate_in_place(mirror.folder("linux-64") / "alpha-1.0-0.conda")
    again = mirror.sync("--json")
    assert again.code == 0, again
    for platform, row in rows(again).items():
        before = synced[platform]
        assert counts(row) == (before["selected"], before["dropped"],
                               before["plan"]["up_to_date"] + before["downloaded"], 0)
        assert row["upstream_changed"] is False
    assert (mirror.folder("linux-64") / "alpha-1.0-0.conda").stat().st_size == 10
    verified = mirror.sync("--verify", "--json")  # --verify reads everything
    assert verified.code == 0 and rows(verified)["linux-64"]["downloaded"] == 1


def test_a_file_removed_from_the_folder_is_fetched_again(mirror, synced):
    (mirror.folder("linux-64") / "delta-1.0-0.conda").unlink()
    again = mirror.sync("--json")
    assert again.code == 0 and rows(again)["linux-64"]["downloaded"] == 1
    assert "delta-1.0-0.conda" in mirror.files("linux-64")


def test_a_changed_configuration_is_applied(mirror, synced):
    mirror.configure(blacklist=["delta"])
    again = mirror.sync("--json")
    assert again.code == 0 and rows(again)["linux-64"]["deleted"] == 1
    assert "delta-1.0-0.conda" not in mirror.files("linux-64")


def test_a_changed_file_named_by_the_configuration_is_applied(mirror, synced, tmp_path):
    """The digest covers the files the configuration names (their size and mtime), so
    an edited file behind an unchanged path counts as a change."""
    named = tmp_path / "ca-bundle.pem"  # a CA bundle (ssl_verify: PATH) is read by a run
    named.write_text("one")
    mirror.configure(ssl_verify=str(named))
    assert mirror.sync().code == 0
    state = mirror.dir / QUIET.format("linux-64")
    recorded = json.loads(state.read_text())["fingerprint"]
    assert mirror.sync().code == 0
    assert json.loads(state.read_text())["fingerprint"] == recorded  # quiet: not rewritten
    named.write_text("something else")
    assert mirror.sync().code == 0
    assert json.loads(state.read_text())["fingerprint"] != recorded


def test_a_changed_lockfile_is_applied_after_a_quiet_run(mirror, upstream, tmp_path):
    """What lockfiles ask for (wishes.py) is worked out only for a platform that is not
    quiet: the digest covers each lockfile, so an edited one makes the next run look again
    and mirror what it names now."""
    records = upstream.channel.records("linux-64")
    first, second = sorted(fn for fn in records if fn.endswith(".conda"))[:2]
    lockfile = tmp_path / "explicit.txt"

    def lock(*names: str) -> None:
        lockfile.write_text("# platform: linux-64\n@EXPLICIT\n" + "".join(
            f"{upstream.url}/pkgs/main/linux-64/{fn}#{records[fn]['sha256']}\n"
            for fn in names))

    lock(first)
    mirror.configure(lockfiles=[str(lockfile)])
    assert mirror.sync().code == 0
    state = mirror.dir / QUIET.format("linux-64")
    recorded = state.read_text()
    assert mirror.sync().code == 0 and state.read_text() == recorded  # quiet
    assert mirror.files("linux-64") == {first}
    lock(first, second)
    assert mirror.sync().code == 0
    assert mirror.files("linux-64") == {first, second}


def test_upstream_changing_one_platform_republishes_the_whole_channel(mirror, upstream,
                                                                      synced):
    upstream.channel.remove("linux-64", "delta-1.0-0.conda")  # noarch stays as it was
    again = mirror.sync("--json")
    assert again.code == 0
    assert rows(again)["linux-64"]["deleted"] == 1
    noarch = rows(again)["noarch"]
    assert noarch["upstream_changed"] is False and noarch["selected"] == 1
    channeldata = json.loads((mirror.dir / "pkgs/main/channeldata.json").read_text())
    assert set(channeldata["packages"]) == {"alpha", "beta", "gamma"}
    assert channeldata["packages"]["gamma"]["subdirs"] == ["noarch"]
    assert channeldata["subdirs"] == ["linux-64", "noarch"]


def test_a_platform_with_a_failed_download_is_looked_at_again(mirror, upstream):
    upstream.server.add_fault("*/delta-1.0-0.conda", status=500)
    assert mirror.sync().code == 1
    assert not (mirror.dir / QUIET.format("linux-64")).exists()
    assert (mirror.dir / QUIET.format("noarch")).exists()
    upstream.server.clear_faults()
    again = mirror.sync("--json")
    assert again.code == 0 and rows(again)["linux-64"]["downloaded"] == 1


def test_an_unnamed_shard_is_deleted_when_its_grace_period_ends(mirror, upstream, synced):
    upstream.channel.remove("linux-64", "delta-1.0-0.conda")
    mirror.configure(shard_grace_period=3600)
    assert mirror.sync().code == 0
    shards = mirror.folder("linux-64") / "shards"
    named = len(list(shards.iterdir()))
    recorded = mirror.dir / QUIET.format("linux-64")
    data = json.loads(recorded.read_text())
    assert data["due"] is not None
    data["due"] = 0  # as if the hour had passed
    recorded.write_text(json.dumps(data))
    state_file = mirror.dir / ".cas-sync/channels/pkgs/main/linux-64/shards-state.json"
    state = json.loads(state_file.read_text())  # the shard was dropped two hours ago
    assert len(state["unnamed_since"]) == 1
    state["unnamed_since"] = {k: v - 7200 for k, v in state["unnamed_since"].items()}
    state_file.write_text(json.dumps(state))
    again = mirror.sync("--json")
    assert again.code == 0
    assert rows(again)["linux-64"]["shards"]["deleted"] == 1
    assert len(list(shards.iterdir())) == named - 1


def test_dry_run_and_explain_never_take_the_shortcut(mirror, synced):
    dry = mirror.sync("--dry-run", "--json")
    assert dry.code == 0
    assert rows(dry)["linux-64"]["plan"]["up_to_date"] == 4
    explain = mirror.sync("--explain", "delta")
    assert explain.code == 0 and "delta-1.0-0.conda" in explain.out


# The dataclasses of our own modules a run has imported (an expression for `-c` code):
# the records a no-op needs are plain slotted ones (cas_index/plain.py).
DATACLASSES_OF_OURS = (
    "[f'{m}.{n}' for m in list(sys.modules) if m.startswith(('cas_mirror', 'cas_index')) "
    "for n, o in vars(sys.modules[m]).items() if isinstance(o, type) and o.__module__ == m "
    "and __import__('dataclasses').is_dataclass(o)]")


def test_a_no_op_imports_only_what_it_uses(mirror, monkeypatch, tmp_path):
    """Start-up is most of a no-op's cost: a run with nothing to do imports neither PyYAML
    (its configuration file was parsed before: config/parsed.py), nor ssl (the CA bundle's
    default path comes from _ssl), nor the --explain machinery, nor what completes a
    selection (wishes.py, solve.py: the fingerprint covers what they read), nor click (the
    quick argument reader: args.py), nor what parses, filters, plans or publishes
    (msgspec, repodata, filter, plan, the shard reader, cas_index's writers), nor the
    transfer machinery (nothing is downloaded), nor concurrent.futures or the object
    storage code; and none of our dataclasses (pycurl imports `dataclasses` itself)."""
    import subprocess
    import sys

    from cas_mirror.config import parsed

    monkeypatch.setattr(parsed, "SETTLED", 0.0)  # the file was written just now
    assert mirror.sync().code == 0
    seen = tmp_path / "modules.json"
    code = ("import json, sys\nfrom cas_mirror.cli import main\ncode = main(['--json'])\n"
            f"open({str(seen)!r}, 'w').write(json.dumps([code, sorted(sys.modules), "
            f"{DATACLASSES_OF_OURS}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert all(p["upstream_changed"] is False for p in json.loads(done.stdout)["platforms"])
    status, modules, dataclasses = json.loads(seen.read_text())
    assert status == 0
    assert dataclasses == [], dataclasses  # each compiles its methods at import
    unused = {"yaml", "ssl", "cas_mirror.conda.explain", "cas_mirror.conda.wishes",
              "cas_mirror.conda.solve", "cas_mirror.lockfiles", "click", "msgspec",
              "cas_mirror.conda.repodata", "cas_mirror.conda.filter", "cas_mirror.conda.plan",
              "cas_mirror.conda.upstream_shards", "cas_index.shards", "cas_index.shard_files",
              "cas_index.repodata",
              "cas_mirror.net.multi", "cas_mirror.net.transfer", "shutil", "random",
              "concurrent.futures", "cas_mirror.storage.base", "cas_mirror.storage.settings"}
    assert unused.isdisjoint(modules), sorted(unused & set(modules))
