"""The quick reading of cas-sync's arguments (args.py) gives exactly the options click
gives (command.py), for every spelling of every option of the one table, before and after
`pypi`; anything else is left to click (its --help, usage errors and refusals); and a run
read quickly does not import click."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cas_mirror import cli
from cas_mirror.args import quick_parse
from cas_mirror.console import run_command
from cas_mirror.options import OPTIONS, PYPI

# One value per option that takes one (what a user would type).
VALUES = {"explain": "alpha", "condarc": "http://127.0.0.1:8080", "pip_conf": "http://127.0.0.1:8080/x",
          "config": "/tmp/extra.yml", "mirror_config": "/tmp/m.yml",
          "bandersnatch_config": "/tmp/bs.conf", "mirror_dir": "/srv/mirror",
          "remote_url": "http://127.0.0.1:9/x", "channel": "conda-forge",
          "platform": "linux-64", "workers": "3", "timeout": "7", "retries": "0",
          "proxy": "http://127.0.0.1:3128", "ca_bundle": "/tmp/ca.pem",
          "minimum_free_space": "5 GB", "diff_file": "/tmp/list",
          "from_lock": "/tmp/pixi.lock"}


def spelling_cases() -> list[list[str]]:
    """Every spelling of every option, in each form it can be typed, placed wherever it
    applies: alone (the conda sync), before and after `pypi`."""
    cases = []
    for opt in OPTIONS:
        for decl in opt.decls:
            if opt.kind in ("flag", "count"):
                forms = [[decl]]
            else:
                value = VALUES[opt.name]
                forms = [[decl, value]]
                forms.append([decl + value] if len(decl) == 2 else [f"{decl}={value}"])
            for form in forms:
                if "conda" in opt.commands:
                    cases.append(form)
                if PYPI in opt.commands:
                    cases += [[*form, "pypi"], ["pypi", *form]]
    return cases


COMBINED = [
    [],
    ["pypi"],
    ["-vv"], ["-v", "-v", "-v"], ["-v", "pypi", "-vv"], ["-qk"], ["-vqf", "/tmp/c.yml"],
    ["-kf/tmp/c.yml", "--show"],
    ["--workers", "2", "--workers", "5"], ["--workers", "2", "pypi", "--num-threads", "5"],
    ["--channel", "a", "--upstream-channel", "b", "--platform", "linux-64"],
    ["--from-lock", "a.lock", "pypi", "--from-lock", "b.lock"],
    ["--show", "--json", "-f", "/tmp/c.yml", "--mirror-dir", "", "pypi", "--dry-run"],
    ["--mirror-dir", "pypi"],  # a value that is the subcommand's name is a value
    ["--minimum-free-space=", "--timeout=1.5", "--debug", "--verify", "--keep-removed"],
]

CLICK_ONLY = [
    ["--help"], ["-h"], ["pypi", "--help"], ["--version"], ["pypi", "--version"],
    ["export", "/tmp/b"], ["import", "/tmp/b"], ["pypi", "pypi"], ["sync"], ["--"],
    ["-"], ["--show=yes"], ["-vx"], ["--unknown"], ["--mirror-dir"], ["-f"],
    ["--explain", "-x"], ["-f", "-q"], ["-f-q"],
    ["pypi", "--explain", "alpha"], ["--channel", "x", "pypi"], ["--mirror-config", "x"],
    ["-k", "--bandersnatch-config=x"],
]


def click_reads(argv: list[str], monkeypatch) -> tuple[str, dict]:
    """(command, options) as the click commands hand them to the run."""
    seen = []
    monkeypatch.setattr(cli, "run", lambda command, options, session:
                        seen.append((command, dict(options))) or 0)
    from cas_mirror.command import cli as click_cli

    assert run_command(click_cli, "cas-sync", list(argv)) == 0
    [read] = seen
    return read


@pytest.mark.parametrize("argv", spelling_cases() + COMBINED, ids=" ".join)
def test_the_quick_reader_gives_what_click_gives(argv, monkeypatch):
    quick = quick_parse(argv)
    assert quick is not None
    assert (quick[0], dict(quick[1])) == click_reads(argv, monkeypatch)


def test_every_option_spelling_has_a_case():
    typed = {arg for case in spelling_cases() for arg in case}
    for opt in OPTIONS:
        for decl in opt.decls:
            assert decl in typed or any(a.startswith(decl) for a in typed), decl


@pytest.mark.parametrize("argv", CLICK_ONLY, ids=" ".join)
def test_anything_else_is_left_to_click(argv):
    assert quick_parse(argv) is None


def test_click_refuses_what_the_quick_reader_leaves(run_cli, isolated_config):
    result = run_cli(cli.main, ["pypi", "--explain", "alpha"])
    assert result.code == 2
    assert "--explain is an option of the conda sync" in result.err
    assert run_cli(cli.main, ["--workers"]).code == 2


def _fresh(args: list[str], seen) -> tuple[int, set[str], str]:
    code = ("import json, sys\nfrom cas_mirror.cli import main\ncode = main(sys.argv[1:])\n"
            f"open({str(seen)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(seen.read_text())
    return status, set(modules), done.stdout


@pytest.mark.parametrize("args", [["--show", "--json", "-v"], ["pypi", "--show", "--json"],
                                  ["-q", "pypi", "--show"]], ids=" ".join)
def test_a_run_read_quickly_does_not_import_click(args, isolated_config, tmp_path):
    isolated_config.write_user(f"mirror_dir: {tmp_path / 'mirror'}\n")
    status, modules, out = _fresh(args, tmp_path / "modules.json")
    assert status == 0 and "mirror_dir" in out
    assert "click" not in modules
    status, modules, out = _fresh([*args, "--help"], tmp_path / "modules.json")
    assert status == 0 and "Usage:" in out and "click" in modules
