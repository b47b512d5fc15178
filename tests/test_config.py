"""Layered configuration, `cas-sync --show` provenance, and the errors users can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cas_mirror.cli import main
from cas_mirror.config import PYPI_SETTINGS, SETTINGS, load_config
from tests.support.reference import DOCUMENTED, REFERENCE_CONFIG


def show_json(run_cli, *args):
    result = run_cli(main, ["--show", "--json", *args])
    assert result.code == 0, result
    return json.loads(result.out)


def test_defaults_when_no_file_exists(run_cli, isolated_config):
    shown = show_json(run_cli)
    assert shown["values"]["remote_url"] == DOCUMENTED["remote_url"]
    assert shown["values"]["channels"] == ["pkgs/main"]
    assert shown["values"]["mirror_dir"] == "/opt/cas-mirror"
    assert shown["values"]["workers"] == 8
    assert shown["values"]["timeout"] == 30
    assert shown["values"]["retries"] == 5
    assert shown["values"]["ssl_verify"] is True
    assert shown["values"]["minimum_free_space"] == 1_000_000_000
    assert shown["values"]["keep_removed"] is False
    assert shown["values"]["platforms"] is None
    assert set(shown["origins"].values()) == {"default"}
    assert [(f["role"], f["status"]) for f in shown["files"]] == [
        ("system", "absent"), ("user", "absent")]


def test_all_five_layers_in_order(run_cli, isolated_config, tmp_path):
    isolated_config.write_system(
        "mirror_dir: /srv/system\nworkers: 2\ntimeout: 11\nretries: 1\nkeep_removed: true\n")
    isolated_config.write_user("workers: 3\ntimeout: 12\nretries: 2\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("timeout: 13\nretries: 3\n")
    shown = show_json(run_cli, "-f", extra, "--retries", "4")
    values, origins = shown["values"], shown["origins"]
    assert (values["remote_url"], origins["remote_url"]) == (DOCUMENTED["remote_url"], "default")
    assert values["mirror_dir"] == "/srv/system"
    assert origins["mirror_dir"] == str(isolated_config.system)
    assert values["keep_removed"] is True and origins["keep_removed"] == str(isolated_config.system)
    assert (values["workers"], origins["workers"]) == (3, str(isolated_config.user))
    assert (values["timeout"], origins["timeout"]) == (13, f"--config {extra}")
    assert (values["retries"], origins["retries"]) == (4, "command line (--retries)")
    assert [(f["role"], f["status"]) for f in shown["files"]] == [
        ("system", "read"), ("user", "read"), ("--config", "read")]


def test_user_file_wins_over_system_file(isolated_config):
    isolated_config.write_system("platforms: [linux-32]\nblacklist: [flask]\n")
    isolated_config.write_user("platforms: [linux-64]\n")
    config = load_config()
    assert config.platforms == ["linux-64", "noarch"]  # replaced, not merged; noarch added
    assert config.blacklist == ["flask"]
    assert config.origins["platforms"] == str(isolated_config.user)


def test_pypi_section_merges_key_by_key(isolated_config):
    isolated_config.write_system("pypi:\n  workers: 2\n  whitelist: [requests]\n")
    isolated_config.write_user("pypi:\n  workers: 5\n")
    config = load_config()
    assert config.pypi["workers"] == 5
    assert config.pypi["whitelist"] == ["requests"]
    assert config.origins["pypi.workers"] == str(isolated_config.user)
    assert config.origins["pypi.whitelist"] == str(isolated_config.system)


def test_show_is_yaml_annotated_with_origins(run_cli, isolated_config):
    isolated_config.write_user(
        "mirror_dir: /home/cas-mirror\nplatforms:\n  - linux-32\n  - linux-64\n"
        "license_blacklist: GPL\nwhitelist:\n  - distribute\n  - conda\n"
        "blacklist:\n  - flask\n  - readline\n")
    result = run_cli(main, ["--show", "--workers", "4"])
    assert result.code == 0, result
    parsed = yaml.safe_load(result.out)
    assert parsed["mirror_dir"] == "/home/cas-mirror"
    assert parsed["platforms"] == ["linux-32", "linux-64", "noarch"]
    assert parsed["license_blacklist"] == ["GPL"]
    assert parsed["whitelist"] == ["distribute", "conda"]
    assert parsed["workers"] == 4
    lines = result.out.splitlines()
    assert f"mirror_dir: /home/cas-mirror  # {isolated_config.user}" in lines
    assert "workers: 4  # command line (--workers)" in lines
    assert f"remote_url: {DOCUMENTED['remote_url']}  # default" in lines
    assert any(f"system   {isolated_config.system}  (absent)" in line for line in lines)
    assert any(f"user     {isolated_config.user}  (read)" in line for line in lines)
    assert set(parsed) == set(SETTINGS)


def test_show_never_touches_the_network(run_cli, isolated_config, http_server, tmp_path):
    server = http_server(tmp_path)
    isolated_config.write_user(f"remote_url: {server.url}\nchannels: [pkgs/main]\n")
    result = run_cli(main, ["--show"])
    assert result.code == 0
    assert server.requests == []


def test_relative_paths_resolve_against_the_file_that_sets_them(isolated_config, tmp_path):
    isolated_config.write_user("mirror_dir: mirror\ndiff_file: ~/diffs/list\n")
    config = load_config()
    assert config.mirror_dir == str(tmp_path / "mirror")
    assert config.diff_file == str(Path("~/diffs/list").expanduser())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("minimum_free_space: 5 GB\n", 5_000_000_000),
        ("minimum_free_space: 2GiB\n", 2 * 1024**3),
        ("minimum_free_space: 0\n", 0),
        ("minimum_free_space: 500mb\n", 500_000_000),
    ],
)
def test_sizes_accept_units(isolated_config, text, expected):
    isolated_config.write_user(text)
    assert load_config().minimum_free_space == expected


def test_ssl_verify_takes_a_ca_bundle(isolated_config, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    isolated_config.write_user(f"ssl_verify: {bundle}\n")
    assert load_config().ssl_verify == str(bundle)
    isolated_config.write_user("ssl_verify: false\n")
    assert load_config().ssl_verify is False


def test_entries_accept_every_form(isolated_config):
    isolated_config.write_user(
        "blacklist:\n  - flask\n  - 'r-*'\n  - numpy >=1.20,<2\n  - python 3.11.*\n"
        "  - {name: 'r-*', version: '>=4', license: '*GPL*'}\n")
    assert len(load_config().blacklist) == 5


# ------------------------------------------------------------------------- errors


def assert_config_error(run_cli, *fragments, args=()):
    result = run_cli(main, ["--show", *args])
    assert result.code == 2, result
    assert result.out == ""
    assert "Traceback" not in result.err
    assert result.err.startswith("cas-sync: error: ")
    assert len(result.err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)
    return result.err


def test_malformed_yaml_names_file_line_and_column(run_cli, isolated_config):
    isolated_config.write_user("mirror_dir: /srv\nplatforms: [linux-64\nworkers: 3\n")
    assert_config_error(run_cli, str(isolated_config.user), "line 3, column", "malformed YAML")


def test_tab_indentation_is_reported_with_position(run_cli, isolated_config):
    isolated_config.write_system("whitelist:\n\t- conda\n")
    assert_config_error(run_cli, str(isolated_config.system), "line 2, column 1")


def test_unknown_key_suggests_the_close_one(run_cli, isolated_config):
    isolated_config.write_user("mirror_dir: /srv\nmirrordir: /srv\n")
    assert_config_error(run_cli, str(isolated_config.user), "line 2",
                        "unknown key 'mirrordir'", "did you mean 'mirror_dir'?")


def test_unknown_key_far_from_everything_has_no_suggestion(run_cli, isolated_config):
    isolated_config.write_user("zzzqqq: 1\n")
    err = assert_config_error(run_cli, "unknown key 'zzzqqq'")
    assert "did you mean" not in err


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("workers: eight\n", ["key 'workers'", "whole number", "'eight'"]),
        ("workers: 0\n", ["key 'workers'", ">= 1"]),
        ("workers: true\n", ["key 'workers'", "whole number"]),
        ("timeout: -1\n", ["key 'timeout'", "seconds"]),
        ("retries: 1000000\n", ["key 'retries'", "from 0 to 100", "1000000"]),
        ("pypi: {retries: 101}\n", ["key 'pypi.retries'", "from 0 to 100", "101"]),
        ("keep_removed: maybe\n", ["key 'keep_removed'", "true or false"]),
        ("channels: pkgs/main\n", ["key 'channels'", "expected a list"]),
        ("channels: [../etc]\n", ["key 'channels'", "not a channel path"]),
        ("blacklist: flask\n", ["key 'blacklist'", "expected a list"]),
        ("blacklist: ['numpy >>1']\n", ["key 'blacklist'", "item 1", "not a conda version spec"]),
        ("whitelist: [{nam: flask}]\n",
         ["key 'whitelist'", "unknown key 'nam'", "did you mean 'name'"]),
        ("minimum_free_space: lots\n", ["key 'minimum_free_space'", "1 GB"]),
        ("ssl_verify: /nonexistent/ca.pem\n", ["key 'ssl_verify'", "does not exist"]),
        ("pypi: [1, 2]\n", ["key 'pypi'", "mapping"]),
        ("proxy: not-a-url\n", ["key 'proxy'", "not a URL"]),
    ],
)
def test_wrong_types_name_the_key(run_cli, isolated_config, text, fragments):
    isolated_config.write_user(text)
    assert_config_error(run_cli, str(isolated_config.user), *fragments)


def test_unknown_platform_suggests_the_real_name(run_cli, isolated_config):
    isolated_config.write_user("platforms: [linux-64, linux64]\n")
    assert_config_error(run_cli, "key 'platforms'", "item 2", "unknown platform 'linux64'",
                        "did you mean 'linux-64'?")


@pytest.mark.parametrize("url", ["repo.anaconda.com", "ftp://repo.example.invalid", "https://", 42])
def test_remote_url_must_be_a_url(run_cli, isolated_config, url):
    isolated_config.write_user(f"remote_url: {url}\n")
    assert_config_error(run_cli, "key 'remote_url'")


def test_duplicate_key_is_an_error(run_cli, isolated_config):
    isolated_config.write_user("workers: 2\nworkers: 3\n")
    assert_config_error(run_cli, "duplicate key 'workers'", "line 1")


def test_top_level_must_be_a_mapping(run_cli, isolated_config):
    isolated_config.write_user("- mirror_dir\n- /srv\n")
    assert_config_error(run_cli, "the file is a list", "expected a mapping")


def test_empty_file_is_fine(isolated_config):
    isolated_config.write_user("")
    assert load_config().files[1].status == "read"


def test_folder_instead_of_file(run_cli, isolated_config):
    isolated_config.user.mkdir()
    assert_config_error(run_cli, str(isolated_config.user), "is a folder")


def test_binary_file(run_cli, isolated_config):
    isolated_config.user.write_bytes(b"\xff\xfe\x00garbage")
    assert_config_error(run_cli, str(isolated_config.user), "not UTF-8")


def test_unreadable_file(run_cli, isolated_config, monkeypatch):
    isolated_config.write_user("workers: 2\n")
    from cas_mirror import userfiles

    real_read_text = userfiles.read_text

    def deny(path, *args, **kwargs):  # root ignores chmod 000, so deny at the source
        if Path(path) == isolated_config.user:
            raise PermissionError(13, "Permission denied")
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(userfiles, "read_text", deny)
    assert_config_error(run_cli, str(isolated_config.user), "permission denied")


def test_missing_config_flag_file(run_cli, tmp_path):
    assert_config_error(run_cli, "nope.yaml", "not found", args=["-f", tmp_path / "nope.yaml"])


def test_bad_command_line_value(run_cli):
    assert_config_error(run_cli, "command line: --platform", "did you mean 'linux-64'",
                        args=["--platform", "linux64"])


def test_unknown_flag_is_a_usage_error(run_cli):
    result = run_cli(main, ["--no-such-flag"])
    assert result.code == 2
    assert "No such option" in result.err


def test_real_entry_point_exits_2_without_traceback(isolated_config):
    isolated_config.write_user("workers: [\n")
    proc = subprocess.run([sys.executable, "-m", "cas_mirror", "--show"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "malformed YAML" in proc.stderr


def test_reference_config_documents_every_key_with_its_default(isolated_config):
    reference = REFERENCE_CONFIG
    documented = yaml.safe_load(reference.read_text())
    assert set(documented) == set(SETTINGS)
    config = load_config(reference)
    for key, setting in SETTINGS.items():
        assert config.values[key] == setting.default, key
    assert set(documented["pypi"]) == set(PYPI_SETTINGS)
    for key, setting in PYPI_SETTINGS.items():
        assert documented["pypi"][key] == setting.default, key
