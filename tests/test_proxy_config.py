"""The `cache_proxy:` section: layering and provenance in `cas-sync --show`, one-line errors,
filter keys that fall back to the mirror's own, the reference file, and what
`cas-server` hands its workers."""

from __future__ import annotations

import json

import pytest

from cas_mirror.cli import main
from cas_mirror.config import load_config
from cas_mirror.config.keys import CACHE_PROXY_SETTINGS
from cas_mirror.server.cli import main as server_main
from cas_mirror.server.proxy import environment
from cas_mirror.server.proxy.settings import ENV_PROXY, ProxySettings
from tests.support.http_server import free_port
from tests.support.reference import DOCUMENTED

CHANNEL = "cache_proxy:\n  channels:\n    - {upstream: 'http://up.invalid/c/', path: px/c}\n"


def test_show_has_the_section_with_where_each_key_came_from(run_cli, isolated_config):
    isolated_config.write_system("cache_proxy:\n  metadata_ttl: 5 min\n")
    isolated_config.write_user(CHANNEL)
    result = run_cli(main, ["--show"])
    assert result.code == 0, result
    block = result.out[result.out.index("cache_proxy:"):]
    assert f"metadata_ttl: 300.0  # {isolated_config.system}" in block
    assert f"channels:  # {isolated_config.user}" in block
    assert "upstream: http://up.invalid/c" in block and "path: px/c" in block
    assert "cache_max_size: null  # default" in block
    shown = json.loads(run_cli(main, ["--show", "--json"]).out)
    assert shown["origins"]["cache_proxy.metadata_ttl"] == str(isolated_config.system)
    assert shown["values"]["cache_proxy"]["channels"] == [
        {"upstream": "http://up.invalid/c", "path": "px/c"}]


@pytest.mark.parametrize(("text", "fragments"), [
    ("cache_proxy:\n  channels: {upstream: x}\n", ["'cache_proxy.channels'", "expected a list"]),
    ("cache_proxy:\n  channels: [{path: a}]\n", ["item 1", "no 'upstream'"]),
    ("cache_proxy:\n  channels: [{upstream: 'ftp://x.invalid', path: a}]\n",
     ["item 1", "URL"]),
    ("cache_proxy:\n  channels: [{upstream: 'http://x.invalid', path: ../etc}]\n",
     ["item 1", "served path"]),
    ("cache_proxy:\n  channels: [{upstream: 'http://x.invalid', path: a, platform: x}]\n",
     ["item 1", "unknown key 'platform'"]),
    (("cache_proxy:\n  channels: [{upstream: 'http://x.invalid', path: a},\n"
     "             {upstream: 'http://y.invalid', path: a/b}]\n"), ["item 2", "overlaps"]),
    (("cache_proxy:\n  channels: [{upstream: 'http://x.invalid', path: a,"
     " blacklist: ['numpy >>1']}]\n"), ["item 1", "not a conda version spec"]),
    ("cache_proxy:\n  pypi: {upstream: 'http://x.invalid/simple/', path: p, keep_latest: x}\n",
     ["'cache_proxy.pypi'", "keep_latest"]),
    ("cache_proxy:\n  metadata_ttl: soon\n", ["'cache_proxy.metadata_ttl'", "duration"]),
    ("cache_proxy:\n  cache_max_size: big\n", ["'cache_proxy.cache_max_size'", "1 GB"]),
    ("cache_proxy:\n  cache_dri: /x\n", ["unknown key 'cache_proxy.cache_dri'",
                                         "did you mean 'cache_dir'"]),
])
def test_bad_values_are_one_line_and_exit_2(run_cli, isolated_config, text, fragments):
    isolated_config.write_user(text)
    result = run_cli(main, ["--show"])
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


def test_left_out_filter_keys_are_the_mirrors_own(isolated_config, tmp_path):
    isolated_config.write_user(
        "license_blacklist: [GPL]\nblacklist: [r-*]\npypi:\n  blacklist: [evil]\n"
        "cache_proxy:\n  channels:\n"
        "    - {upstream: 'http://a.invalid', path: a}\n"
        "    - {upstream: 'http://b.invalid', path: b, license_blacklist: []}\n"
        "  pypi: {upstream: 'http://p.invalid/simple', path: p, latest_only: true}\n")
    settings = ProxySettings.from_config(load_config(), str(tmp_path))
    inherited, own = settings.channels
    assert inherited.license_blacklist == ["GPL"] and inherited.blacklist == ["r-*"]
    assert own.license_blacklist == [] and own.blacklist == ["r-*"]
    assert settings.pypi.filters["blacklist"] == ["evil"]
    assert settings.pypi.filters["latest_only"] is True
    assert settings.pypi.upstream == "http://p.invalid/simple/"
    assert settings.cache_dir == str(tmp_path / ".cas-proxy")
    # what cas-server hands to its workers reads back the same
    handed = environment(load_config(), str(tmp_path))[ENV_PROXY]
    assert ProxySettings.from_json(handed) == settings


def test_no_upstream_configured_means_no_proxy(isolated_config, tmp_path):
    assert environment(load_config(), str(tmp_path)) == {ENV_PROXY: ""}
    assert not (tmp_path / ".cas-proxy").exists()


def test_reference_file_documents_the_section_with_its_defaults():
    documented = DOCUMENTED["cache_proxy"]
    assert set(documented) == set(CACHE_PROXY_SETTINGS)
    for key, setting in CACHE_PROXY_SETTINGS.items():
        assert documented[key] == setting.default, key


def test_proxy_stats_without_a_cache_is_one_line_exit_2(run_cli, isolated_config, tmp_path):
    result = run_cli(server_main, ["proxy-stats", "--root", str(tmp_path)])
    assert result.code == 2
    assert "cache_proxy.cache_dir" in result.err and "does not exist" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_cache_dir_that_cannot_be_written_stops_cas_server_in_one_line(run_cli, isolated_config,
                                                                       tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "a-file").write_text("x")
    isolated_config.write_user(CHANNEL + f"  cache_dir: {tmp_path / 'a-file' / 'cache'}\n")
    result = run_cli(server_main, ["--root", str(tmp_path / "root"), "--host", "127.0.0.1",
                                   "--port", str(free_port())])
    assert result.code == 2, result
    assert result.err.startswith("cas-server: error: cache_proxy.cache_dir: cannot write ")
    assert len(result.err.strip().splitlines()) == 1
