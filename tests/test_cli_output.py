"""What reaches the user from a real run: -v log lines (timestamped, one per record),
--quiet, failures grouped by cause and capped, untrusted upstream text escaped in every
line, and environment problems as one line with a documented exit status."""

from __future__ import annotations

import errno
import json
import logging
import re
from pathlib import Path

import click
import pytest
import yaml

from cas_mirror.cli import main
from cas_mirror.console import run_command
from cas_mirror.logs import logging_to_stderr
from cas_mirror.output import FAILURE_LINES, Output, failure_lines, plain_table
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.http_server import free_port
from tests.support.pypi_packages import SimpleUpstream

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
HOSTILE = "\x1b[2J\nforged line \x00"


@pytest.fixture
def conda(tmp_path, isolated_config, http_server):
    """A conda upstream of 30 linux-64 packages on loopback, mirrored into tmp_path/mirror."""
    root = tmp_path / "upstream"
    channel = build_channel(root / "pkgs/main",
                            [PkgSpec(f"p{i:02d}", subdir="linux-64") for i in range(30)])
    server = http_server(root)
    isolated_config.write_user(yaml.safe_dump({
        "remote_url": server.url, "mirror_dir": str(tmp_path / "mirror"),
        "platforms": ["linux-64"], "retries": 0, "retry_backoff": 0.01, "timeout": 5,
        "minimum_free_space": 0, "workers": 2}))
    return channel, server


def log_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if re.match(rf"{STAMP} (INFO|DEBUG) ", line)]


# --------------------------------------------------------------------------- item 3


def test_verbose_logs_a_real_run_and_quiet_prints_nothing(run_cli, conda):
    _, server = conda
    quiet = run_cli(main, ["--quiet"])
    assert quiet.code == 0 and quiet.out == "" and quiet.err == "", quiet
    plain = run_cli(main, [])
    assert plain.code == 0 and log_lines(plain.err) == []
    verbose = run_cli(main, ["-v"])
    assert verbose.code == 0, verbose
    lines = log_lines(verbose.err)
    assert any(re.fullmatch(rf"{STAMP} INFO cas_mirror\.cli: conda sync: pkgs/main from "
                            rf"{re.escape(server.url)} into \S+mirror, platforms linux-64, "
                            r"noarch", line) for line in lines), verbose.err
    assert not any(" DEBUG " in line for line in lines)


def test_very_verbose_logs_each_file_fetched(run_cli, conda):
    result = run_cli(main, ["-vv"])
    assert result.code == 0, result
    fetched = [line for line in log_lines(result.err)
               if re.fullmatch(rf"{STAMP} DEBUG cas_mirror\.output: fetched "
                               + re.escape("http://127.0.0.1:")
                               + r"\d+/pkgs/main/linux-64/p\d\d-1\.0-0\.conda \([\d.]+ K?B\)",
                               line)]
    assert len(fetched) == 30, result.err



def test_the_per_file_debug_line_is_built_only_with_vv(run_cli, conda, monkeypatch):
    """A cold sync reports thousands of files: without -vv no per-file line is formatted."""
    import cas_mirror.output as output

    sized = []
    monkeypatch.setattr(output, "human_bytes", lambda n: sized.append(n) or f"{n} B")
    assert run_cli(main, ["--quiet"]).code == 0
    assert sized == []

def test_the_log_formatter_escapes_control_characters(capsys):
    with logging_to_stderr(logging.DEBUG):
        logging.getLogger("cas_mirror.somewhere").info("got %s from upstream", HOSTILE)
        logging.getLogger("cas_index.elsewhere").debug("plain")
    logging.getLogger("cas_mirror.somewhere").warning("after: not ours to print")
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "\x1b" not in err and "\x00" not in err
    first, second = err.splitlines()
    assert re.fullmatch(rf"{STAMP} INFO cas_mirror\.somewhere: got \\x1b\[2J\\nforged line "
                        r"\\x00 from upstream", first)
    assert re.fullmatch(rf"{STAMP} DEBUG cas_index\.elsewhere: plain", second)


# --------------------------------------------------------------------------- item 7


def test_failures_of_one_cause_are_one_line_and_json_lists_all(run_cli, conda):
    _, server = conda
    server.add_fault("*.conda", status=500)
    result = run_cli(main, [])
    assert result.code == 1, result
    failures = result.out.split("failures:\n", 1)[1].splitlines()
    assert len(failures) == 1, result.out
    assert re.fullmatch(r"  pkgs/main/linux-64: \S+/p\d\d-1\.0-0\.conda: .*500.* \(and 29 more "
                        r"with the same error: p\d\d-1\.0-0\.conda, .*, \.\.\.\)", failures[0])
    live = [line for line in result.err.splitlines() if " error: " in line]
    assert len(live) == 2, result.err  # the first failure of the cause, then a count
    assert "and 29 more failed files" in live[1]
    as_json = run_cli(main, ["--json"])
    [platform] = [p for p in json.loads(as_json.out)["platforms"] if p["platform"] == "linux-64"]
    assert len(platform["failures"]) == 30


def test_a_run_wide_condition_is_one_line(run_cli, conda, isolated_config):
    config = yaml.safe_load(isolated_config.user.read_text())
    isolated_config.write_user(yaml.safe_dump({**config, "minimum_free_space": "1000 TB"}))
    result = run_cli(main, [])
    assert result.code == 4, result
    failures = result.out.split("failures:\n", 1)[1].splitlines()
    assert len(failures) == 1, result.out
    assert re.fullmatch(r"  stopped early: not enough free space in \S+: .* \(30 files not "
                        r"downloaded\)", failures[0])
    live = [line for line in result.err.splitlines() if "not enough free space" in line]
    assert len(live) <= 2, result.err  # the first file's line and the sync's "stopped" line
    as_json = run_cli(main, ["--json"])
    [platform] = [p for p in json.loads(as_json.out)["platforms"] if p["platform"] == "linux-64"]
    assert len(platform["failures"]) == 30


def test_failure_lines_are_capped_and_counted():
    failures = [("pkgs/main/linux-64", f"f{i}.conda", f"reason number {i}") for i in range(25)]
    failures += [("pkgs/main/noarch", "", "http://127.0.0.1:1/a: connection refused"),
                 ("pkgs/main/linux-64", "", "http://127.0.0.1:1/b: connection refused")]
    lines = failure_lines(failures)
    assert len(lines) == FAILURE_LINES + 1
    assert lines[0] == "  pkgs/main/linux-64: f0.conda: reason number 0"
    assert lines[-1] == "  and 7 more failures; --json has all"
    grouped = failure_lines(failures[-2:])
    assert grouped == [("  pkgs/main/noarch: http://127.0.0.1:1/a: connection refused (and 1 "
                        "more with the same error: pkgs/main/linux-64)")]


def test_live_failure_lines_are_capped(capsys):
    from cas_mirror.net import DownloadJob, DownloadResult

    output = Output(stream=None, interactive=False)
    progress = output.progress("conda")
    progress.start(40, 0)
    for i in range(40):
        job = DownloadJob(url=f"http://127.0.0.1:1/f{i}.conda", dest=Path(f"/nonexistent/f{i}"))
        progress.file_done(DownloadResult(job=job, ok=False, error=f"distinct problem {i}"))
    progress.finish()
    err = [line for line in capsys.readouterr().err.splitlines() if " error: " in line]
    assert len(err) == FAILURE_LINES + 1
    assert "and 20 more failed files" in err[-1]


# --------------------------------------------------------------------------- item 8


def test_hostile_conda_names_are_escaped_everywhere(run_cli, conda, tmp_path):
    folder = tmp_path / "upstream/pkgs/main/linux-64"
    doc = json.loads((folder / "repodata.json").read_text())
    record = dict(doc["packages.conda"]["p00-1.0-0.conda"])
    evil = f"p00{HOSTILE}-1.0-0.conda"
    doc["packages.conda"][evil] = {**record, "name": f"p00{HOSTILE}"}
    (folder / "repodata.json").write_text(json.dumps(doc))
    for args in ([], ["--dry-run"], ["--quiet"], ["-vv"], ["--explain", "p00*"]):
        result = run_cli(main, args)
        assert result.code == 1 or args[:1] == ["--explain"], result
        for stream in (result.out, result.err):
            assert "\x1b" not in stream and "\x00" not in stream, (args, stream)
            assert not any(line.startswith("forged line") for line in stream.splitlines())
        if args != ["--explain", "p00*"]:
            assert "p00\\x1b[2J\\nforged line \\x00-1.0-0.conda" in result.out + result.err


def test_hostile_pypi_names_are_escaped(run_cli, tmp_path, isolated_config, http_server):
    up = SimpleUpstream(tmp_path / "upstream")
    up.server = http_server(tmp_path / "upstream")
    up.serve(up.server)
    up.add("alpha", "1.0")
    root = json.loads(up.root_json())
    root["projects"].append({"name": f"evil{HOSTILE}", "_last-serial": 1})
    up.server.add_fault("/simple/", body=json.dumps(root).encode())
    good = up.find("alpha-1.0.tar.gz")[1]
    page = json.loads(up.project_json("alpha"))
    page["files"].append({**up.file_entry(good), "filename": f"alpha-2.0{HOSTILE}.tar.gz",
                          "url": f"../../packages/aa/alpha-2.0{HOSTILE}.tar.gz"})
    up.server.add_fault("/simple/alpha/", body=json.dumps(page).encode())
    isolated_config.write_user(yaml.safe_dump({
        "mirror_dir": str(tmp_path / "mirror"), "minimum_free_space": 0,
        "pypi": {"remote_url": up.url, "retries": 0, "timeout": 5}}))
    for args in (["pypi"], ["pypi", "--quiet"], ["pypi", "--dry-run"], ["pypi", "-vv"]):
        result = run_cli(main, args)
        assert result.code == 1, result
        for stream in (result.out, result.err):
            assert "\x1b" not in stream and "\x00" not in stream, (args, stream)
            assert not any(line.startswith("forged line") for line in stream.splitlines())
        assert "evil\\x1b[2J\\nforged line \\x00" in result.out + result.err, result
        assert "alpha-2.0\\x1b[2J\\nforged line \\x00.tar.gz" in result.out + result.err


def test_tables_escape_their_cells(capsys):
    import sys

    plain_table(f"title {HOSTILE}", ["a", "b"], [[f"name{HOSTILE}", "1"]], sys.stdout)
    out = capsys.readouterr().out
    assert out.count("\n") == 4 and "\x1b" not in out and "\x00" not in out
    assert "name\\x1b[2J\\nforged line \\x00  1" in out


def test_output_lines_and_error_messages_are_escaped(capsys, tmp_path, isolated_config,
                                                     run_cli):
    output = Output(stream=None, interactive=False)
    output.info(f"info {HOSTILE}")
    output.warn(f"warn {HOSTILE}")
    output.error(f"error {HOSTILE}")
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "\x1b" not in err and "\x00" not in err
    bad = tmp_path / "conf\x1b[2J\nforged.yml"
    bad.write_text("[1, 2]\n")
    result = run_cli(main, ["-f", bad, "--show"])
    assert result.code == 2
    assert result.err.count("\n") == 1 and "\x1b" not in result.err, result.err


# --------------------------------------------------------------------------- item 5


def test_a_mirror_dir_that_is_a_file_is_one_line_exit_2(run_cli, conda, isolated_config,
                                                        tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    config = yaml.safe_load(isolated_config.user.read_text())
    for mirror_dir in (blocker, blocker / "mirror"):
        isolated_config.write_user(yaml.safe_dump({**config, "mirror_dir": str(mirror_dir)}))
        result = run_cli(main, [])
        assert result.code == 2, result
        assert "internal error" not in result.err and "Traceback" not in result.err
        [line] = [x for x in result.err.splitlines() if "error:" in x]
        assert str(blocker) in line, result.err


@pytest.mark.parametrize(("problem", "status", "text"), [
    (PermissionError(errno.EACCES, "Permission denied", "/srv/mirror/pkgs"), 2,
     "/srv/mirror/pkgs: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/srv/mirror/x.json"), 2,
     "/srv/mirror/x.json: read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device", "/srv/mirror/.tmp-x"), 4,
     "/srv/mirror/.tmp-x: no space left on device"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/srv/file/sub"), 2,
     "/srv/file/sub: a path component is a file, not a folder"),
])
def test_an_environment_problem_is_one_line_with_its_exit_status(capsys, problem, status,
                                                                 text):
    @click.command()
    def command():
        raise problem

    assert run_command(command, "cas-sync", []) == status
    assert capsys.readouterr().err == f"cas-sync: error: {text}\n"


def test_a_network_oserror_is_still_a_bug(capsys):
    @click.command()
    def command():
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    assert run_command(command, "cas-sync", []) == 70
    assert "internal error" in capsys.readouterr().err


def _error_lines(err: str, needle: str) -> list[str]:
    return [line for line in err.splitlines() if " error: " in line and needle in line]


def test_an_unreachable_conda_upstream_is_one_line_for_all_platforms(run_cli, tmp_path,
                                                                      isolated_config):
    isolated_config.write_user(yaml.safe_dump({
        "remote_url": f"http://127.0.0.1:{free_port()}", "mirror_dir": str(tmp_path / "m"),
        "platforms": ["linux-64", "osx-64", "win-64"], "retries": 0, "timeout": 5,
        "minimum_free_space": 0}))
    result = run_cli(main, [])
    assert result.code == 1, result
    live = _error_lines(result.err, "cannot connect")
    assert len(live) == 1, result.err  # not one per platform (4 with noarch)
    assert any("and 3 more failures (same causes as above" in line
               for line in result.err.splitlines()), result.err
    failures = result.out.split("failures:\n", 1)[1].splitlines()
    assert len(failures) == 1 and "(and 3 more with the same error" in failures[0], result.out


def test_an_unreachable_pypi_upstream_is_one_line_for_all_projects(run_cli, tmp_path,
                                                                    isolated_config,
                                                                    http_server):
    up = SimpleUpstream(tmp_path / "upstream")
    up.server = http_server(tmp_path / "upstream")
    up.serve(up.server)
    for name in ("alpha", "beta", "gamma", "delta"):
        up.add(name, "1.0")
    up.server.add_fault("/simple/?*/", status=503)  # the listing works, every page fails
    isolated_config.write_user(yaml.safe_dump({
        "mirror_dir": str(tmp_path / "mirror"), "minimum_free_space": 0,
        "pypi": {"remote_url": up.url, "retries": 0, "timeout": 5}}))
    result = run_cli(main, ["pypi"])
    assert result.code == 1, result
    live = _error_lines(result.err, "503")
    assert len(live) == 1, result.err  # not one per project
    assert any("and 3 more failures" in line for line in result.err.splitlines()), result.err
