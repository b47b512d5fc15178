"""Repodata patches (`--patch`): conda-index's patch_instructions.json format, from a JSON
file or a repodata-patches package; the unpatched records stay in
repodata_from_packages.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cas_index.cli import main
from cas_index.patch import apply_instructions
from tests.support.conda_packages import PkgSpec
from tests.support.index_tools import CONDA_INDEX_DATA, needs_conformance, read_json

INSTRUCTIONS = {
    "patch_instructions_version": 1,
    # a .tar.bz2 entry fixes its .conda twin too
    "packages": {"alpha-1.0-0.tar.bz2": {"depends": ["zlib >=1.2"], "license": "BSD"}},
    "packages.conda": {"beta-2.1-0.conda": {"constrains": ["alpha <2"]}},
    "remove": ["gamma-0.1-0.tar.bz2", "not-here-1-0.tar.bz2"],
    "revoke": ["beta-2.1-0.conda"],
}


@pytest.fixture
def channel(make_channel):
    specs = [PkgSpec("alpha", "1.0", subdir="linux-64", fmt=fmt) for fmt in (".conda", ".tar.bz2")]
    specs += [PkgSpec("gamma", "0.1", subdir="linux-64", fmt=fmt) for fmt in (".conda", ".tar.bz2")]
    specs.append(PkgSpec("beta", "2.1", subdir="linux-64", depends=["alpha >=1"]))
    return make_channel(specs, name="internal-pkgs")


def _write(tmp_path, instructions, name="patch.json"):
    path = tmp_path / name
    path.write_text(json.dumps(instructions))
    return path


def test_update_remove_revoke(channel, run_cli, tmp_path):
    oracle = channel.repodata["linux-64"]
    result = run_cli(main, [channel.root, "--patch", _write(tmp_path, INSTRUCTIONS)])
    assert result.code == 0, result
    folder = channel.root / "linux-64"
    doc = read_json(folder / "repodata.json")
    for section, fn in (("packages", "alpha-1.0-0.tar.bz2"), ("packages.conda",
                                                               "alpha-1.0-0.conda")):
        assert doc[section][fn] == {**oracle[section][fn], "depends": ["zlib >=1.2"],
                                    "license": "BSD"}
    beta = doc["packages.conda"]["beta-2.1-0.conda"]
    assert beta == {**oracle["packages.conda"]["beta-2.1-0.conda"], "constrains": ["alpha <2"],
                    "revoked": True, "depends": ["alpha >=1", "package_has_been_revoked"]}
    assert "gamma-0.1-0.tar.bz2" not in doc["packages"]
    assert "gamma-0.1-0.conda" not in doc["packages.conda"]
    assert doc["removed"] == ["gamma-0.1-0.conda", "gamma-0.1-0.tar.bz2"]
    # what the packages say, unpatched
    unpatched = read_json(folder / "repodata_from_packages.json")
    assert {**unpatched["packages"], **unpatched["packages.conda"]} == channel.records("linux-64")
    assert unpatched["removed"] == []
    # the instructions are kept beside the repodata they made
    assert read_json(folder / "patch_instructions.json") == INSTRUCTIONS
    # channeldata follows the patched records: removed names are gone
    assert "gamma" not in read_json(channel.root / "channeldata.json")["packages"]


def test_saved_instructions_apply_again_until_replaced(channel, run_cli, tmp_path):
    assert run_cli(main, [channel.root, "--patch", _write(tmp_path, INSTRUCTIONS)]).code == 0
    folder = channel.root / "linux-64"
    patched = (folder / "repodata.json").read_bytes()
    mtime = (folder / "repodata.json").stat().st_mtime_ns
    assert run_cli(main, [channel.root]).code == 0  # no --patch: the saved file still applies
    assert (folder / "repodata.json").read_bytes() == patched
    assert (folder / "repodata.json").stat().st_mtime_ns == mtime
    fewer = {**INSTRUCTIONS, "remove": [], "revoke": []}
    assert run_cli(main, [channel.root, "--patch", _write(tmp_path, fewer)]).code == 0
    doc = read_json(folder / "repodata.json")
    assert doc["removed"] == [] and "gamma-0.1-0.conda" in doc["packages.conda"]
    assert "revoked" not in doc["packages.conda"]["beta-2.1-0.conda"]
    (folder / "patch_instructions.json").unlink()  # how patches are dropped
    assert run_cli(main, [channel.root]).code == 0
    assert read_json(folder / "repodata.json") == read_json(folder / "repodata_from_packages.json")


def test_nested_values_merge_and_null_removes_the_key():
    doc = {"packages": {"a-1-0.tar.bz2": {"name": "a", "depends": ["x"], "features": "old",
                                          "extra": {"keep": 1, "change": 1, "drop": 1}}},
           "packages.conda": {}, "removed": []}
    patched = apply_instructions(doc, {"packages": {"a-1-0.tar.bz2": {
        "extra": {"change": 2, "drop": None}, "features": None, "track_features": None,
        "depends": []}}})
    # null removes the key, as conda-index does (a null value breaks conda and rattler);
    # a key the record does not have is not added
    assert patched["packages"]["a-1-0.tar.bz2"] == {
        "name": "a", "depends": [], "extra": {"keep": 1, "change": 2}}
    assert doc["packages"]["a-1-0.tar.bz2"]["depends"] == ["x"]  # the input is untouched
    assert doc["packages"]["a-1-0.tar.bz2"]["features"] == "old"


def test_rattler_solves_a_subdir_patched_with_nulls(make_channel, run_cli, tmp_path):
    # conda-forge style instructions that clear features: the record must not carry nulls,
    # or conda fails on the whole subdir and rattler refuses to solve
    import asyncio

    import rattler

    channel = make_channel([
        PkgSpec("tool", "1.0", subdir="linux-64", fmt=".tar.bz2", depends=["lib"],
                extra_index={"track_features": "old_feature", "features": "old_feature"}),
        PkgSpec("tool", "1.0", subdir="linux-64", fmt=".conda", depends=["lib"],
                extra_index={"track_features": "old_feature", "features": "old_feature"}),
        PkgSpec("lib", "2.0", subdir="linux-64", fmt=".conda"),
    ], name="internal-pkgs")
    nulls = {"packages": {"tool-1.0-0.tar.bz2": {"features": None, "track_features": None},
                          "lib-2.0-0.tar.bz2": {"features": None}},  # no such .tar.bz2
             "packages.conda": {"lib-2.0-0.conda": {"track_features": None}}}
    result = run_cli(main, [channel.root, "--patch", _write(tmp_path, nulls)])
    assert result.code == 0, result
    doc = read_json(channel.root / "linux-64/repodata.json")
    records = [*doc["packages"].values(), *doc["packages.conda"].values()]
    assert len(records) == 3 and all(None not in r.values() for r in records)
    assert not any("features" in r or "track_features" in r for r in records)

    async def solve():
        gateway = rattler.Gateway(cache_dir=tmp_path / "rattler-cache")
        return await rattler.solve([channel.root.as_uri()], ["tool"], gateway=gateway,
                                   platforms=["linux-64", "noarch"], virtual_packages=[])

    solved = asyncio.run(solve())
    assert sorted(r.file_name for r in solved) == ["lib-2.0-0.conda", "tool-1.0-0.conda"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"patch_instructions_version": 2}', "patch_instructions_version 2 is not supported"),
    ('{"remove": "a-1-0.conda"}', "'remove' must be a list of file names"),
    ('{"packages": {"a-1-0.conda": ["x"]}}', "'packages' must map file names to objects"),
])
def test_bad_patch_files_are_usage_errors(channel, run_cli, tmp_path, content, message):
    path = tmp_path / "patch.json"
    path.write_text(content)
    result = run_cli(main, [channel.root, "--patch", path])
    assert result.code == 2
    assert result.err.startswith(f"cas-index: error: {path}: ")
    assert message in result.err and len(result.err.splitlines()) == 1
    assert not (channel.root / "linux-64/patch_instructions.json").exists()


def test_unknown_keys_in_a_platforms_file_are_a_warning(make_channel, run_cli):
    # a real channel's saved instructions carry keys cas-index does not know: the known
    # parts apply, the other platforms are indexed, the run succeeds
    channel = make_channel([PkgSpec("alpha", subdir="linux-64"), PkgSpec("beta", subdir="osx-64"),
                            PkgSpec("gamma", subdir="linux-64")])
    linux = channel.root / "linux-64"
    saved = {"patch_instructions_version": 1, "remove": ["gamma-1.0-0.conda"],
             "packages.conda": {"alpha-1.0-0.conda": {"license": "BSD"}},
             "later_feature": {"x": 1}, "channel_notes": []}
    (linux / "patch_instructions.json").write_text(json.dumps(saved))
    result = run_cli(main, [channel.root])
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert warnings == [(
        f"cas-index: warning: {linux / 'patch_instructions.json'}: unknown key(s) "
        "channel_notes, later_feature ignored (cas-index applies packages, packages.conda, "
        "remove, revoke, patch_instructions_version); the rest applies")]
    doc = read_json(linux / "repodata.json")
    assert doc["packages.conda"]["alpha-1.0-0.conda"]["license"] == "BSD"
    assert doc["removed"] == ["gamma-1.0-0.conda"]
    assert "beta-1.0-0.conda" in read_json(channel.root / "osx-64/repodata.json")["packages.conda"]
    assert "alpha" in read_json(channel.root / "channeldata.json")["packages"]
    summary = json.loads(run_cli(main, [channel.root, "--json"]).out)
    by_subdir = {s["subdir"]: s["warnings"] for s in summary["channels"][0]["subdirs"]}
    assert "later_feature" in by_subdir["linux-64"][0] and by_subdir["osx-64"] == []


def test_unknown_keys_in_a_patch_file_are_a_warning_too(channel, run_cli, tmp_path):
    path = _write(tmp_path, {**INSTRUCTIONS, "packages_conda": {}})
    result = run_cli(main, [channel.root, "--patch", path])
    assert result.code == 0, result
    assert result.err.count("unknown key(s) packages_conda ignored") == 1  # said once
    folder = channel.root / "linux-64"
    assert read_json(folder / "patch_instructions.json") == INSTRUCTIONS  # the known parts
    assert "gamma-0.1-0.conda" not in read_json(folder / "repodata.json")["packages.conda"]


def test_missing_patch_file(channel, run_cli, tmp_path):
    result = run_cli(main, [channel.root, "--patch", tmp_path / "nope.json"])
    assert result.code == 2 and "nope.json: no such file" in result.err


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_patch_path_that_is_not_a_file_says_what_it_is(channel, run_cli, tmp_path, kind):
    path = tmp_path / "patch.json"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)  # is_file() is false: never opened, so never waited on
    result = run_cli(main, [channel.root, "--patch", path])
    said = "is a folder" if kind == "folder" else "not a regular file"
    assert result.code == 2, result
    assert f"patch.json: {said}; expected a JSON file or a repodata-patches package" \
        in result.err, result.err



def test_an_unreadable_patch_file_is_one_line(channel, run_cli, tmp_path, monkeypatch):
    path = _write(tmp_path, INSTRUCTIONS)
    real = Path.read_bytes

    def deny(self):  # root ignores chmod 000, so deny at the source
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    result = run_cli(main, [channel.root, "--patch", path])
    assert result.code == 2, result
    assert f"--patch {path}: cannot read it (permission denied)" in result.err, result.err

@needs_conformance
def test_repodata_patches_package(make_channel, run_cli):
    # conda-forge's repodata-patches package of 2018-08-28: per-platform instructions.
    patches = CONDA_INDEX_DATA / "tests/archives/conda-forge-repodata-patches-20180828-0.tar.bz2"
    specs = [PkgSpec("airflow-with-async", "1.9.0", build="1", build_number=1,
                     subdir="linux-64", fmt=fmt) for fmt in (".tar.bz2", ".conda")]
    specs.append(PkgSpec("airflow-with-gcp_api", "1.9.0", build="1", subdir="linux-64",
                         fmt=".tar.bz2"))
    specs.append(PkgSpec("sendgrid", "5.3.0", build="py_0", fmt=".tar.bz2"))
    specs.append(PkgSpec("unpatched", subdir="win-arm64"))  # no instructions for win-arm64
    channel = make_channel(specs)
    result = run_cli(main, [channel.root, "--patch", patches])
    assert result.code == 0, result
    linux = read_json(channel.root / "linux-64/repodata.json")
    expected_depends = ["airflow 1.9.0 py27_1", "eventlet >=0.9.7", "gevent >=0.13",
                        "greenlet >=0.4.9"]
    assert linux["packages"]["airflow-with-async-1.9.0-1.tar.bz2"]["depends"] == expected_depends
    assert linux["packages.conda"]["airflow-with-async-1.9.0-1.conda"]["depends"] == (
        expected_depends)
    assert linux["removed"] == ["airflow-with-gcp_api-1.9.0-1.tar.bz2"]
    noarch = read_json(channel.root / "noarch/repodata.json")
    assert noarch["removed"] == ["sendgrid-5.3.0-py_0.tar.bz2"] and noarch["packages"] == {}
    assert "sendgrid-5.3.0-py_0.tar.bz2" in read_json(
        channel.root / "noarch/repodata_from_packages.json")["packages"]
    assert read_json(channel.root / "win-arm64/repodata.json")["removed"] == []
    assert read_json(channel.root / "win-arm64/patch_instructions.json") == {}
