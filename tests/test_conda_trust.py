"""cas-sync under the conditions of a real installation (issue 9): folders it cannot
write, a disk that fills up while metadata is written, an upstream answering HTML, and
outputs that say exactly what was (or would be) done. Real packages, real HTTP on
127.0.0.1, real filesystems: tmpfs and read-only bind mounts when the test may mount
(tests run as root, and root ignores permission bits, so chmod proves nothing)."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import cas_index.atomic
from tests.support.conda_mirror import Mirror, make_upstream
from tests.support.conda_packages import PkgSpec
from tests.support.http_server import Response
from tests.support.trees import no_hidden_leftovers


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], check=False, capture_output=True).returncode == 0


@pytest.fixture
def mounts():
    """`mounts.read_only(folder)` / `mounts.tmpfs(folder, size)`; False when this machine
    does not let the test mount. Everything is unmounted afterwards."""
    done: list[Path] = []

    class Mounts:
        @staticmethod
        def read_only(folder: Path) -> bool:
            if not _mount("--bind", str(folder), str(folder)):
                return False
            done.append(folder)
            return _mount("-o", "remount,ro,bind", str(folder))

        @staticmethod
        def tmpfs(folder: Path, size: str) -> bool:
            folder.mkdir(parents=True, exist_ok=True)
            if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
                return False
            done.append(folder)
            return True

    yield Mounts()
    for folder in reversed(done):
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


# --------------------------------------------------------------------------- item 5: folders


def test_mirror_dir_that_is_a_file_is_a_config_error_naming_file_and_line(mirror, tmp_path):
    mirror.dir.write_text("not a folder")
    for args in ((), ("--dry-run",)):
        result = mirror.sync(*args)
        assert result.code == 2, result
        assert f"{mirror.config_path}, line" in result.err and "key 'mirror_dir'" in result.err
        assert f"{mirror.dir} is a file, not a folder" in result.err
        assert "internal error" not in result.err
    (tmp_path / "file").write_text("x")
    mirror.configure(mirror_dir=str(tmp_path / "file/mirror"))
    result = mirror.sync("--dry-run")
    assert result.code == 2 and f"{tmp_path / 'file'} is a file, not a folder" in result.err


def test_dry_run_says_the_mirror_dir_is_usable_and_creates_nothing(mirror):
    result = mirror.sync("--dry-run")
    assert result.code == 0
    assert f"mirror_dir {mirror.dir}: does not exist; will be created" in result.out
    assert not mirror.dir.exists()
    assert mirror.sync().code == 0
    status = json.loads(mirror.sync("--dry-run", "--json").out)["mirror_dir"]
    assert status == {"path": str(mirror.dir), "status": "exists, writable"}


def test_read_only_mirror_dir_is_a_config_error(mirror, mounts):
    assert mirror.sync().code == 0
    assert mounts.read_only(mirror.dir), "this test needs mount(8) (tests run as root)"
    for args in (("--dry-run",), ()):
        result = mirror.sync(*args)
        assert result.code == 2, result
        assert "key 'mirror_dir'" in result.err
        assert f"cannot write {mirror.dir}: read-only file system" in result.err


def test_platform_folder_that_is_a_file_fails_that_platform_alone(mirror, upstream):
    folder = mirror.folder("linux-64")
    folder.parent.mkdir(parents=True)
    folder.write_text("in the way")
    result = mirror.sync()
    assert result.code == 1, result
    assert f"cannot use {folder}: a path component is a file, not a folder" in result.err
    assert "cas-sync summary" in result.out and "internal error" not in result.err
    assert mirror.files("noarch") == {"gamma-1.0-0.conda"}  # the other platform synced
    assert folder.read_text() == "in the way"


def test_read_only_platform_folder_fails_that_platform_alone(mirror, upstream, mounts):
    assert mirror.sync().code == 0
    upstream.channel.add([PkgSpec("alpha", "2.0", subdir="linux-64"),
                          PkgSpec("gamma", "2.0", subdir="noarch")])
    before = (mirror.folder("linux-64") / "repodata.json").read_bytes()
    assert mounts.read_only(mirror.folder("linux-64")), "this test needs mount(8)"
    result = mirror.sync("--json")
    assert result.code == 1, result
    assert f"cannot write {mirror.folder('linux-64')}: read-only file system" in result.err
    linux, noarch = json.loads(result.out)["platforms"]
    assert linux["error"] and linux["downloaded"] == 0
    assert noarch["error"] is None and noarch["downloaded"] == 1
    assert "gamma-2.0-0.conda" in mirror.records("noarch")
    assert (mirror.folder("linux-64") / "repodata.json").read_bytes() == before


@pytest.fixture
def shared_dir():
    """A folder other users can reach (pytest's tmp_path is root's alone), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="cas-sync-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def sync_as_nobody(config: Path, *args: str) -> subprocess.CompletedProcess:
    """cas-sync run as the unprivileged user `nobody`, for whom permission bits count."""
    env = {**os.environ, "HOME": str(config.parent),
           "CAS_MIRROR_SYSTEM_CONFIG": str(config.parent / "absent"),
           "CAS_MIRROR_USER_CONFIG": str(config.parent / "absent")}
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               sys.executable, "-m", "cas_mirror", "-f", str(config), *args]
    return subprocess.run(command, env=env, cwd=config.parent, capture_output=True,
                          text=True, timeout=120, check=False)


def test_platform_folder_the_sync_user_cannot_write_fails_alone(mirror, upstream, shared_dir):
    mirror.dir = shared_dir / "mirror"
    mirror.configure()
    assert mirror.sync().code == 0
    nobody = pwd.getpwnam("nobody")
    for path in [mirror.dir, *mirror.dir.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    linux = mirror.folder("linux-64")
    os.chown(linux, 0, 0)  # the sync user may read it, not write it
    linux.chmod(0o755)
    config = shared_dir / "cas-mirror.yaml"
    config.write_text(mirror.config_path.read_text())
    config.chmod(0o644)
    upstream.channel.add([PkgSpec("alpha", "2.0", subdir="linux-64"),
                          PkgSpec("gamma", "2.0", subdir="noarch")])
    result = sync_as_nobody(config)
    assert result.returncode == 1, result
    assert f"cannot write {linux}: permission denied" in result.stderr
    assert "cas-sync summary" in result.stdout and "internal error" not in result.stderr
    assert "gamma-2.0-0.conda" in mirror.records("noarch")
    assert "alpha-2.0-0.conda" not in mirror.records("linux-64")
    for path in [mirror.dir, *mirror.dir.rglob("*")]:  # a tree first synced by root
        os.chown(path, 0, 0, follow_symlinks=False)
    for args in ((), ("--dry-run",)):
        result = sync_as_nobody(config, *args)
        assert result.returncode == 2, result
        assert f"{config}, line" in result.stderr and "key 'mirror_dir'" in result.stderr
        assert f"cannot write {mirror.dir}: permission denied" in result.stderr


# --------------------------------------------------------------------------- item 6: disk full


def test_disk_filling_while_publishing_repodata_stops_with_exit_4(mirror, upstream, mounts,
                                                                   tmp_path):
    """A real full disk: the mirror on a small tmpfs, filled to the last byte after the
    first sync, then a run whose only write is the changed repodata."""
    volume = tmp_path / "volume"
    assert mounts.tmpfs(volume, "4m"), "this test needs mount(8) (tests run as root)"
    mirror.dir = volume / "mirror"
    mirror.configure()
    assert mirror.sync().code == 0
    upstream.channel.remove("linux-64", "beta-2.0-0.conda")  # new repodata, nothing to fetch
    folder = mirror.folder("linux-64")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    filler = fill(volume)
    result = mirror.sync()
    assert result.code == 4, result
    assert "no space left on device" in result.err and "stopped" in result.err
    assert "cas-sync summary" in result.out and "internal error" not in result.err
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before  # old repodata intact, nothing deleted, no temporary file
    assert no_hidden_leftovers(mirror.dir)
    filler.unlink()
    assert mirror.sync().code == 0
    assert "beta-2.0-0.conda" not in mirror.files("linux-64")


@pytest.mark.parametrize("target", ["repodata.json.zst", "channeldata.json",
                                    "upstream.json.zst", "changed"])
def test_disk_full_on_any_metadata_write_stops_with_exit_4(mirror, upstream, monkeypatch,
                                                           tmp_path, target):
    """The one write named by `target` goes to /dev/full (a real ENOSPC from the kernel):
    a filled tmpfs cannot pick which write fails, this can."""
    mirror.configure(diff_file=str(tmp_path / "changed"))
    assert mirror.sync().code == 0
    upstream.channel.add([PkgSpec("epsilon", "1.0", subdir="linux-64")])  # every file changes
    published = mirror.repodata("linux-64")
    real = cas_index.atomic.open_temp

    def open_temp(path: str):
        fd, tmp = real(path)
        if os.path.basename(path) == target:
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(cas_index.atomic, "open_temp", open_temp)
    result = mirror.sync("--json")
    assert result.code == 4, result
    summary = json.loads(result.out)
    assert "no space left on device" in summary["stopped"]
    named = {"repodata.json.zst": "pkgs/main/linux-64/repodata.json",
             "channeldata.json": "pkgs/main/channeldata.json",
             "upstream.json.zst": ".cas-sync/channels/pkgs/main/linux-64/upstream.json.zst",
             "changed": str(tmp_path / "changed")}[target]
    assert named in summary["stopped"]  # the metadata that could not be written
    assert summary["exit_status"] == 4 and "internal error" not in result.err
    assert no_hidden_leftovers(mirror.dir)
    assert not list(mirror.dir.rglob(".tmp-*"))  # not even in .cas-sync
    if target == "repodata.json.zst":
        assert mirror.repodata("linux-64") == published
    for fn in mirror.records("linux-64"):  # whatever is published names files in place
        assert (mirror.folder("linux-64") / fn).is_file()


# --------------------------------------------------------------------------- item 10: HTML


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json"])
def test_upstream_answering_html_says_so(mirror, upstream, content_type):
    page = b"<!DOCTYPE html>\n<html><body>Please log in</body></html>\n"
    upstream.server.route("*", lambda request: Response(200, page,
                                                        {"Content-Type": content_type}))
    result = mirror.sync()
    assert result.code == 1, result
    what = "text/html" if "html" in content_type else "a body starting with '<'"
    url = f"{upstream.url}/pkgs/main/linux-64/repodata_shards.msgpack.zst"  # asked first
    assert f"upstream answered HTML ({what}) for {url}" in result.err
    assert "decompress" not in result.err and "malformed" not in result.err
    mirror.configure(platforms=None)  # discovering platforms reads channeldata.json
    result = mirror.sync()
    assert f"upstream answered HTML ({what}) for {upstream.url}/pkgs/main/channeldata.json" \
        in result.err


# --------------------------------------------------------------------------- item 13: outputs


def test_dry_run_lists_each_file_to_download_and_delete(mirror, upstream):
    result = mirror.sync("--dry-run")
    sizes = {fn: r["size"] for fn, r in upstream.channel.records("linux-64").items()}
    assert "would download (5 files):" in result.out
    from cas_mirror.net import human_bytes

    assert f"  pkgs/main/linux-64/delta-1.0-0.conda  {human_bytes(sizes['delta-1.0-0.conda'])}" \
        in result.out.splitlines()
    assert mirror.sync().code == 0
    upstream.channel.add([PkgSpec("alpha", "3.0", subdir="linux-64")])
    upstream.channel.remove("linux-64", "beta-2.0-0.conda")
    result = mirror.sync("--dry-run", "--json")
    linux = json.loads(result.out)["platforms"][0]
    new_size = upstream.channel.records("linux-64")["alpha-3.0-0.conda"]["size"]
    assert linux["plan"]["download_files"] == [{"file": "alpha-3.0-0.conda", "size": new_size}]
    assert linux["plan"]["delete_files"] == [{"file": "beta-2.0-0.conda",
                                              "size": sizes["beta-2.0-0.conda"]}]
    text = mirror.sync("--dry-run").out
    assert "would delete (1 file):" in text and "pkgs/main/linux-64/beta-2.0-0.conda" in text
    mirror.configure(keep_removed=True)  # then nothing would be deleted, and nothing is
    linux = json.loads(mirror.sync("--dry-run", "--json").out)["platforms"][0]
    assert linux["plan"]["delete_files"] == [] and linux["plan"]["delete"] == 0


def test_verify_names_each_bad_file_and_what_it_did(mirror, upstream):
    assert mirror.sync().code == 0
    victim = mirror.folder("linux-64") / "alpha-1.0-0.conda"
    victim.write_bytes(bytes(victim.stat().st_size))
    result = mirror.sync("--verify", "--dry-run")
    assert ("pkgs/main/linux-64/alpha-1.0-0.conda: hash does not match upstream; to be "
            "downloaded again") in result.out
    result = mirror.sync("--verify")
    assert result.code == 0
    assert "1 file (" in result.out  # not "1 files"
    assert ("pkgs/main/linux-64/alpha-1.0-0.conda: hash does not match upstream; downloaded "
            "again") in result.out
    victim.write_bytes(bytes(victim.stat().st_size))
    upstream.server.add_fault("*/alpha-1.0-0.conda", status=404)
    result = mirror.sync("--verify", "--json")
    assert json.loads(result.out)["platforms"][0]["verify"] == [
        {"file": "alpha-1.0-0.conda",
         "action": "download failed; left out of the published repodata"}]


# --------------------------------------------------------------------------- item 14: explain


def test_explain_lists_every_matching_step_and_platforms_not_configured(mirror, upstream):
    upstream.channel.write_channeldata()
    channeldata = json.loads((upstream.root / "pkgs/main/channeldata.json").read_text())
    channeldata["packages"] = {"beta": {"subdirs": ["linux-64", "osx-64"]},
                               "omega": {"subdirs": ["win-64"]}}
    (upstream.root / "pkgs/main/channeldata.json").write_text(json.dumps(channeldata))
    mirror.configure(license_blacklist="GPL", blacklist=["beta", "b*"])
    result = mirror.sync("--explain", "beta", "--json")
    assert result.code == 0, result
    rows = json.loads(result.out)
    assert rows[0]["file"] == "beta-2.0-0.conda" and rows[0]["step"] == "license_blacklist"
    assert rows[0]["matched"] == [
        {"step": "license_blacklist", "reason": "license matches 'GPL'"},
        {"step": "blacklist", "reason": "matches 'beta'"},
        {"step": "blacklist", "reason": "matches 'b*'"}]
    assert rows[1] == {"channel": "pkgs/main", "platform": "osx-64", "file": "beta",
                       "kept": False, "step": "platforms",
                       "reason": "platform osx-64 not configured",
                       "matched": [{"step": "platforms",
                                    "reason": "platform osx-64 not configured"}]}
    text = mirror.sync("--explain", "omega").out
    assert "win-64" in text and "platform win-64 not configured" in text
    assert not mirror.dir.exists()


def test_explain_exits_1_when_nothing_matches(mirror):
    result = mirror.sync("--explain", "nothing-like-it")
    assert result.code == 1
    assert "no record matches 'nothing-like-it'" in result.out
    assert "no channeldata.json" in result.err  # what could not be checked is said


# --------------------------------------------------------------------------- item 15: closure


def test_dependencies_nothing_mirrored_provides_are_a_warning(mirror):
    mirror.configure(blacklist=["gamma"])
    result = mirror.sync()
    assert result.code == 0, result
    assert ("pkgs/main/linux-64: 1 kept record depends on packages nothing mirrored provides: "
            "delta-1.0-0.conda (needs gamma)") in result.out
    summary = json.loads(mirror.sync("--json").out)
    linux = summary["platforms"][0]
    assert linux["unsatisfied"] == [{"file": "delta-1.0-0.conda", "missing": ["gamma"]}]
    assert summary["exit_status"] == 0
    mirror.configure()
    assert "nothing mirrored provides" not in mirror.sync().out


# --------------------------------------------------------------------------- item 17: narrowing


def test_platforms_narrowed_in_the_config_are_removed(mirror, upstream):
    mirror.configure(platforms=["linux-64", "win-64"])
    assert mirror.sync().code == 0
    assert mirror.files("win-64") == {"omega-1.0-0.conda"}
    (mirror.folder("win-64") / ".omega-1.0-0.conda.part").write_bytes(b"x")
    mirror.configure(platforms=["linux-64"])
    dry = mirror.sync("--dry-run", "--json")
    assert [p["unconfigured"] for p in json.loads(dry.out)["platforms"]] == \
        [None, None, "would be removed"]
    assert mirror.files("win-64")
    result = mirror.sync("--json")
    assert result.code == 0, result
    rows = json.loads(result.out)["platforms"]
    assert rows[-1]["platform"] == "win-64" and rows[-1]["unconfigured"] == "removed"
    assert not mirror.folder("win-64").exists()
    assert not (mirror.dir / ".cas-sync/channels/pkgs/main/win-64").exists()
    channeldata = json.loads((mirror.dir / "pkgs/main/channeldata.json").read_text())
    assert channeldata["subdirs"] == ["linux-64", "noarch"]
    assert "omega" not in channeldata["packages"]


@pytest.mark.parametrize("how", ["keep_removed", "command line"])
def test_narrowed_platforms_are_kept_listed_and_warned_about(mirror, upstream, how):
    mirror.configure(platforms=["linux-64", "win-64"])
    assert mirror.sync().code == 0
    if how == "keep_removed":
        mirror.configure(platforms=["linux-64"], keep_removed=True)
        result = mirror.sync()
    else:
        result = mirror.sync("--platform", "linux-64")
    assert result.code == 0, result
    assert result.out.count("no longer in platforms, kept and still served") == 1
    assert "pkgs/main/win-64" in result.out
    assert mirror.files("win-64") == {"omega-1.0-0.conda"}
    channeldata = json.loads((mirror.dir / "pkgs/main/channeldata.json").read_text())
    assert channeldata["subdirs"] == ["linux-64", "noarch", "win-64"]
    assert channeldata["packages"]["omega"]["subdirs"] == ["win-64"]


# --------------------------------------------------------------------------- item 18: .part


def test_stale_partial_downloads_are_removed_and_planned_ones_resumed(mirror, upstream):
    mirror.configure(blacklist=["beta"])
    folder = mirror.folder("linux-64")
    folder.mkdir(parents=True)
    stale = folder / ".beta-2.0-0.conda.part"  # a killed run's; beta is no longer wanted
    stale.write_bytes(b"x" * 100)
    delta = (upstream.root / "pkgs/main/linux-64/delta-1.0-0.conda").read_bytes()
    (folder / ".delta-1.0-0.conda.part").write_bytes(delta[:100])
    plan = json.loads(mirror.sync("--dry-run", "--json").out)["platforms"][0]["plan"]
    assert {"file": "beta-2.0-0.conda (partial download)", "size": 100} in plan["delete_files"]
    result = mirror.sync()
    assert result.code == 0, result
    assert not stale.exists()
    assert no_hidden_leftovers(mirror.dir)
    ranged = [r for r in upstream.server.requests if r.path.endswith("delta-1.0-0.conda")]
    assert ranged[0].headers.get("Range") == "bytes=100-"
    assert (folder / "delta-1.0-0.conda").read_bytes() == delta


def test_a_long_dry_run_listing_names_the_first_files_and_counts_the_rest(mirror, upstream,
                                                                           monkeypatch):
    import cas_mirror.conda.report

    monkeypatch.setattr(cas_mirror.conda.report, "MAX_ROWS", 2)
    result = mirror.sync("--dry-run")
    listing = result.out.split("would download (5 files):\n", 1)[1].splitlines()
    assert [line.startswith("  pkgs/main/") for line in listing[:3]] == [True, True, False]
    assert listing[2] == "... and 3 more files (--json lists all)"
    as_json = json.loads(mirror.sync("--dry-run", "--json").out)
    assert sum(len(p["plan"]["download_files"]) for p in as_json["platforms"]) == 5


def test_the_dependency_warning_names_the_first_few_and_counts_the_rest():
    from cas_mirror.conda.report import NAMED, dependency_warning
    from cas_mirror.conda.results import PlatformReport

    p = PlatformReport("pkgs/main", "linux-64")
    p.unsatisfied = {f"r{i}-1.0-0.conda": ["gone"] for i in range(NAMED + 2)}
    line = dependency_warning(p)
    assert line.startswith(f"pkgs/main/linux-64: {NAMED + 2} kept records depend on ")
    assert [f"r{i}-1.0-0.conda (needs gone)" in line for i in range(NAMED + 2)] == \
        [True] * NAMED + [False, False]
    assert line.endswith("; and 2 more (--json has all)")
