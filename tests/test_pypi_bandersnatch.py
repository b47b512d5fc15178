"""`cas-sync pypi --bandersnatch-config FILE`: the seed's example configurations (seed 004)
mapped onto our keys with the INI file as their source, its filter plugin sections, and
the refusals (an option, plugin or section we do not support names file, line, section
and key)."""

from __future__ import annotations

import json

import pytest

from cas_mirror.cli import main

# The three [mirror] examples of seed 004, as its users have them.
# The seed's example configurations (seed 004), their hosts renamed to .invalid ones: the
# tests only read them, and no test names a host it could reach.
MINIMAL = """\
[mirror]
; base destination path for mirrored files
directory = {dir}

; upstream package repository to mirror
master = https://pypi.example.invalid

; parallel downloads - keep low to avoid overwhelming upstream
workers = 3

; per-request time limit
timeout = 15

; global time limit - applied to aiohttp coroutines
global-timeout = 18000

; continue syncing when an error occurs
stop-on-error = false

; use PyPI-compatible folder structure for index files
hash-index = false
"""
ALTERNATIVE = """\
[mirror]
directory = {dir}
; Project and package metadata received from this repository
master = https://pypi.example.invalid
; Package distribution artifacts downloaded from here if possible
download-mirror = https://pypi-mirror.example.invalid/

; required options from basic config
workers = 3
timeout = 15
global-timeout = 18000
stop-on-error = false
hash-index = false
"""
INDEX_ONLY = """\
[mirror]
directory = {dir}
master = https://pypi.example.invalid
simple-format = ALL
release-files = false
root_uri = https://files.example.invalid/

; required options from basic config
workers = 3
timeout = 15
global-timeout = 18000
stop-on-error = false
hash-index = false
"""


def show(run_cli, path, *args):
    result = run_cli(main, ["pypi", "--show", "--json", "--bandersnatch-config", path, *args])
    assert result.code == 0, result
    return json.loads(result.out)


def write(tmp_path, text, name="bandersnatch.conf"):
    path = tmp_path / name
    path.write_text(text.format(dir=tmp_path / "srv" / "pypi"))
    return path


def test_minimal_example_maps_with_the_ini_file_as_source(run_cli, tmp_path,
                                                           isolated_config):
    isolated_config.write_user("pypi:\n  workers: 8\n  stop_on_error: true\n")
    conf = write(tmp_path, MINIMAL)
    shown = show(run_cli, conf)
    values, origins = shown["values"], shown["origins"]
    assert shown["tree"] == str(tmp_path / "srv" / "pypi" / "web")  # bandersnatch's web/
    assert shown["mirror_dir"] == str(tmp_path / "srv") and values["user"] == "pypi"
    assert values["remote_url"] == "https://pypi.example.invalid"
    assert (values["workers"], values["timeout"], values["global_timeout"]) == (3, 15, 18000)
    assert values["stop_on_error"] is False and values["hash_index"] is False
    assert origins["workers"] == f"--bandersnatch-config {conf}, line 9 ([mirror] workers)"
    assert origins["remote_url"] == f"--bandersnatch-config {conf}, line 6 ([mirror] master)"
    assert origins["simple_format"] == "default"
    text = run_cli(main, ["pypi", "--show", "--bandersnatch-config", conf]).out
    source = f"--bandersnatch-config {conf}, line 15 ([mirror] global-timeout)"
    assert f"global_timeout: 18000.0  # {source}" in text
    assert f"--bandersnatch-config {conf}  (read)" in text


def test_alternative_download_source_and_index_only_examples(run_cli, tmp_path):
    values = show(run_cli, write(tmp_path, ALTERNATIVE))["values"]
    assert values["download_mirror"] == "https://pypi-mirror.example.invalid"
    assert values["download_mirror_no_fallback"] is False
    values = show(run_cli, write(tmp_path, INDEX_ONLY))["values"]
    assert values["release_files"] is False and values["simple_format"] == "ALL"
    assert values["root_uri"] == "https://files.example.invalid"


def test_every_mirror_option_of_the_reference_maps(run_cli, tmp_path):
    conf = write(tmp_path, MINIMAL.replace("hash-index = false", """hash-index = true
simple-format = JSON
release-files = true
root_uri = https://example.invalid
json = true
diff-file = {dir}/new-files
diff-append-epoch = true
download-mirror = https://mirror.invalid
download-mirror-no-fallback = true
cleanup = true
verifiers = 4
compare-method = stat
digest_name = md5
keep_index_versions = 3
proxy = http://proxy.invalid:3128
storage-backend = filesystem
api-method = xmlrpc
allow-non-https = true"""))
    shown = show(run_cli, conf)
    values = shown["values"]
    assert values["hash_index"] is True and values["simple_format"] == "JSON"
    assert values["json"] is True and values["cleanup"] is True
    assert values["diff_file"] == str(tmp_path / "srv" / "pypi" / "new-files")
    assert values["diff_append_epoch"] is True
    assert values["download_mirror_no_fallback"] is True
    assert (values["compare_method"], values["digest_name"]) == ("stat", "md5")
    assert values["keep_index_versions"] == 3
    assert values["proxy"] == "http://proxy.invalid:3128"
    assert values["storage_backend"] == "filesystem"
    assert values["use_xml_rpc"] is True  # api-method = xmlrpc
    assert any("verifiers" in note for note in shown["notes"])
    assert any("allow-non-https" in note for note in shown["notes"])


def test_filter_plugin_sections_map_onto_the_filters(run_cli, tmp_path):
    (tmp_path / "reqs").mkdir()
    (tmp_path / "reqs" / "requirements.txt").write_text(
        "# pinned for production\nflask==3.0.0\nclick>=8 --hash=sha256:00\n")
    conf = write(tmp_path, MINIMAL + """
[plugins]
enabled =
    allowlist_project
    allowlist_release
    blocklist_project
    blocklist_release
    exclude_platform
    prerelease_release
    regex_release
    regex_project
    latest_release
    size_project_metadata

[allowlist]
packages =
    requests
    six>=1.10
requirements_path = reqs
requirements =
    requirements.txt

[blocklist]
packages =
    evil
    django>=3,<4
platforms =
    windows
    py2.7

[filter_regex]
releases =
    .+rc\\d$
packages =
    .+-dev$

[latest_release]
keep = 3

[size_project_metadata]
max_package_size = 1G
""")
    values = show(run_cli, conf)["values"]
    assert values["whitelist"] == ["requests", "six>=1.10", "flask==3.0.0", "click>=8"]
    assert values["blacklist"] == ["evil", "django<4,>=3"]
    assert values["exclude_platforms"] == ["windows", "py2.7"]
    assert values["exclude_prereleases"] is True
    assert values["exclude_release_regex"] == [r".+rc\d$"]
    assert values["exclude_project_regex"] == [".+-dev$"]
    assert values["keep_latest"] == 3 and values["max_project_size"] == 1_000_000_000


def test_all_enables_every_supported_plugin(run_cli, tmp_path):
    conf = write(tmp_path, MINIMAL + "[plugins]\nenabled = all\n[latest_release]\nkeep = 2\n"
                 "[blocklist]\npackages =\n    evil<2\n")
    values = show(run_cli, conf)["values"]
    assert values["keep_latest"] == 2 and values["exclude_prereleases"] is True
    assert values["blacklist"] == ["evil<2"]


def test_allowlist_project_alone_keeps_names_only(run_cli, tmp_path):
    conf = write(tmp_path, MINIMAL + "[plugins]\nenabled = allowlist_project\n"
                 "[allowlist]\npackages =\n    six>=1.10\n")
    assert show(run_cli, conf)["values"]["whitelist"] == ["six"]


def refused(run_cli, conf, *fragments):
    result = run_cli(main, ["pypi", "--show", "--bandersnatch-config", conf])
    assert result.code == 2, result
    assert result.out == "" and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    for fragment in (str(conf), *fragments):
        assert fragment in result.err, (fragment, result.err)


@pytest.mark.parametrize("extra, fragments", [
    ("log-config = /etc/bandersnatch-log.conf\n",
     ["line 21", "[mirror] log-config", "not supported"]),
    ("wokers = 3\n", ["line 21", "[mirror] wokers", "did you mean 'workers'"]),
    ("verifiers = three\n", ["line 21", "[mirror] verifiers", "whole number"]),
    ("hash-index = maybe\n", ["[mirror] hash-index", "true or false"]),
    ("simple-format = XML\n", ["[mirror] simple-format", "ALL, HTML, JSON"]),
    ("storage-backend = swift\n", ["[mirror] storage-backend", "filesystem, s3"]),
    ("\n[plugins]\nenabled = safety_db_release\n",
     ["line 23", "[plugins] enabled", "'safety_db_release' is not supported"]),
    ("\n[blocklist]\npackages = evil\n",
     ["line 23", "[blocklist] packages", "no enabled plugin reads it",
      "blocklist_project or blocklist_release"]),
    ("\n[plugins]\nenabled = latest_release\n[latest_release]\nkeep = 2\nsort_by = time\n",
     ["line 26", "[latest_release] sort_by", "not supported"]),
    ("\n[swift]\ndefault_container = bandersnatch\n",
     ["line 22", "[swift]", "storage backend"]),
])
def test_unsupported_or_bad_options_name_file_line_section_and_key(run_cli, tmp_path,
                                                                   extra, fragments):
    refused(run_cli, write(tmp_path, MINIMAL.replace("hash-index = false\n", "") + extra),
            *fragments)


def test_unreadable_files_are_one_line(run_cli, tmp_path):
    refused(run_cli, tmp_path / "nope.conf", "not found")
    bad = tmp_path / "bad.conf"
    bad.write_text("directory = /srv\n")
    refused(run_cli, bad, "malformed INI file")
    no_dir = tmp_path / "nodir.conf"
    no_dir.write_text("[mirror]\nmaster = https://pypi.example.invalid\n")
    refused(run_cli, no_dir, "'directory' is required")


def test_the_option_is_refused_for_the_conda_sync(run_cli, tmp_path):
    result = run_cli(main, ["--bandersnatch-config", write(tmp_path, MINIMAL), "--show"])
    assert result.code == 2 and "is an option of cas-sync pypi" in result.err


def test_s3_storage_backend_refusals_name_the_option(run_cli, tmp_path):
    """storage-backend = s3 (tests/test_s3_pypi.py syncs with it): a directory that names
    no prefix, credentials in the file and another signature are refused in one line."""
    base = MINIMAL.replace("master = https://pypi.example.invalid",
                           "master = http://upstream.invalid") + "storage-backend = s3\n"
    cases = [
        (base.replace("directory = {dir}", "directory = /only-a-bucket"),
         ["[mirror] directory", "/<bucket>/<prefix>"]),
        (base + "\n[s3]\naws_access_key_id = AKIA\n",
         ["[s3] aws_access_key_id", "standard AWS chain"]),
        (base + "\n[s3]\nsignature_version = s3\n", ["[s3] signature_version", "SigV4"]),
        (base + "\n[s3]\nconfig_param_ServerSideEncryption = aws:kms\n",
         ["[s3] config_param_serversideencryption", "not passed on"]),
    ]
    for text, fragments in cases:
        conf = write(tmp_path, text)
        result = run_cli(main, ["pypi", "--bandersnatch-config", conf, "--dry-run"])
        assert result.code == 2, result
        assert len(result.err.strip().splitlines()) == 1, result.err
        for fragment in fragments:
            assert fragment in result.err, (fragment, result.err)
