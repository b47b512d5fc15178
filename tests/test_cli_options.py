"""cas-sync's options: every one means the same before or after `pypi` (or is refused with
a message saying where it goes), a flag's value is checked like the same value in a file,
conda-mirror's names work, and click's own usage errors are one line.

Each case observes the option's effect (--show --json, a real sync against a loopback
upstream), not only that the command line parsed."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

import cas_mirror.pypi.sync
from cas_mirror.cli import main
from cas_mirror.options import OPTIONS
from tests.support.pypi_packages import SimpleUpstream


@pytest.fixture
def upstream(tmp_path, http_server):
    up = SimpleUpstream(tmp_path / "upstream")
    up.server = http_server(tmp_path / "upstream")
    up.serve(up.server)
    up.add("alpha", "1.0")
    return up


@pytest.fixture
def pypi_mirror(tmp_path, isolated_config, upstream):
    """A user file configuring a PyPI mirror of `upstream` in tmp_path/mirror."""
    mirror = tmp_path / "mirror"
    isolated_config.write_user(yaml.safe_dump({
        "mirror_dir": str(mirror), "minimum_free_space": 0, "retries": 1,
        "retry_backoff": 0.01, "timeout": 5,
        "pypi": {"remote_url": upstream.url, "workers": 2}}))
    return mirror


def placed(fragment: list[str], where: str, *rest: str) -> list[str]:
    """`fragment` before or after the `pypi` subcommand, then `rest` after it."""
    if where == "before":
        return [*fragment, "pypi", *rest]
    return ["pypi", *fragment, *rest]


def package_files(mirror: Path) -> list[Path]:
    root = mirror / "pypi" / "web" / "packages"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --------------------------------------------------------------------------- the table

# Configuration flags, every spelling: (argv fragment, what `cas-sync pypi --show --json`
# then shows). A path is relative to tmp_path.
PYPI_OVERRIDES = {
    "--mirror-dir": (["--mirror-dir", "{tmp}/elsewhere"], "mirror_dir", "{tmp}/elsewhere"),
    "--target-directory": (["--target-directory", "{tmp}/t"], "mirror_dir", "{tmp}/t"),
    "--remote-url": (["--remote-url", "http://127.0.0.1:9/x/"], "remote_url",
                     "http://127.0.0.1:9/x"),
    "--workers": (["--workers", "3"], "workers", 3),
    "--num-threads": (["--num-threads", "5"], "workers", 5),
    "--timeout": (["--timeout", "7"], "timeout", 7.0),
    "--retries": (["--retries", "0"], "retries", 0),
    "--max-retries": (["--max-retries", "0"], "retries", 0),
    "--proxy": (["--proxy", "http://127.0.0.1:3128"], "proxy", "http://127.0.0.1:3128"),
    "--ca-bundle": (["--ca-bundle", "{tmp}/ca.pem"], "ssl_verify", "{tmp}/ca.pem"),
    "--no-ssl-verify": (["--no-ssl-verify"], "ssl_verify", False),
    "-k": (["-k"], "ssl_verify", False),
    "--insecure": (["--insecure"], "ssl_verify", False),
    "--minimum-free-space": (["--minimum-free-space", "5 GB"], "minimum_free_space",
                             5_000_000_000),
    "--minimum-free-disk": (["--minimum-free-disk", "0"], "minimum_free_space", 0),
    "--keep-removed": (["--keep-removed"], "keep_removed", True),
    "--diff-file": (["--diff-file", "{tmp}/list"], "diff_file", "{tmp}/list"),
    "-f": (["-f", "{tmp}/extra.yml"], "workers", 6),
    "--config": (["--config", "{tmp}/extra.yml"], "workers", 6),
    "--mirror-config": (["--mirror-config", "{tmp}/mirror.yml"], "latest_only", True),
    "--bandersnatch-config": (["--bandersnatch-config", "{tmp}/bs.conf"], "user", "bs"),
}
# The options only the conda sync has: refused for pypi, wherever typed.
CONDA_ONLY = {
    "--explain": ["--explain", "alpha"],
    "--condarc": ["--condarc", "http://127.0.0.1:8080"],
    "--channel": ["--channel", "conda-forge"],
    "--upstream-channel": ["--upstream-channel", "conda-forge"],
    "--platform": ["--platform", "linux-64"],
}
# The others: observed one by one below.
ACTIONS = {"--show", "--json", "--dry-run", "--verify", "-q", "--quiet", "-v", "--verbose",
           "--pip-conf", "--debug",
           "--from-lock"}  # observed by tests/test_lockfiles_conda.py and _pypi.py


def test_every_option_spelling_has_a_case():
    spellings = {decl for opt in OPTIONS for decl in opt.decls}
    assert spellings == set(PYPI_OVERRIDES) | set(CONDA_ONLY) | ACTIONS


def _fill(value, tmp: Path):
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("spelling", sorted(PYPI_OVERRIDES))
def test_a_configuration_flag_takes_effect_before_or_after_pypi(run_cli, pypi_mirror, tmp_path,
                                                                 spelling, where):
    (tmp_path / "ca.pem").write_text("not really a bundle, but a file")
    (tmp_path / "extra.yml").write_text("pypi:\n  workers: 6\n")
    (tmp_path / "mirror.yml").write_text("latest_only: true\n")
    (tmp_path / "bs.conf").write_text(f"[mirror]\ndirectory = {tmp_path}/bs\n")
    fragment, key, expected = PYPI_OVERRIDES[spelling]
    fragment = [_fill(part, tmp_path) for part in fragment]
    result = run_cli(main, placed(fragment, where, "--show", "--json"))
    assert result.code == 0, result
    shown = json.loads(result.out)
    value = shown["mirror_dir"] if key == "mirror_dir" else shown["values"][key]
    assert value == _fill(expected, tmp_path)
    if key != "mirror_dir" and spelling not in ("-f", "--config", "--mirror-config",
                                                      "--bandersnatch-config"):
        # a flag wins over the pypi: section of the files, and says so
        assert "command line" in shown["origins"][key]


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("spelling", sorted(CONDA_ONLY))
def test_a_conda_only_option_is_refused_for_pypi(run_cli, pypi_mirror, spelling, where):
    result = run_cli(main, placed(CONDA_ONLY[spelling], where))
    assert result.code == 2, result
    assert result.out == ""
    assert re.fullmatch(r"cas-sync: error: --\S+ is an option of the conda sync \(cas-sync "
                        r"--\S+ \S+.*\); cas-sync pypi has no such option.*\n", result.err)
    assert not pypi_mirror.exists()  # no sync ran


def test_mirror_config_is_refused_for_the_conda_sync(run_cli, isolated_config, tmp_path):
    (tmp_path / "mirror.yml").write_text("latest_only: true\n")
    (tmp_path / "bs.conf").write_text(f"[mirror]\ndirectory = {tmp_path}/bs\n")
    result = run_cli(main, ["--mirror-config", tmp_path / "mirror.yml", "--show"])
    assert result.code == 2, result
    assert "--mirror-config is an option of cas-sync pypi" in result.err


@pytest.mark.parametrize("where", ["before", "after"])
def test_show_and_json(run_cli, pypi_mirror, where):
    shown = run_cli(main, placed(["--show"], where))
    assert shown.code == 0 and shown.out.startswith("# Effective cas-sync pypi configuration")
    as_json = run_cli(main, placed(["--json"], where, "--show"))
    assert as_json.code == 0 and json.loads(as_json.out)["tree"].endswith("/pypi/web")
    assert not pypi_mirror.exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_dry_run_changes_nothing(run_cli, pypi_mirror, upstream, where):
    result = run_cli(main, placed(["--dry-run"], where))
    assert result.code == 0, result
    assert "dry run: nothing changed" in result.out and "alpha" in result.out
    assert not pypi_mirror.exists()
    assert not [r for r in upstream.server.requests if r.path.startswith("/packages/")]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verify(run_cli, pypi_mirror, upstream, where):
    quiet = run_cli(main, placed(["-q"], where))
    assert quiet.code == 0 and quiet.out == "" and quiet.err == "", quiet
    [wheel] = [p for p in package_files(pypi_mirror) if p.name.endswith(".whl")]
    good = wheel.read_bytes()
    stat = wheel.stat()
    wheel.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
    import os

    os.utime(wheel, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time
    assert run_cli(main, ["pypi", "--quiet"]).code == 0
    assert wheel.read_bytes() != good  # a plain sync trusts size and time
    verify = run_cli(main, placed(["--verify"], where, "--quiet"))
    assert verify.code == 0, verify
    assert hashlib.sha256(wheel.read_bytes()).digest() == hashlib.sha256(good).digest()


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flag", ["-v", "--verbose"])
def test_verbose_logs_the_run(run_cli, pypi_mirror, upstream, where, flag):
    result = run_cli(main, placed([flag], where))
    assert result.code == 0, result
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO cas_mirror\.pypi\.cli: pypi sync: "
                     + re.escape(upstream.url), result.err, re.MULTILINE), result.err
    assert "DEBUG" not in result.err
    quiet = run_cli(main, placed(["--quiet"], where))
    assert quiet.err == "" and quiet.out == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_pip_conf(run_cli, pypi_mirror, where):
    result = run_cli(main, placed(["--pip-conf", "http://127.0.0.1:8080"], where))
    assert result.code == 0, result
    assert "index-url" in result.out and "127.0.0.1:8080" in result.out
    assert not pypi_mirror.exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_bug(run_cli, pypi_mirror, monkeypatch, where):
    real_run_sync = cas_mirror.pypi.sync.run_sync

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cas_mirror.pypi.sync, "run_sync", broken)
    plain = run_cli(main, ["pypi"])
    assert plain.code == 70 and "internal error" in plain.err and "Traceback" not in plain.err
    debug = run_cli(main, placed(["--debug"], where))
    assert debug.code == 70
    assert "Traceback (most recent call last)" in debug.err and "RuntimeError: a bug" in debug.err
    monkeypatch.setattr(cas_mirror.pypi.sync, "run_sync", real_run_sync)
    logged = run_cli(main, placed(["--debug"], where))  # and it logs at DEBUG, as -vv
    assert logged.code == 0, logged
    assert re.search(r" DEBUG cas_mirror\.output: fetched " + re.escape("http://127.0.0.1:")
                     + r"\d+/\S+\.whl", logged.err), logged.err


def test_debug_is_an_option_not_a_word_of_the_command_line(run_cli, pypi_mirror, monkeypatch,
                                                           tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cas_mirror.pypi.sync, "run_sync", broken)
    result = run_cli(main, ["pypi", "--diff-file", "--debug"])  # a file named --debug
    assert result.code == 70 and "internal error" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("args", [["--version"], ["pypi", "--version"]])
def test_version_before_or_after_pypi(run_cli, args):
    result = run_cli(main, args)
    assert result.code == 0 and re.fullmatch(r"cas-sync, version \S+\n", result.out)


# --------------------------------------------------------------------------- the conda side

CONDA_OVERRIDES = {
    "--channel": (["--channel", "conda-forge"], "channels", ["conda-forge"]),
    "--upstream-channel": (["--upstream-channel", "a/b", "--channel", "c"], "channels",
                           ["a/b", "c"]),
    "--platform": (["--platform", "osx-64"], "platforms", ["osx-64", "noarch"]),
    "--target-directory": (["--target-directory", "{tmp}/t"], "mirror_dir", "{tmp}/t"),
    "--num-threads": (["--num-threads", "5"], "workers", 5),
    "--max-retries": (["--max-retries", "0"], "retries", 0),
    "--workers": (["--workers", "1"], "workers", 1),
    "--minimum-free-disk": (["--minimum-free-disk", "2 GiB"], "minimum_free_space", 2 << 30),
    "-k": (["-k"], "ssl_verify", False),
    "--insecure": (["--insecure"], "ssl_verify", False),
    "--remote-url": (["--remote-url", "http://127.0.0.1:9"], "remote_url",
                     "http://127.0.0.1:9"),
    "--timeout": (["--timeout", "0.5"], "timeout", 0.5),
}


@pytest.mark.parametrize("spelling", sorted(CONDA_OVERRIDES))
def test_conda_flags_and_aliases_take_effect(run_cli, isolated_config, tmp_path, spelling):
    fragment, key, expected = CONDA_OVERRIDES[spelling]
    result = run_cli(main, [*(_fill(p, tmp_path) for p in fragment), "--show", "--json"])
    assert result.code == 0, result
    shown = json.loads(result.out)
    assert shown["values"][key] == _fill(expected, tmp_path)
    assert shown["origins"][key].startswith("command line")


# --------------------------------------------------------------------------- item 2

# (key, the same text typed as a flag value and written in a file)
VALUES = [("retries", "0"), ("retries", "-1"), ("retries", "two"), ("retries", "2.5"),
          ("workers", "0"), ("workers", "1"), ("timeout", "0"), ("timeout", "-3"),
          ("timeout", "0.25"), ("minimum_free_space", "0"), ("minimum_free_space", "5 GB"),
          ("minimum_free_space", "0.05"), ("minimum_free_space", "lots"), ("timeout", ""),
          ("workers", "[2]"), ("retries", "true")]


def _outcome(result, key: str):
    """The value shown, or the error message after its 'where' part."""
    if result.code == 0:
        return ("value", json.loads(result.out)["values"][key])
    assert result.code == 2, result
    return ("error", result.err.split(": key ", 1)[1])


@pytest.mark.parametrize("command", ["conda", "pypi"])
@pytest.mark.parametrize(("key", "text"), VALUES)
def test_a_flag_value_is_checked_like_the_same_value_in_a_file(run_cli, isolated_config,
                                                               tmp_path, command, key, text):
    flag = "--" + key.replace("_", "-")
    prefix = ["pypi"] if command == "pypi" else []
    file = tmp_path / "values.yml"
    if command == "pypi":
        file.write_text(f"pypi:\n  {key}: {text}\n")
    else:
        file.write_text(f"{key}: {text}\n")
    from_file = run_cli(main, [*prefix, "-f", file, "--show", "--json"])
    from_flag = run_cli(main, [*prefix, flag, text, "--show", "--json"])
    assert _outcome(from_flag, key) == _outcome(from_file, key)
    if from_flag.code:
        assert from_flag.err.startswith(f"cas-sync: error: command line: {flag}: key ")


def test_zero_is_not_the_default(run_cli, isolated_config):
    result = run_cli(main, ["--retries", "0", "--show", "--json"])
    assert json.loads(result.out)["values"]["retries"] == 0
    refused = run_cli(main, ["--timeout", "0", "--show"])
    assert refused.code == 2
    assert refused.err == ("cas-sync: error: command line: --timeout: key 'timeout': expected "
                           "a number of seconds > 0, got 0 (int)\n")


# --------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("args", [["--help"], ["pypi", "--help"]])
def test_help_shows_path_and_url_metavars_and_the_aliases(run_cli, args):
    result = run_cli(main, args)
    assert result.code == 0
    assert "TEXT" not in result.out
    text = " ".join(result.out.split())
    for shown in ("--mirror-dir, --target-directory PATH", "--remote-url URL", "-f, --config PATH",
                  "--proxy URL", "--ca-bundle PATH", "--diff-file PATH", "--pip-conf URL",
                  "--workers, --num-threads N", "--retries, --max-retries N",
                  "-k, --no-ssl-verify, --insecure",
                  "--minimum-free-space, --minimum-free-disk SIZE", "conda-mirror's name",
                  "Exit status:", "4 stopped early"):
        assert shown in text, shown
    if args[0] == "--help":
        assert "--channel, --upstream-channel CHANNEL" in text
        assert "--explain NAME" in text and "--condarc URL" in text
    else:
        assert "--mirror-config PATH" in text and "--explain NAME" not in text


@pytest.mark.parametrize("args", [["--bogus"], ["pypi", "--bogus"], ["--workers"],
                                  ["pypi", "--timeout"], ["--json", "extra-argument"],
                                  ["pypi", "--unknown=1"]])
def test_usage_errors_are_one_line(run_cli, isolated_config, args):
    result = run_cli(main, args)
    assert result.code == 2, result
    assert result.out == ""
    assert re.fullmatch(r"cas-sync: error: [^\n]+ \(see cas-sync( pypi)? --help\)\n",
                        result.err), result.err
    assert "Usage:" not in result.err and "Try " not in result.err
