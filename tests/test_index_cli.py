"""The cas-index command line: arguments, messages, exit statuses, output modes, the lock,
current_repodata, and the boundary to cas_mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cas_index.cli import main
from cas_index.lock import ChannelLock
from tests.support.conda_packages import PkgSpec
from tests.support.index_tools import read_json, records

CAS_INDEX = os.path.join(os.path.dirname(sys.executable), "cas-index")


@pytest.fixture
def channel(make_channel):
    return make_channel([PkgSpec("alpha", subdir="linux-64"), PkgSpec("beta", "2.0"),
                         PkgSpec("beta", "1.0", fmt=".tar.bz2")], name="internal-pkgs")


def test_help_describes_the_real_options(run_cli):
    result = run_cli(main, ["--help"])
    assert result.code == 0
    for option in ("--subdir", "--threads", "--force", "--no-bz2", "--no-zst",
                   "--current-repodata", "--patch", "--lock-timeout", "--quiet", "--json",
                   "PATH..."):
        assert option in result.out, option


@pytest.mark.parametrize("args, message", [
    ([], "Missing argument 'PATH...'"),
    (["{missing}"], "{missing}: no such folder"),
    (["{file}"], "{file}: not a folder"),
    (["{root}", "--threads", "0"], "Invalid value for '--threads'"),
    (["{root}", "--subdir", "linux64"],
     "--subdir 'linux64': not a platform name (did you mean 'linux-64'?)"),
    (["{root}/linux-64", "--subdir", "noarch"], "--subdir applies to channel roots"),
    (["{root}", "--no-such-flag"], "No such option '--no-such-flag'"),
])
def test_usage_errors_are_one_line_and_exit_2(channel, run_cli, tmp_path, args, message):
    (tmp_path / "a-file").write_text("x")
    values = {"missing": tmp_path / "missing", "file": tmp_path / "a-file", "root": channel.root}
    result = run_cli(main, [a.format(**values) for a in args])
    assert result.code == 2, result
    assert result.err.startswith("cas-index: error: ")
    assert message.format(**values) in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not (channel.root / "linux-64/index.html").exists()


def test_unreadable_folder_is_a_usage_error(channel, run_cli, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(channel.root)
                        else real_access(p, mode))
    result = run_cli(main, [channel.root])
    assert result.code == 2
    assert f"{channel.root}: cannot read the folder (permission denied)" in result.err


def test_internal_errors_exit_70_without_traceback(channel, run_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("cas_index.channeldata.subdir_entries", broken)
    result = run_cli(main, [channel.root])
    assert result.code == 70
    assert "internal error: KeyError('boom')" in result.err and "Traceback" not in result.err
    debug = run_cli(main, [channel.root, "--debug"])
    assert debug.code == 70 and "Traceback" in debug.err


def test_debug_is_an_option_not_a_word_of_the_command_line(channel, run_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("cas_index.channeldata.subdir_entries", broken)
    (channel.root.parent / "--debug").mkdir()
    monkeypatch.chdir(channel.root.parent)
    result = run_cli(main, [str(channel.root), "--", "--debug"])  # a folder named --debug
    assert result.code == 70 and "internal error" in result.err
    assert "Traceback" not in result.err


def test_summary_quiet_and_json(channel, run_cli):
    text = run_cli(main, [channel.root])
    assert text.code == 0
    assert str(channel.root) in text.out
    assert "platform" in text.out and "linux-64" in text.out and "noarch" in text.out
    quiet = run_cli(main, [channel.root, "-q"])
    assert quiet.code == 0 and quiet.out == "" and quiet.err == ""
    summary = json.loads(run_cli(main, [channel.root, "--json", "--force"]).out)
    assert summary["exit_status"] == 0
    (root,) = summary["channels"]
    assert root["path"] == str(channel.root)
    assert {s["subdir"]: s["indexed"] for s in root["subdirs"]} == {"linux-64": 1, "noarch": 2}


def test_several_paths_and_the_same_channel_twice(channel, make_channel, run_cli):
    other = make_channel([PkgSpec("omega", subdir="win-64")], name="other")
    result = run_cli(main, [channel.root / "linux-64", other.root, channel.root / "noarch",
                            "--json"])
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert [c["path"] for c in summary["channels"]] == [str(channel.root), str(other.root)]
    assert [s["subdir"] for s in summary["channels"][0]["subdirs"]] == ["linux-64", "noarch"]
    assert records(other.root / "win-64") == other.records("win-64")


def test_current_repodata_on_request_and_removed_otherwise(channel, run_cli):
    assert run_cli(main, [channel.root, "--current-repodata"]).code == 0
    current = read_json(channel.root / "noarch/current_repodata.json")
    assert list(current["packages.conda"]) == ["beta-2.0-0.conda"]  # newest beta only
    assert current["packages"] == {}
    assert current["packages.conda"]["beta-2.0-0.conda"]["legacy_bz2_md5"] is None
    assert (channel.root / "noarch/current_repodata.json.zst").is_file()
    assert run_cli(main, [channel.root]).code == 0
    assert not list(channel.root.glob("*/current_repodata.json*"))


def test_current_repodata_keeps_what_the_newest_need(make_channel, run_cli):
    built = make_channel([
        PkgSpec("lib", "1.0"), PkgSpec("lib", "2.0"), PkgSpec("lib", "3.0"),
        PkgSpec("app", "1.0", depends=["lib <3"]),
        PkgSpec("feat", "2.0", extra_index={"track_features": "debug"}),
        PkgSpec("feat", "1.5"), PkgSpec("feat", "1.0"),
    ])
    assert run_cli(main, [built.root, "--current-repodata"]).code == 0
    kept = set(read_json(built.root / "noarch/current_repodata.json")["packages.conda"])
    # newest lib, plus lib 2.0 because app (newest) needs lib <3; the newest feat has a
    # feature, so the newest feat without it stays too
    assert kept == {"lib-3.0-0.conda", "lib-2.0-0.conda", "app-1.0-0.conda",
                    "feat-2.0-0.conda", "feat-1.5-0.conda"}


# ------------------------------------------------------------------------------- the lock
def test_lock_held_exits_3_when_not_waiting(channel, run_cli):
    with ChannelLock(channel.root, timeout=0):
        result = run_cli(main, [channel.root / "noarch", "--lock-timeout", "0"])
    assert result.code == 3
    assert (f"{channel.root}: another cas-index run (pid {os.getpid()}) is indexing this "
            "channel") in result.err
    assert not (channel.root / "noarch/index.html").exists()
    assert run_cli(main, [channel.root]).code == 0  # released: the next run works


def test_second_run_waits_for_the_first(channel):
    from cas_index.channel import Options, index_channel

    waiting = threading.Event()
    outcome = {}

    def second_run():
        outcome["report"] = index_channel(channel.root, options=Options(lock_timeout=60),
                                          on_wait=lambda message: waiting.set())

    with ChannelLock(channel.root, timeout=0):
        runner = threading.Thread(target=second_run)
        runner.start()
        assert waiting.wait(timeout=30), "the second run never reported waiting"
        assert not (channel.root / "index.html").exists()  # it did nothing while waiting
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert outcome["report"].exit_code == 0
    assert (channel.root / "channeldata.json").is_file()


def test_lock_between_processes(channel):
    # a real second process, as a cron run next to a manual one would be
    with ChannelLock(channel.root, timeout=0):
        proc = subprocess.run([CAS_INDEX, str(channel.root), "--lock-timeout", "0"],
                              capture_output=True, text=True, timeout=120,
                              check=False)
    assert proc.returncode == 3, proc
    assert "another cas-index run" in proc.stderr
    proc = subprocess.run([CAS_INDEX, str(channel.root), "-q"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc


# ------------------------------------------------------------------------------- boundaries
def test_cas_index_never_imports_cas_mirror():
    code = ("import sys, cas_index.cli, cas_index.channel, cas_index.package, "
            "cas_index.cache, cas_index.patch, cas_index.current, cas_index.channeldata, "
            "cas_index.html, cas_index.lock, cas_index.repodata, cas_index.atomic, "
            "cas_index.model, cas_index.layout, cas_index.reading, cas_index.subdir; "
            "print(sorted(m for m in sys.modules if m.startswith('cas_')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = eval(proc.stdout)
    assert "cas_index.channel" in loaded
    assert not [m for m in loaded if m.startswith("cas_mirror")], loaded


def test_a_run_with_nothing_to_do_imports_little(channel):
    # start-up is most of a run where nothing changed: the package reader, compression,
    # rattler and the page builders are only imported when there is work
    subprocess.run([CAS_INDEX, str(channel.root), "-q"], check=True, timeout=120)
    code = ("import sys; from cas_index.cli import main; "
            f"code = main([{str(channel.root)!r}, '-q']); "
            "print(code, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('conda_package_streaming', 'rattler', 'yaml', 'zstandard', 'rich', 'tarfile', "
            "'zipfile', 'cas_index')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    status, _, modules = proc.stdout.partition(" ")
    assert status == "0"
    loaded = eval(modules)
    for heavy in ("conda_package_streaming", "rattler", "yaml", "zstandard", "rich",
                  "tarfile", "zipfile", "cas_index.package", "cas_index.html"):
        assert heavy not in loaded, heavy


def test_a_run_with_nothing_to_do_skips_click_and_the_writers(channel):
    # the whole of a warm run is start-up: it reads its ordinary arguments without click,
    # and nothing that only writing needs (compression, msgpack, shards, temporary files,
    # dataclasses, typing, threads) is imported
    subprocess.run([CAS_INDEX, str(channel.root), "-q", "--no-bz2"], check=True, timeout=120)
    code = ("import sys; from cas_index.cli import main; "
            f"code = main([{str(channel.root)!r}, '--no-bz2', '--json', '--subdir', "
            "'linux-64', '--lock-timeout=5']); "
            "print(code, sorted(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    status, _, modules = proc.stderr.strip().splitlines()[-1].partition(" ")
    assert status == "0", proc.stderr
    assert json.loads(proc.stdout)["channels"][0]["subdirs"][0]["unchanged"] is True
    loaded = set(eval(modules))
    for heavy in ("click", "msgspec", "zstandard", "bz2", "tempfile", "dataclasses",
                  "logging", "cas_index.command", "cas_index.shards", "cas_index.shard_files",
                  "cas_index.repodata",
                  "cas_index.patch", "typing", "threading", "concurrent.futures"):
        assert heavy not in loaded, heavy


QUICK_ARGVS = [
    ["chan"],
    ["chan", "other/linux-64", "-q"],
    ["--no-bz2", "chan", "--no-zst", "--no-shards", "--no-run-exports", "--force"],
    ["chan", "--current-repodata", "--quiet", "--json", "--debug"],
    ["chan", "--subdir", "linux-64", "--subdir=noarch", "--threads", "3"],
    ["chan", "--threads=1", "--threads", "2", "--lock-timeout", "0"],
    ["chan", "--lock-timeout=2.5", "--shard-grace-days", "0.5", "--shard-grace-days=inf"],
    ["s3://bucket/chan", "--no-bz2"],
]
CLICK_ONLY_ARGVS = [
    [], ["--help"], ["-h"], ["--version"], ["chan", "--patch", "p.json"], ["--", "-chan"],
    ["chan", "--threads", "0"], ["chan", "--threads", "x"], ["chan", "--threads"],
    ["chan", "--lock-timeout", "-1"], ["chan", "--shard-grace-days", "nan"],
    ["chan", "--subdir", "-q"], ["chan", "--no-such-flag"], ["chan", "-qq"],
    ["chan", "--quiet=yes"], ["chan", "--no-bz"],
]


@pytest.mark.parametrize("argv", QUICK_ARGVS)
def test_the_quick_argument_reader_gives_what_click_gives(argv):
    from cas_index.args import quick_parse
    from cas_index.command import cli

    with cli.make_context("cas-index", list(argv), obj={}) as ctx:
        expected = ctx.params
    assert quick_parse(argv) == expected


@pytest.mark.parametrize("argv", CLICK_ONLY_ARGVS)
def test_anything_else_is_left_to_click(argv):
    from cas_index.args import quick_parse

    assert quick_parse(argv) is None


def test_the_quick_reader_knows_every_option_of_the_click_command():
    # an option added to the click command must be added to args.py too (or every run
    # would go through click, and the quick reader would drop the new parameter)
    from cas_index import args
    from cas_index.command import cli

    assert set(args.DEFAULTS) == {p.name for p in cli.params if p.expose_value}
    with cli.make_context("cas-index", ["chan"], obj={}) as ctx:
        assert {k: v for k, v in args.DEFAULTS.items() if k != "paths"} == {
            k: v for k, v in ctx.params.items() if k != "paths"}
    options = {o for p in cli.params if p.expose_value for o in p.opts if o.startswith("-")}
    assert options - {"--patch"} == set(args.FLAGS) | set(args.VALUED)


def test_disk_full_while_publishing_exits_4(channel, run_cli, monkeypatch):
    import errno

    from cas_index import repodata

    def full(path, data, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(repodata, "write_atomic", full)
    result = run_cli(main, [channel.root])
    assert result.code == 4
    assert "No space left on device" in result.err and len(result.err.splitlines()) == 1
    monkeypatch.undo()
    assert run_cli(main, [channel.root]).code == 0  # the next run publishes everything


def test_pages_escape_what_packages_say(make_channel, run_cli):
    built = make_channel([PkgSpec("sneaky", about={
        "summary": "<script>alert(1)</script>", "home": "javascript:alert(2)",
        "dev_url": "https://example.invalid/dev"})])
    assert run_cli(main, [built.root]).code == 0
    page = (built.root / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "javascript:" not in page
    assert 'href="https://example.invalid/dev"' in page


def test_cache_database_errors_are_reported_not_bugs(channel, run_cli, monkeypatch):
    import sqlite3

    from cas_index.cache import SubdirCache

    def locked(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SubdirCache, "files", locked)
    result = run_cli(main, [channel.root])
    assert result.code == 2
    assert "a cache database failed (database is locked)" in result.err
    assert "are disposable: delete them and rerun" in result.err


def test_a_platform_folder_under_another_name_is_refused(channel, tmp_path, run_cli):
    # a platform folder by mistake (it holds repodata.json and packages directly): one
    # line naming the parent, exit 2, and nothing created inside it
    import shutil

    from tests.support.trees import snapshot

    odd = tmp_path / "elsewhere" / "pkgs-for-linux"
    shutil.copytree(channel.root / "linux-64", odd)
    before = snapshot(odd.parent)
    result = run_cli(main, [odd])
    assert result.code == 2, result
    assert result.err == (
        f"cas-index: error: {odd} holds repodata.json, so it is a platform folder, not a "
        f"channel: give its channel (the parent folder, {odd.parent}) and name the folder "
        "after its platform (linux-64, noarch, ...); nothing was indexed\n")
    assert snapshot(odd.parent) == before and sorted(os.listdir(odd.parent)) == [odd.name]
    assert not (odd / "noarch").exists()


def test_a_folder_of_packages_without_platform_folders_is_refused(tmp_path, run_cli):
    from tests.support.conda_packages import build_package

    folder = tmp_path / "dropped-here"
    build_package(PkgSpec("alpha", subdir="linux-64"), folder)
    result = run_cli(main, [folder])
    assert result.code == 2, result
    assert result.err.startswith(f"cas-index: error: {folder} holds package files but no "
                                 "platform folder: ")
    assert f"the parent folder, {tmp_path}" in result.err
    assert len(result.err.splitlines()) == 1
    assert os.listdir(folder) == ["alpha-1.0-0.conda"]


def test_a_symlinked_platform_folder_is_indexed_in_its_channel(tmp_path, run_cli):
    # chan/linux-64 -> /data/linux-pkgs: the name given says the platform, not the target's
    from tests.support.conda_packages import build_package

    data = tmp_path / "data" / "linux-pkgs"
    build_package(PkgSpec("alpha", subdir="linux-64"), data)
    chan = tmp_path / "chan"
    chan.mkdir()
    (chan / "linux-64").symlink_to(data)
    result = run_cli(main, [chan / "linux-64"])
    assert result.code == 0, result
    assert "alpha-1.0-0.conda" in records(chan / "linux-64")
    assert (chan / "noarch/repodata.json").is_file() and (chan / "channeldata.json").is_file()
    assert not (data / "noarch").exists() and not (data / "channeldata.json").exists()


def test_the_plain_model_classes_behave_as_the_dataclasses_did():
    # model.py dropped dataclasses (import cost on the warm path): keyword and positional
    # construction, defaults, fresh lists per report, read-only options, equality
    from cas_index.model import ChannelReport, Options, Skipped, SubdirReport

    options = Options(shards=False, threads=2)
    assert (options.shards, options.threads, options.bz2) == (False, 2, True)
    assert options == Options(threads=2, shards=False) and options != Options()
    assert hash(options) == hash(Options(threads=2, shards=False))
    with pytest.raises(AttributeError):
        options.bz2 = False
    with pytest.raises(TypeError):
        Options(no_such_option=True)
    first, second = SubdirReport("linux-64"), SubdirReport(subdir="noarch")
    first.added.append("a.conda")
    assert second.added == [] and first.indexed == 0 and second.subdir == "noarch"
    assert Skipped("x/a.conda", "bad") == Skipped(file="x/a.conda", reason="bad")
    report = ChannelReport("root", [first])
    report.subdirs[0].skipped.append(Skipped("linux-64/b.conda", "bad"))
    assert report.exit_code == 1 and "Skipped(file='linux-64/b.conda'" in repr(report)


def test_a_run_with_nothing_to_do_opens_no_cache(channel):
    # the warm check reads the small state file (cas_index/state.py), not the sqlite
    # cache: sqlite3, json and OpenSSL's hashlib stay unimported
    subprocess.run([CAS_INDEX, str(channel.root), "-q"], check=True, timeout=120)
    code = ("import sys; from cas_index.cli import main; "
            f"code = main([{str(channel.root)!r}, '-q']); "
            "print(code, sorted(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    status, _, modules = proc.stderr.strip().splitlines()[-1].partition(" ")
    assert status == "0", proc.stderr
    loaded = set(eval(modules))
    for heavy in ("sqlite3", "_sqlite3", "json", "_hashlib"):
        assert heavy not in loaded, heavy


def test_a_run_with_nothing_to_do_works_on_text_paths(channel):
    # pathlib, with the re, enum, fnmatch and urllib.parse it imports, was a third of a
    # warm run's start-up: the run keeps its paths as text. The child runs without site
    # (-S), so that what an installation's site hooks import does not hide our imports.
    subprocess.run([CAS_INDEX, str(channel.root), "-q"], check=True, timeout=120)
    source = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {source!r}); from cas_index.cli import main; "
            f"code = main([{str(channel.root)!r}, '-q']); "
            "print(code, sorted(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    status, _, modules = proc.stderr.strip().splitlines()[-1].partition(" ")
    assert status == "0", proc.stderr
    loaded = set(eval(modules))
    assert "cas_index.subdir" in loaded
    for heavy in ("pathlib", "re", "enum", "fnmatch", "urllib.parse", "contextlib"):
        assert heavy not in loaded, heavy


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_a_damaged_or_missing_state_file_means_a_check_against_the_cache(channel, run_cli,
                                                                         damage):
    assert run_cli(main, [channel.root]).code == 0
    state = channel.root / "linux-64/.cache/cas-index-state.bin"
    assert state.is_file()
    if damage == "garbage":
        state.write_bytes(b"\xff not marshal")
    else:
        state.unlink()
    (channel.root / "linux-64/tool-9-0.conda").write_bytes(b"")  # a change, seen as one
    result = run_cli(main, [channel.root, "--json"])
    assert result.code == 1 and "empty file" in result.err
    linux = next(s for s in json.loads(result.out)["channels"][0]["subdirs"]
                 if s["subdir"] == "linux-64")
    assert linux["read"] == 1 and not linux["unchanged"]  # the rest came from the cache
    assert state.is_file()
    again = run_cli(main, [channel.root, "--json"])
    linux = next(s for s in json.loads(again.out)["channels"][0]["subdirs"]
                 if s["subdir"] == "linux-64")
    assert linux["unchanged"] and linux["skipped"] == [
        {"file": "linux-64/tool-9-0.conda", "reason": linux["skipped"][0]["reason"]}]
