"""The pypi: section, --mirror-config (the Anaconda PyPI mirror's files) and
`cas-sync pypi --show`."""

from __future__ import annotations

import json

import pytest
import yaml

from cas_mirror.cli import main
from tests.support.reference import DOCUMENTED

ANACONDA_SEED = """\
whitelist:
  - requests
  - six
  - numpy
  - simplejson
latest_only: true
remote_url: http://pypimirror.invalid/
use_xml_rpc: false
"""


def show(run_cli, *args):
    result = run_cli(main, ["pypi", "--show", "--json", *args])
    assert result.code == 0, result
    return json.loads(result.out)


def test_defaults_and_inherited_top_level_values(run_cli, isolated_config):
    isolated_config.write_user("workers: 3\nmirror_dir: /srv/mirror\n")
    shown = show(run_cli)
    values, origins = shown["values"], shown["origins"]
    upstream = DOCUMENTED["pypi"]["remote_url"]
    assert values["remote_url"] == upstream and values["user"] == "pypi"
    assert values["simple_format"] == "ALL" and values["use_serial"] is True
    assert shown["simple_url"] == f"{upstream}/simple/"
    assert shown["xml_rpc_api_url"] == f"{upstream}/pypi"
    assert shown["tree"] == "/srv/mirror/pypi/web"
    assert values["workers"] == 3
    assert origins["workers"] == f"top-level workers: {isolated_config.user}"
    assert values["timeout"] == 30 and origins["timeout"] == "top-level timeout: default"


def test_section_keys_merge_and_dashed_spellings(run_cli, isolated_config):
    isolated_config.write_system("pypi:\n  workers: 2\n  stop-on-error: true\n")
    isolated_config.write_user("pypi:\n  simple-format: json\n  workers: 5\n")
    shown = show(run_cli)
    assert shown["values"]["workers"] == 5
    assert shown["values"]["stop_on_error"] is True
    assert shown["values"]["simple_format"] == "JSON"
    assert shown["origins"]["stop_on_error"] == str(isolated_config.system)


def test_anaconda_mirror_config_wins_over_the_section(run_cli, isolated_config, tmp_path):
    isolated_config.write_user("pypi:\n  latest_only: false\n  whitelist: [flask]\n"
                               "  workers: 6\n")
    seed = tmp_path / "pypi.yaml"
    seed.write_text(ANACONDA_SEED + "create_org: true\nuser: anaconda\n")
    shown = show(run_cli, "--mirror-config", seed)
    values, origins = shown["values"], shown["origins"]
    assert values["whitelist"] == ["requests", "six", "numpy", "simplejson"]
    assert values["latest_only"] is True and values["use_xml_rpc"] is False
    assert values["remote_url"] == "http://pypimirror.invalid"
    assert shown["simple_url"] == "http://pypimirror.invalid/simple/"
    assert values["workers"] == 6  # not in the mirror config: the section's value stays
    assert origins["whitelist"] == f"--mirror-config {seed}"
    assert shown["tree"].endswith("/anaconda/web")
    text = run_cli(main, ["pypi", "--show", "--mirror-config", seed]).out
    assert "--mirror-config, which wins over the pypi: section" in text
    assert f"latest_only: true  # --mirror-config {seed}" in text


def test_create_org_is_accepted_with_one_notice(run_cli, isolated_config, tmp_path,
                                                http_server):
    from tests.support.pypi_packages import SimpleUpstream

    up = SimpleUpstream(tmp_path / "up").serve(http_server(tmp_path / "up"))
    up.add("alpha", "1.0", kinds=("sdist",))
    isolated_config.write_user(yaml.safe_dump({
        "mirror_dir": str(tmp_path / "m"), "minimum_free_space": 0,
        "pypi": {"remote_url": up.url, "create_org": True}}))
    result = run_cli(main, ["pypi"])
    assert result.code == 0, result
    assert result.err.count("create_org has no meaning for a file tree") == 1


def test_group_config_flag_reaches_the_subcommand(run_cli, isolated_config, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("pypi:\n  user: internal\n")
    shown = json.loads(run_cli(main, ["-f", extra, "pypi", "--show", "--json"]).out)
    assert shown["values"]["user"] == "internal"


def assert_error(run_cli, *fragments, args=()):
    result = run_cli(main, ["pypi", "--show", *args])
    assert result.code == 2, result
    assert result.out == "" and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


@pytest.mark.parametrize("text, fragments", [
    ("pypi:\n  workers: 2\n  wokers: 3\n", ["line 3", "unknown key 'pypi.wokers'",
                                           "did you mean 'workers'"]),
    ("pypi:\n  simple_format: xml\n", ["line 2", "key 'pypi.simple_format'", "ALL, HTML, JSON"]),
    ("pypi:\n  whitelist: ['requests>>2']\n", ["key 'pypi.whitelist'", "item 1",
                                               "not a PEP 440 version specifier"]),
    ("pypi:\n  platforms: [linx]\n", ["key 'pypi.platforms'", "did you mean 'linux'"]),
    ("pypi:\n  python_versions: [3.10]\n", ["key 'pypi.python_versions'", "quoted"]),
    ("pypi:\n  packagetypes: [wheels]\n", ["key 'pypi.packagetypes'", "did you mean 'wheel'"]),
    ("pypi:\n  user: ../etc\n", ["key 'pypi.user'", "folder name"]),
    ("pypi:\n  keep_latest: -1\n", ["key 'pypi.keep_latest'", ">= 0"]),
    ("pypi:\n  stop-on-error: true\n  stop_on_error: false\n", ["line 3", "given twice"]),
    ("pypi:\n  remote_url: pypi.org\n", ["key 'pypi.remote_url'", "not a URL"]),
    ("pypi:\n  compare_method: mtime\n", ["key 'pypi.compare_method'", "hash, stat"]),
])
def test_bad_pypi_keys_name_file_line_and_key(run_cli, isolated_config, text, fragments):
    isolated_config.write_user(text)
    assert_error(run_cli, str(isolated_config.user), *fragments)


def test_bad_mirror_config_names_its_file(run_cli, tmp_path):
    seed = tmp_path / "pypi.yaml"
    seed.write_text("whitelist: [requests]\nlatest_olny: true\n")
    assert_error(run_cli, str(seed), "line 2", "unknown key 'latest_olny'",
                 "did you mean 'latest_only'", args=["--mirror-config", seed])
    assert_error(run_cli, "nope.yaml", "not found",
                 args=["--mirror-config", tmp_path / "nope.yaml"])


def test_help_lists_only_real_options(run_cli):
    result = run_cli(main, ["pypi", "--help"])
    assert result.code == 0
    for flag in ("--show", "--dry-run", "--verify", "--quiet", "--json", "--mirror-config",
                 "--config", "--debug"):
        assert flag in result.out
