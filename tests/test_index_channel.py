"""cas-index on channels built from real packages: incremental runs, bad packages, what is
ignored, what is left untouched."""

from __future__ import annotations

import bz2
import json
import os
import time

import pytest
import zstandard

from cas_index import reading as reading_mod
from cas_index.cache import SubdirCache
from cas_index.channel import Options, index_channel
from cas_index.cli import main
from cas_index.repodata import dumps_repodata
from tests.support.conda_packages import PkgSpec, build_package
from tests.support.index_tools import (
    corrupt_conda_info,
    corrupt_middle,
    file_hashes,
    read_json,
    records,
    truncate,
)

PLATFORMS = ("linux-64", "osx-arm64", "win-64", "noarch")


def _specs():
    specs = []
    for subdir in PLATFORMS:
        for fmt in (".conda", ".tar.bz2"):
            specs.append(PkgSpec("alpha", "1.0", subdir=subdir, fmt=fmt))
        specs.append(PkgSpec("beta", "2.1", subdir=subdir, depends=["alpha >=1"],
                             extra_index={"timestamp": 1700000000000}))
    return specs


@pytest.fixture
def channel(make_channel):
    return make_channel(_specs(), name="internal-pkgs")


def _mtimes(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and ".cache" not in p.parts and not p.name.startswith(".")}


def _opened(monkeypatch):
    """Record every package file cas-index reads."""
    opened = []
    original = reading_mod.read_job

    def spy(job):
        opened.append(job[0].rsplit("/", 2)[-2] + "/" + job[0].rsplit("/", 1)[-1])
        return original(job)

    monkeypatch.setattr(reading_mod, "read_job", spy)
    return opened


def test_indexes_every_platform_with_the_oracle_records(channel, run_cli):
    result = run_cli(main, [channel.root])
    assert result.code == 0, result
    for subdir in PLATFORMS:
        folder = channel.root / subdir
        assert records(folder) == channel.records(subdir)
        doc = read_json(folder / "repodata.json")
        assert doc["info"] == {"subdir": subdir}
        assert doc["removed"] == [] and doc["repodata_version"] == 1
        data = (folder / "repodata.json").read_bytes()
        assert data == dumps_repodata(doc)
        assert zstandard.ZstdDecompressor().decompress((folder / "repodata.json.zst")
                                                       .read_bytes()) == data
        assert bz2.decompress((folder / "repodata.json.bz2").read_bytes()) == data
        assert (folder / "repodata_from_packages.json").read_bytes() == data
        assert "alpha-1.0-0.tar.bz2" in (folder / "index.html").read_text()
    channeldata = read_json(channel.root / "channeldata.json")
    assert channeldata["subdirs"] == sorted(PLATFORMS)
    assert channeldata["packages"]["beta"]["subdirs"] == sorted(PLATFORMS)
    assert channeldata["packages"]["beta"]["summary"] == "beta test package"
    assert channeldata["packages"]["beta"]["timestamp"] == 1700000000
    assert "beta" in (channel.root / "index.html").read_text()
    assert "linux-64" in result.out and "added" in result.out


def test_second_run_reads_nothing_and_rewrites_nothing(channel, run_cli, monkeypatch):
    assert run_cli(main, [channel.root]).code == 0
    before = _mtimes(channel.root)
    opened = _opened(monkeypatch)
    result = run_cli(main, [channel.root])
    assert result.code == 0
    assert opened == []
    assert _mtimes(channel.root) == before
    assert result.out.count("unchanged") == len(PLATFORMS) + 1


def test_add_replace_delete(channel, run_cli, monkeypatch):
    assert run_cli(main, [channel.root]).code == 0
    opened = _opened(monkeypatch)
    untouched = (channel.root / "osx-arm64/repodata.json").stat().st_mtime_ns

    channel.add([PkgSpec("gamma", "0.1", subdir="linux-64")])  # added
    channel.add([PkgSpec("beta", "2.1", subdir="noarch", depends=["alpha >=1"],  # replaced
                         payload_size=999, extra_index={"timestamp": 1700000000000})])
    channel.remove("win-64", "alpha-1.0-0.tar.bz2")  # deleted
    result = run_cli(main, [channel.root, "--json"])
    assert result.code == 0, result
    assert sorted(opened) == ["linux-64/gamma-0.1-0.conda", "noarch/beta-2.1-0.conda"]
    report = {s["subdir"]: s for s in json.loads(result.out)["channels"][0]["subdirs"]}
    assert report["linux-64"]["added"] == ["gamma-0.1-0.conda"]
    assert report["noarch"]["replaced"] == ["beta-2.1-0.conda"]
    assert report["win-64"]["removed"] == ["alpha-1.0-0.tar.bz2"]
    assert report["osx-arm64"]["unchanged"] is True
    for subdir in PLATFORMS:
        assert records(channel.root / subdir) == channel.records(subdir)
    assert records(channel.root / "noarch")["beta-2.1-0.conda"]["size"] == file_hashes(
        channel.root / "noarch/beta-2.1-0.conda")["size"]
    assert (channel.root / "osx-arm64/repodata.json").stat().st_mtime_ns == untouched
    assert "gamma" in read_json(channel.root / "channeldata.json")["packages"]


def test_force_rereads_everything_but_rewrites_nothing_unchanged(channel, run_cli,
                                                                 monkeypatch):
    assert run_cli(main, [channel.root]).code == 0
    before = _mtimes(channel.root)
    opened = _opened(monkeypatch)
    result = run_cli(main, [channel.root, "--force", "--json"])
    assert result.code == 0
    assert len(opened) == len(_specs())
    assert _mtimes(channel.root) == before
    summary = json.loads(result.out)["channels"][0]
    assert all(s["replaced"] == [] and s["read"] > 0 for s in summary["subdirs"])


def test_deleted_output_is_rebuilt(channel, run_cli):
    assert run_cli(main, [channel.root]).code == 0
    (channel.root / "linux-64/repodata.json.bz2").unlink()
    (channel.root / "channeldata.json").unlink()
    assert run_cli(main, [channel.root]).code == 0
    assert (channel.root / "linux-64/repodata.json.bz2").is_file()
    assert read_json(channel.root / "channeldata.json")["subdirs"] == sorted(PLATFORMS)


def test_no_bz2_no_zst(channel, run_cli):
    assert run_cli(main, [channel.root]).code == 0
    assert run_cli(main, [channel.root, "--no-bz2", "--no-zst"]).code == 0
    for subdir in PLATFORMS:
        assert not (channel.root / subdir / "repodata.json.bz2").exists()
        assert not (channel.root / subdir / "repodata.json.zst").exists()
        assert (channel.root / subdir / "repodata.json").is_file()
    assert run_cli(main, [channel.root, "--no-bz2"]).code == 0
    assert (channel.root / "linux-64/repodata.json.zst").is_file()
    assert not (channel.root / "linux-64/repodata.json.bz2").exists()


def test_new_channel_gets_noarch(tmp_path, run_cli):
    root = tmp_path / "internal-pkgs"
    build_package(PkgSpec("tool", subdir="linux-64"), root / "linux-64")
    assert run_cli(main, [root]).code == 0
    doc = read_json(root / "noarch/repodata.json")
    assert doc == {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {},
                   "removed": [], "repodata_version": 1}
    assert (root / "noarch/repodata.json.zst").is_file()
    empty = tmp_path / "empty-channel"
    empty.mkdir()
    assert run_cli(main, [empty]).code == 0
    assert read_json(empty / "channeldata.json") == {
        "channeldata_version": 1, "packages": {}, "subdirs": ["noarch"]}


def test_noarch_without_repodata_is_indexed_whatever_was_asked(tmp_path, run_cli):
    root = tmp_path / "internal-pkgs"
    build_package(PkgSpec("tool", subdir="linux-64"), root / "linux-64")
    build_package(PkgSpec("helper"), root / "noarch")  # dropped in, never indexed
    assert run_cli(main, [root / "linux-64"]).code == 0
    assert list(records(root / "noarch")) == ["helper-1.0-0.conda"]
    assert read_json(root / "channeldata.json")["subdirs"] == ["linux-64", "noarch"]


def test_one_platform_folder_as_path(channel, run_cli, monkeypatch):
    assert run_cli(main, [channel.root]).code == 0
    channel.add([PkgSpec("gamma", subdir="linux-64"), PkgSpec("delta", subdir="win-64")])
    opened = _opened(monkeypatch)
    result = run_cli(main, [channel.root / "linux-64"])
    assert result.code == 0
    assert opened == ["linux-64/gamma-1.0-0.conda"]
    assert "gamma-1.0-0.conda" in records(channel.root / "linux-64")
    # (the test builder rewrote win-64/repodata.json itself; our page shows what we did)
    assert "delta-1.0-0.conda" not in (channel.root / "win-64/index.html").read_text()
    packages = read_json(channel.root / "channeldata.json")["packages"]
    assert "gamma" in packages and "delta" not in packages
    assert packages["beta"]["subdirs"] == sorted(PLATFORMS)  # other folders still counted


def test_subdir_option_limits_the_run(channel, run_cli, monkeypatch):
    opened = _opened(monkeypatch)
    assert run_cli(main, [channel.root, "--subdir", "win-64"]).code == 0
    assert {p.split("/")[0] for p in opened} == {"win-64"}
    assert not (channel.root / "linux-64/index.html").exists()


def test_readme_part_files_and_hidden_files_are_ignored(channel, run_cli, monkeypatch):
    folder = channel.root / "linux-64"
    (folder / "README").write_text("drop packages here\n")
    (folder / "README.md").write_text("# packages\n")
    (folder / "tool-1.0-0.conda.part").write_bytes(b"half a download")
    (folder / ".tool-1.0-0.conda").write_bytes(b"a hidden temporary file")
    (folder / ".tmp-repodata.json.x1").write_bytes(b"{")
    opened = _opened(monkeypatch)
    result = run_cli(main, [channel.root])
    assert result.code == 0, result
    assert all(not p.endswith((".part", "README", "README.md")) for p in opened)
    assert set(records(folder)) == set(channel.records("linux-64"))
    assert result.err == ""


def test_packages_outside_platform_folders_are_reported(channel, run_cli):
    build_package(PkgSpec("lost"), channel.root)
    build_package(PkgSpec("lost2"), channel.root / "linux64")
    result = run_cli(main, [channel.root])
    assert result.code == 1
    assert "lost-1.0-0.conda: package file in the channel root" in result.err
    assert "linux64: 1 package file(s) in a folder that is not a platform name" in result.err
    assert records(channel.root / "linux-64") == channel.records("linux-64")


# ------------------------------------------------------------------------------- bad files
def _bad_files(folder):
    """Every kind of bad package file, next to good ones."""
    subdir = folder.name

    def built(name, **kwargs):
        return build_package(PkgSpec(name, subdir=subdir, payload_size=8192, **kwargs), folder)

    bad = {
        "truncated-1.0-0.conda": truncate(built("truncated")),
        "truncated-1.0-0.tar.bz2": truncate(built("truncated", fmt=".tar.bz2")),
        "corrupt-1.0-0.tar.bz2": corrupt_middle(built("corrupt", fmt=".tar.bz2")),
        "corrupt-1.0-0.conda": corrupt_conda_info(built("corrupt")),
        "elsewhere-1.0-0.conda": build_package(PkgSpec("elsewhere", subdir="osx-64"), folder),
        "nover-1.0-0.conda": built("nover", extra_index={"version": None}),
        # an old package (no subdir) whose platform/arch say osx-64
        "oldmac-1.0-0.tar.bz2": build_package(PkgSpec(
            "oldmac", subdir="osx-64", fmt=".tar.bz2", drop_index=("subdir",)), folder),
    }
    (folder / "notes-1.0-0.conda").write_text("not a package at all\n")
    bad["notes-1.0-0.conda"] = folder / "notes-1.0-0.conda"
    return bad


REASONS = {
    "truncated-1.0-0.conda": "not a valid .conda archive",
    "truncated-1.0-0.tar.bz2": "truncated .tar.bz2 archive",
    "corrupt-1.0-0.tar.bz2": "not a valid .tar.bz2 archive",
    "corrupt-1.0-0.conda": "not a valid .conda archive",
    "notes-1.0-0.conda": "not a valid .conda archive",
    "elsewhere-1.0-0.conda": "says subdir 'osx-64', but the file is in 'linux-64'",
    "nover-1.0-0.conda": "lacks required field(s): version",
    "oldmac-1.0-0.tar.bz2": "says platform 'osx', arch 'x86_64' (no subdir), but the file is "
                            "in 'linux-64'",
}


def test_bad_packages_are_reported_and_left_out(channel, run_cli):
    folder = channel.root / "linux-64"
    bad = _bad_files(folder)
    result = run_cli(main, [channel.root, "--json"])
    assert result.code == 1, result
    assert records(folder) == channel.records("linux-64")  # every good package published
    for subdir in PLATFORMS:
        assert records(channel.root / subdir) == channel.records(subdir)
    summary = json.loads(result.out)
    assert summary["exit_status"] == 1
    skipped = {s["file"]: s["reason"] for s in
               next(s for s in summary["channels"][0]["subdirs"]
                    if s["subdir"] == "linux-64")["skipped"]}
    assert set(skipped) == {f"linux-64/{name}" for name in bad}
    for name, reason in REASONS.items():
        assert reason in skipped[f"linux-64/{name}"], name
        assert f"skipped {folder / name}: " in result.err
    # unchanged bad files are not reopened, but still reported, and still exit 1
    again = run_cli(main, [channel.root])
    assert again.code == 1
    assert again.err.count("skipped") == len(bad)
    # fixing a file brings it in
    bad["notes-1.0-0.conda"].unlink()
    build_package(PkgSpec("notes", subdir="linux-64"), folder)
    fixed = run_cli(main, [channel.root, "--json"])
    linux = next(s for s in json.loads(fixed.out)["channels"][0]["subdirs"]
                 if s["subdir"] == "linux-64")
    assert linux["added"] == ["notes-1.0-0.conda"]
    assert "notes-1.0-0.conda" in records(folder)


def test_entries_named_like_packages_that_are_not_files_are_reported(channel, run_cli):
    # a folder, a symbolic link to nothing and a FIFO named like packages were passed over
    # in silence: the index missed them and the run said all was well
    folder = channel.root / "noarch"
    (folder / "odd-1.0-0.conda").mkdir()
    (folder / "gone-1.0-0.tar.bz2").symlink_to(channel.root / "nowhere")
    os.mkfifo(folder / "pipe-1.0-0.conda")
    reasons = {"gone-1.0-0.tar.bz2": "a symbolic link to nothing",
               "odd-1.0-0.conda": "a folder, not a package file",
               "pipe-1.0-0.conda": "not a regular file"}
    for run in ("first", "nothing changed"):
        result = run_cli(main, [channel.root, "-q"])
        assert result.code == 1, (run, result)
        lines = result.err.splitlines()
        assert len(lines) == 3, (run, lines)
        for line, (name, reason) in zip(lines, sorted(reasons.items()), strict=True):
            assert line.startswith(f"cas-index: skipped {folder / name}: {reason}"), run
        assert records(folder) == channel.records("noarch")
    for name in reasons:
        entry = folder / name
        entry.rmdir() if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    assert run_cli(main, [channel.root, "-q"]).code == 0


@pytest.mark.parametrize("damage", [truncate, corrupt_conda_info])
def test_indexed_package_that_turns_corrupt_leaves_the_index(channel, run_cli, damage):
    assert run_cli(main, [channel.root]).code == 0
    path = channel.root / "noarch/beta-2.1-0.conda"
    damage(path)
    result = run_cli(main, [channel.root, "--json"])
    assert result.code == 1
    assert "beta-2.1-0.conda" not in records(channel.root / "noarch")
    noarch = next(s for s in json.loads(result.out)["channels"][0]["subdirs"]
                  if s["subdir"] == "noarch")
    assert noarch["removed"] == ["beta-2.1-0.conda"]
    # the cache holds no stale hashes for it either
    with SubdirCache(channel.root / "noarch") as cache:
        assert cache.files()["beta-2.1-0.conda"].record is None


def test_cache_is_rebuilt_when_damaged(channel, run_cli):
    assert run_cli(main, [channel.root]).code == 0
    (channel.root / "linux-64/.cache/cas-index.sqlite").write_bytes(b"garbage" * 100)
    (channel.root / "linux-64/tool-9-0.conda").write_bytes(b"")  # force a real run
    result = run_cli(main, [channel.root])
    assert result.code == 1 and "empty file" in result.err
    assert records(channel.root / "linux-64") == channel.records("linux-64")


def test_parallel_reading_gives_the_same_index(make_channel):
    specs = [PkgSpec(f"p{i}", subdir=sd, fmt=fmt) for i in range(8)
             for sd in ("linux-64", "noarch") for fmt in (".conda", ".tar.bz2")]
    built = make_channel(specs, name="many")
    report = index_channel(built.root, options=Options(threads=2))
    assert report.exit_code == 0
    assert sum(s.read for s in report.subdirs) == len(specs) >= reading_mod.PARALLEL_MIN_FILES
    for subdir in ("linux-64", "noarch"):
        assert records(built.root / subdir) == built.records(subdir)


def test_leftovers_of_a_killed_run_are_removed(channel, run_cli):
    assert run_cli(main, [channel.root]).code == 0
    leftovers = [channel.root / "linux-64/.tmp-repodata.json.bz2.k1ll3d",
                 channel.root / "noarch/.tmp-index.html.abc123",
                 channel.root / ".tmp-channeldata.json.x9"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    someone_elses = channel.root / "linux-64/.tmp-upload-in-progress"
    someone_elses.write_bytes(b"not ours")
    assert run_cli(main, [channel.root]).code == 0
    assert not [p for p in leftovers if p.exists()]
    assert someone_elses.exists()


def test_a_killed_run_is_repaired_by_the_next(make_channel, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    built = make_channel([PkgSpec(f"k{i}", subdir=sd, payload_size=20_000, fmt=fmt)
                          for i in range(12) for sd in ("linux-64", "noarch")
                          for fmt in (".conda", ".tar.bz2")], name="killed")
    for subdir in ("linux-64", "noarch"):  # the builder's oracle files: ours must appear
        (built.root / subdir / "repodata.json").unlink()
    cas_index = os.path.join(os.path.dirname(sys.executable), "cas-index")
    proc = subprocess.Popen([cas_index, str(built.root), "-q", "--threads", "2"])
    marker = built.root / "linux-64/.cache"
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)  # polling for the run to be under way, not waiting out a delay
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    result = subprocess.run([cas_index, str(built.root), "--json"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for subdir in ("linux-64", "noarch"):
        assert records(built.root / subdir) == built.records(subdir)
        assert not list((built.root / subdir).glob(".tmp-*"))
    assert read_json(built.root / "channeldata.json")["subdirs"] == ["linux-64", "noarch"]


def test_a_file_rewritten_in_place_is_read_again(channel, run_cli, monkeypatch):
    # the folder's own mtime does not change when a file is rewritten in place: the warm
    # check looks at every file's size and mtime
    assert run_cli(main, [channel.root]).code == 0
    target = channel.root / "linux-64" / sorted(
        n for n in os.listdir(channel.root / "linux-64") if n.endswith(".conda"))[0]
    folder_mtime = (channel.root / "linux-64").stat().st_mtime_ns
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert (channel.root / "linux-64").stat().st_mtime_ns == folder_mtime
    opened = _opened(monkeypatch)
    result = run_cli(main, [channel.root, "--json"])
    assert result.code == 0, result
    assert opened == [f"linux-64/{target.name}"]


def listing_digest(listing: dict[str, tuple[int, int]]) -> str:
    from array import array

    from cas_index.layout import listing_digest as digest

    return digest(list(listing), array("q", [n for pair in listing.values() for n in pair]))


def test_the_listing_digest_covers_names_sizes_and_mtimes():
    base = {"a.conda": (1, 2), "b.conda": (3, 4)}
    assert listing_digest(base) == listing_digest(dict(base))
    for other in ({"a.conda": (1, 2), "b.conda": (3, 5)},  # an mtime
                  {"a.conda": (1, 2), "b.conda": (4, 4)},  # a size
                  {"a.conda": (2, 1), "b.conda": (3, 4)},  # size and mtime swapped
                  {"a.conda": (1, 2), "c.conda": (3, 4)},  # a name
                  {"a.conda": (1, 2)},  # a file less
                  {"a.condab.conda": (1, 2), "": (3, 4)}):  # names run together
        assert listing_digest(other) != listing_digest(base), other
    assert listing_digest({"\udcff.conda": (1, 2)})  # undecodable names are fine
