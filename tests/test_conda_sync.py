"""cas-sync end to end: real packages, real HTTP on 127.0.0.1, real faults, a real client."""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from cas_mirror.lock import TreeLock
from tests.support.clients import rattler_install
from tests.support.conda_mirror import Mirror, make_upstream
from tests.support.conda_packages import PkgSpec, write_repodata
from tests.support.trees import no_hidden_leftovers


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


# --------------------------------------------------------------------------- the main job


def test_first_sync_mirrors_selected_platforms(mirror, upstream):
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.files("linux-64") == {"alpha-1.0-0.conda", "alpha-1.0-0.tar.bz2",
                                        "beta-2.0-0.conda", "delta-1.0-0.conda"}
    assert mirror.files("noarch") == {"gamma-1.0-0.conda"}
    assert not mirror.folder("win-64").exists()
    for platform in ("linux-64", "noarch"):
        upstream_doc = upstream.channel.repodata[platform]
        doc = mirror.repodata(platform)
        assert doc["packages"] == upstream_doc["packages"]  # kept apart, byte-for-byte records
        assert doc["packages.conda"] == upstream_doc["packages.conda"]
        assert doc["info"] == upstream_doc["info"]
        assert doc["removed"] == [] and doc["repodata_version"] == 1
        raw = (mirror.folder(platform) / "repodata.json").read_bytes()
        assert zstandard.ZstdDecompressor().decompress(
            (mirror.folder(platform) / "repodata.json.zst").read_bytes()) == raw
        assert bz2.decompress((mirror.folder(platform) / "repodata.json.bz2").read_bytes()) == raw
        for fn, record in mirror.records(platform).items():
            data = (mirror.folder(platform) / fn).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["sha256"]
    channeldata = json.loads((mirror.dir / "pkgs/main/channeldata.json").read_text())
    assert channeldata["subdirs"] == ["linux-64", "noarch"]
    assert channeldata["packages"]["gamma"]["subdirs"] == ["noarch"]
    assert "cas-sync summary" in result.out and "pkgs/main" in result.out
    assert no_hidden_leftovers(mirror.dir)


def test_noop_resync_costs_one_conditional_request_per_platform(mirror, upstream):
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0
    requests = upstream.server.requests  # platforms are fetched in parallel: any order
    assert sorted((r.method, r.path, r.status) for r in requests) == [
        ("GET", "/pkgs/main/linux-64/repodata.json", 304),
        ("GET", "/pkgs/main/noarch/repodata.json", 304),
    ]
    assert all("If-None-Match" in r.headers for r in requests)
    assert mirror.snapshot() == before  # nothing rewritten: mtimes unchanged
    summary = json.loads(result.out)
    assert [p["downloaded"] for p in summary["platforms"]] == [0, 0]
    assert not any(p["upstream_changed"] for p in summary["platforms"])


def test_repodata_preference_zst_then_bz2_then_json(mirror, upstream):
    folder = upstream.root / "pkgs/main/linux-64"
    data = (folder / "repodata.json").read_bytes()
    (folder / "repodata.json.bz2").write_bytes(bz2.compress(data))
    assert mirror.sync().code == 0
    first = [p for p in upstream.server.paths() if "linux-64/repodata.json" in p]
    assert first == ["/pkgs/main/linux-64/repodata.json.zst",
                     "/pkgs/main/linux-64/repodata.json.bz2"]
    (folder / "repodata.json.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    upstream.server.clear_log()
    mirror.sync()  # the remembered .bz2 is still asked for (conditionally)
    assert [p for p in upstream.server.paths() if "linux-64/repodata.json" in p] == [
        "/pkgs/main/linux-64/repodata.json.bz2"]


def test_upstream_adds_changes_and_removes_packages(mirror, upstream):
    assert mirror.sync().code == 0
    channel = upstream.channel
    channel.add([PkgSpec("alpha", "2.0", subdir="linux-64")])
    channel.add([PkgSpec("delta", "1.0", subdir="linux-64", depends=["alpha >=1", "gamma"],
                         seed=99)])  # same file name, new content
    channel.remove("linux-64", "alpha-1.0-0.tar.bz2")
    old_delta = (mirror.folder("linux-64") / "delta-1.0-0.conda").read_bytes()
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert mirror.files("linux-64") == {"alpha-1.0-0.conda", "alpha-2.0-0.conda",
                                        "beta-2.0-0.conda", "delta-1.0-0.conda"}
    new_delta = (mirror.folder("linux-64") / "delta-1.0-0.conda").read_bytes()
    assert new_delta != old_delta
    assert hashlib.sha256(new_delta).hexdigest() == \
        channel.records("linux-64")["delta-1.0-0.conda"]["sha256"]
    assert mirror.repodata("linux-64")["packages"] == {}
    linux = json.loads(result.out)["platforms"][0]
    assert (linux["downloaded"], linux["deleted"]) == (2, 1)


def test_keep_removed_keeps_files_but_not_records(mirror, upstream):
    mirror.configure(keep_removed=True)
    assert mirror.sync().code == 0
    upstream.channel.remove("linux-64", "alpha-1.0-0.tar.bz2")
    assert mirror.sync().code == 0
    assert "alpha-1.0-0.tar.bz2" in mirror.files("linux-64")
    assert "alpha-1.0-0.tar.bz2" not in mirror.records("linux-64")


def test_filters_apply_and_a_config_change_needs_no_download(mirror, upstream):
    mirror.configure(license_blacklist="GPL", blacklist=["delta"])
    assert mirror.sync().code == 0
    assert mirror.files("linux-64") == {"alpha-1.0-0.conda", "alpha-1.0-0.tar.bz2"}
    mirror.configure(license_blacklist="GPL", blacklist=["delta", "alpha 1.0 *"],
                     whitelist=["beta"])
    upstream.server.clear_log()
    assert mirror.sync().code == 0
    assert mirror.files("linux-64") == {"beta-2.0-0.conda"}
    assert set(mirror.records("linux-64")) == {"beta-2.0-0.conda"}
    metadata = [r for r in upstream.server.requests if "repodata" in r.path]
    assert all(r.status == 304 for r in metadata)  # filters re-applied to the cached upstream


def test_channel_as_full_url_and_discovered_platforms(mirror, upstream):
    upstream.channel.write_channeldata()
    mirror.configure(channels=[f"{upstream.url}/pkgs/main"], platforms=None)
    assert mirror.sync().code == 0
    assert mirror.files("win-64") == {"omega-1.0-0.conda"}
    assert mirror.files("linux-64") and mirror.files("noarch")
    assert not any("linux-aarch64" in p for p in upstream.server.paths())  # no probing


def test_platforms_are_probed_without_channeldata(mirror, upstream):
    mirror.configure(platforms=None)
    result = mirror.sync("--json")
    assert result.code == 0, result
    synced = {p["platform"] for p in json.loads(result.out)["platforms"]}
    assert synced == {"linux-64", "noarch", "win-64"}
    assert any("linux-aarch64/repodata.json" in p for p in upstream.server.paths())


def test_missing_noarch_upstream_publishes_an_empty_one(mirror, upstream):
    for name in os.listdir(upstream.root / "pkgs/main/noarch"):
        (upstream.root / "pkgs/main/noarch" / name).unlink()
    assert mirror.sync().code == 0
    assert mirror.repodata("noarch")["packages.conda"] == {}


def test_dry_run_changes_nothing(mirror, upstream):
    result = mirror.sync("--dry-run")
    assert result.code == 0
    assert not mirror.dir.exists()
    assert "dry run" in result.out and "linux-64" in result.out
    assert mirror.sync().code == 0
    upstream.channel.add([PkgSpec("alpha", "3.0", subdir="linux-64")])
    upstream.channel.remove("linux-64", "beta-2.0-0.conda")
    before = mirror.snapshot()
    result = mirror.sync("--dry-run", "--json")
    assert mirror.snapshot() == before
    linux = json.loads(result.out)["platforms"][0]
    assert linux["plan"]["download"] == 1 and linux["plan"]["delete"] == 1


def test_verify_rehashes_and_repairs(mirror):
    assert mirror.sync().code == 0
    victim = mirror.folder("linux-64") / "alpha-1.0-0.conda"
    good = victim.read_bytes()
    victim.write_bytes(bytes(len(good)))  # same size, wrong content
    assert json.loads(mirror.sync("--json").out)["platforms"][0]["downloaded"] == 0
    result = mirror.sync("--verify", "--json")
    assert json.loads(result.out)["platforms"][0]["downloaded"] == 1
    assert victim.read_bytes() == good


def test_explain_tells_which_step_decided(mirror):
    mirror.configure(license_blacklist="GPL", blacklist=["alpha"], whitelist=["alpha 1.0 *"],
                     platforms=["linux-64", "win-64"])
    result = mirror.sync("--explain", "alpha", "--json")
    assert result.code == 0, result
    rows = json.loads(result.out)
    assert {(r["platform"], r["file"], r["kept"], r["step"]) for r in rows} == {
        ("linux-64", "alpha-1.0-0.conda", True, "whitelist"),
        ("linux-64", "alpha-1.0-0.tar.bz2", True, "whitelist"),
    }
    text = mirror.sync("--explain", "beta").out
    assert "beta-2.0-0.conda" in text and "license_blacklist" in text and "dropped" in text
    assert not mirror.dir.exists()  # explaining changes nothing


def test_diff_file_lists_what_changed(mirror, upstream, tmp_path):
    mirror.configure(diff_file=str(tmp_path / "diffs/changed"))
    assert mirror.sync().code == 0
    listed = (tmp_path / "diffs/changed").read_text().split()
    assert str(mirror.folder("linux-64") / "alpha-1.0-0.conda") in listed
    assert str(mirror.folder("noarch") / "repodata.json") in listed
    assert all(Path(p).is_file() for p in listed)
    mirror.sync()
    assert (tmp_path / "diffs/changed").read_text() == ""  # nothing changed
    mirror.configure(diff_file=str(tmp_path / "diffs/changed"), diff_append_epoch=True)
    upstream.channel.add([PkgSpec("alpha", "4.0", subdir="linux-64")])
    mirror.sync()
    stamped = [p for p in (tmp_path / "diffs").iterdir() if p.name.startswith("changed-")]
    assert len(stamped) == 1 and stamped[0].name.split("-")[1].isdigit()
    assert str(mirror.folder("linux-64") / "alpha-4.0-0.conda") in stamped[0].read_text()


def test_quiet_prints_nothing_on_success(mirror):
    result = mirror.sync("--quiet")
    assert result.code == 0 and result.out == "" and result.err == ""


def test_plain_log_lines_are_timestamped(mirror):
    result = mirror.sync()
    assert result.err.startswith(time.strftime("%Y-"))
    assert "downloading 5 files" in result.err


# --------------------------------------------------------------------------- faults


def test_server_errors_are_retried(mirror, upstream):
    upstream.server.add_fault("*/alpha-1.0-0.conda", status=500, times=2)
    upstream.server.add_fault("*/linux-64/repodata.json", status=503, times=1)
    result = mirror.sync()
    assert result.code == 0, result
    assert "alpha-1.0-0.conda" in mirror.files("linux-64")


def test_missing_package_is_reported_and_left_out(mirror, upstream):
    (upstream.root / "pkgs/main/linux-64/beta-2.0-0.conda").unlink()  # listed, but 404
    result = mirror.sync()
    assert result.code == 1
    assert "beta-2.0-0.conda" in result.out and "HTTP 404" in result.out
    assert "beta-2.0-0.conda" not in mirror.records("linux-64")
    assert "alpha-1.0-0.conda" in mirror.records("linux-64")
    assert no_hidden_leftovers(mirror.dir)


@pytest.mark.parametrize("fault", [{"truncate": 500}, {"corrupt": True}, {"delay": 2.0}])
def test_bad_transfers_are_retried_then_reported(mirror, upstream, fault):
    mirror.configure(timeout=0.5, retries=1)
    upstream.server.add_fault("*/delta-1.0-0.conda", **fault)
    result = mirror.sync("--json")
    assert result.code == 1
    linux = json.loads(result.out)["platforms"][0]
    assert linux["failed"] == 1 and "delta-1.0-0.conda" in linux["failures"][0]["item"]
    assert "delta-1.0-0.conda" not in mirror.files("linux-64")
    assert "delta-1.0-0.conda" not in mirror.records("linux-64")
    assert no_hidden_leftovers(mirror.dir)
    upstream.server.clear_faults()
    assert mirror.sync().code == 0
    assert "delta-1.0-0.conda" in mirror.records("linux-64")


def test_malformed_repodata_leaves_the_previous_mirror_untouched(mirror, upstream):
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    target = upstream.root / "pkgs/main/linux-64/repodata.json"
    target.write_bytes(target.read_bytes()[:-200])  # truncated
    result = mirror.sync()
    assert result.code == 1
    assert "malformed or truncated repodata" in result.err
    assert "linux-64/repodata.json" in result.err
    after = mirror.snapshot()
    assert {k: v for k, v in after.items() if "linux-64" in k} == \
        {k: v for k, v in before.items() if "linux-64" in k}


def test_repodata_for_another_subdir_is_refused(mirror, upstream):
    folder = upstream.root / "pkgs/main/linux-64"
    doc = json.loads((folder / "repodata.json").read_text())
    doc["info"]["subdir"] = "osx-64"
    (folder / "repodata.json").write_text(json.dumps(doc))
    result = mirror.sync()
    assert result.code == 1 and "info.subdir is 'osx-64'" in result.err


def test_decompression_is_bounded(mirror, upstream):
    folder = upstream.root / "pkgs/main/linux-64"
    bomb = b'{"info": {"subdir": "linux-64"}, "x": "' + b"0" * 5_000_000 + b'"}'
    (folder / "repodata.json.zst").write_bytes(zstandard.ZstdCompressor(level=19).compress(bomb))
    mirror.configure(max_repodata_size="1 MB")
    result = mirror.sync()
    assert result.code == 1 and "max_repodata_size" in result.err


# Each hostile key comes with a record that agrees with it (name-version-build.conda), and
# upstream serves valid bytes wherever its URL leads: only the safe-name guard can refuse it.
HOSTILE = [("../../evil", "1.0", "0"), ("/tmp/evil", "1.0", "0"), ("sub/evil", "1.0", "0"),
           ("evil\n", "1.0", "0"), (".hidden", "1.0", "0"), ("evil", "1.0", "0.")]


@pytest.mark.parametrize(("name", "version", "build"), HOSTILE)
def test_hostile_file_names_are_refused(mirror, upstream, tmp_path, name, version, build):
    from tests.support.http_server import Response

    folder = upstream.root / "pkgs/main/linux-64"
    good = (folder / "alpha-1.0-0.conda").read_bytes()
    upstream.server.route("*evil*", lambda request: Response(200, good))
    upstream.server.route("*hidden*", lambda request: Response(200, good))
    doc = json.loads((folder / "repodata.json").read_text())
    evil = f"{name}-{version}-{build}.conda"
    doc["packages.conda"][evil] = {**doc["packages.conda"]["alpha-1.0-0.conda"],
                                   "name": name, "version": version, "build": build}
    (folder / "repodata.json").write_text(json.dumps(doc))
    result = mirror.sync("--json")
    assert result.code == 1, result
    failures = json.loads(result.out)["platforms"][0]["failures"]
    assert failures == [{"item": evil, "error": "refused: file name is not a plain package "
                                                "file name; refusing it"}]
    assert evil not in mirror.records("linux-64")
    assert not [p for p in tmp_path.rglob("*") if "evil" in p.name or "hidden" in p.name]
    assert not Path("/tmp/evil-1.0-0.conda").exists()
    assert "alpha-1.0-0.conda" in mirror.files("linux-64")  # the rest is mirrored


def test_not_enough_free_space_stops_cleanly(mirror):
    mirror.configure(minimum_free_space="1000 TB")
    result = mirror.sync()
    assert result.code == 4
    assert "not enough free space" in result.err
    assert mirror.files("linux-64") == set()
    assert mirror.records("linux-64") == {}  # published, and consistent: nothing is there
    assert no_hidden_leftovers(mirror.dir)


def test_a_second_run_is_refused_while_the_first_holds_the_lock(mirror):
    mirror.dir.mkdir(parents=True)
    with TreeLock(mirror.dir / ".cas-sync" / "lock"):
        result = mirror.sync()
    assert result.code == 3
    assert "holds the lock" in result.err and f"pid {os.getpid()}" in result.err
    assert mirror.sync().code == 0  # released


def test_killed_run_leaves_no_partial_file_and_the_next_run_resumes(mirror, upstream,
                                                                    isolated_config):
    big = PkgSpec("huge", "1.0", subdir="linux-64", payload_size=3_000_000)
    upstream.channel.add([big])
    upstream.server.add_fault("*/huge-1.0-0.conda", truncate=1_000_000, times=1)
    upstream.server.add_fault("*/huge-1.0-0.conda", delay=30, times=1)  # the retry hangs
    env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(isolated_config.system),
           "CAS_MIRROR_USER_CONFIG": str(isolated_config.user)}
    proc = subprocess.Popen([sys.executable, "-m", "cas_mirror", "--quiet"], env=env)
    part = mirror.folder("linux-64") / ".huge-1.0-0.conda.part"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if part.exists() and part.stat().st_size >= 1_000_000 and any(
                r.path.endswith("huge-1.0-0.conda") for r in upstream.server.requests[1:]
                if r.headers.get("Range")):
            break
        assert proc.poll() is None, "the sync finished before it could be killed"
        time.sleep(0.02)
    else:
        pytest.fail("the sync never reached the interrupted download")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (mirror.folder("linux-64") / "huge-1.0-0.conda").exists()
    upstream.server.clear_faults()
    upstream.server.clear_log()
    assert mirror.sync().code == 0
    assert "huge-1.0-0.conda" in mirror.records("linux-64")
    ranged = [r for r in upstream.server.requests if r.path.endswith("huge-1.0-0.conda")]
    assert ranged[0].headers.get("Range") == "bytes=1000000-"


# --------------------------------------------------------------------------- network settings


def test_tls_verification_is_on_unless_turned_off(tmp_path, upstream, mirror, http_server):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    secure = http_server(upstream.root, ssl_context=context)
    mirror.configure(remote_url=secure.url)
    result = mirror.sync()
    assert result.code == 1 and "TLS verification failed" in result.err
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    mirror.configure(remote_url=secure.url, ssl_verify=str(bundle))
    assert mirror.sync().code == 0
    mirror.configure(remote_url=secure.url, ssl_verify=False, mirror_dir=str(tmp_path / "m2"))
    assert mirror.sync().code == 0


def test_proxy_setting_and_environment(mirror, upstream, http_server, monkeypatch, tmp_path):
    proxy = http_server(upstream.root)  # answers absolute-URI requests from the same tree
    mirror.configure(remote_url="http://mirror-upstream.invalid", proxy=proxy.url)
    assert mirror.sync().code == 0
    assert any(r.path.startswith("http://mirror-upstream.invalid/") for r in proxy.requests)
    proxy.clear_log()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    mirror.configure(remote_url="http://mirror-upstream.invalid", mirror_dir=str(tmp_path / "m2"))
    assert mirror.sync().code == 0
    assert proxy.requests


# --------------------------------------------------------------------------- a real client


def test_rattler_installs_from_the_mirror(mirror, upstream, http_server, tmp_path):
    assert mirror.sync().code == 0
    served = http_server(mirror.dir)
    prefix = tmp_path / "env"
    installed = rattler_install([f"{served.url}/pkgs/main"], ["delta"], prefix)
    assert installed == ["alpha-1.0-0.conda", "delta-1.0-0.conda", "gamma-1.0-0.conda"]
    assert (prefix / "share/delta/data.bin").is_file()
    assert (prefix / "conda-meta").is_dir()
    assert all(r.path.startswith("/pkgs/main/") for r in served.requests)


def test_published_repodata_never_names_a_missing_file(mirror, upstream):
    (upstream.root / "pkgs/main/noarch/gamma-1.0-0.conda").unlink()
    mirror.sync()
    for platform in ("linux-64", "noarch"):
        for fn in mirror.records(platform):
            assert (mirror.folder(platform) / fn).is_file()


def test_record_without_size_or_hash_is_still_mirrored(mirror, upstream):
    folder = upstream.root / "pkgs/main/noarch"
    doc = json.loads((folder / "repodata.json").read_text())
    for record in doc["packages.conda"].values():
        record.pop("size"), record.pop("sha256")
    write_repodata(folder, "noarch", doc["packages.conda"])
    assert mirror.sync().code == 0
    assert mirror.files("noarch") == {"gamma-1.0-0.conda"}


def replace_upstream_file_same_size(upstream, platform: str, fn: str) -> bytes:
    """Upstream rebuilds `fn` under the same name and size (new content, new hashes)."""
    folder = upstream.root / "pkgs/main" / platform
    data = bytearray((folder / fn).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / fn).write_bytes(bytes(data))
    records = upstream.channel.records(platform)
    records[fn] = {**records[fn], "sha256": hashlib.sha256(data).hexdigest(),
                   "md5": hashlib.md5(data).hexdigest()}
    upstream.channel.repodata[platform] = write_repodata(folder, platform, records)
    return bytes(data)


def test_file_rebuilt_upstream_with_the_same_size_is_downloaded_again(mirror, upstream):
    assert mirror.sync().code == 0
    new = replace_upstream_file_same_size(upstream, "linux-64", "alpha-1.0-0.conda")
    result = mirror.sync("--json")
    assert json.loads(result.out)["platforms"][0]["downloaded"] == 1
    assert (mirror.folder("linux-64") / "alpha-1.0-0.conda").read_bytes() == new
    assert mirror.records("linux-64")["alpha-1.0-0.conda"]["sha256"] == \
        hashlib.sha256(new).hexdigest()


def test_unpublished_local_file_is_hashed_before_it_is_trusted(mirror):
    assert mirror.sync().code == 0
    folder = mirror.folder("linux-64")
    good = (folder / "alpha-1.0-0.conda").read_bytes()
    (folder / "alpha-1.0-0.conda").write_bytes(bytes(len(good)))  # same size, wrong bytes
    for name in ("repodata.json", "repodata.json.zst", "repodata.json.bz2"):
        (folder / name).unlink()  # as if a run was killed before it published
    result = mirror.sync("--json")
    assert json.loads(result.out)["platforms"][0]["downloaded"] == 1
    assert (folder / "alpha-1.0-0.conda").read_bytes() == good
