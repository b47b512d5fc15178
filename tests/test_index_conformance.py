"""cas-index against conda-index's own expected outputs (../shared/conformance).

Each case's input channel is indexed in a temporary copy and every expected document must
equal ours: repodata.json record for record (including the case with one package in both
formats), repodata_from_packages.json, channeldata.json, current_repodata.json.
"""

from __future__ import annotations

import json

import pytest

from cas_index.cli import main
from cas_index.repodata import dumps_repodata
from tests.support.index_tools import CONDA_INDEX_DATA, copy_tree, needs_conformance, read_json

CASES = CONDA_INDEX_DATA / "expected-from-tests"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir()) if CASES.is_dir() else []

pytestmark = needs_conformance


def test_the_conformance_cases_are_there():
    assert len(CASE_NAMES) == 3, CASE_NAMES


@pytest.mark.parametrize("case", CASE_NAMES)
def test_conda_index_expected_outputs(tmp_path, run_cli, case):
    # conda-index was run with channel_name='test-channel' in these tests
    channel = copy_tree(CASES / case / "input", tmp_path / "test-channel")
    result = run_cli(main, [channel, "--quiet"])
    assert result.code == 0, result
    expected_files = sorted((CASES / case / "expected").rglob("*.json"))
    assert expected_files
    for expected in expected_files:
        relative = expected.relative_to(CASES / case / "expected")
        ours = read_json(channel / relative)
        assert ours == read_json(expected), relative
        if relative.name.startswith("repodata"):
            # the bytes are the canonical encoding, not just an equal document
            assert (channel / relative).read_bytes() == dumps_repodata(ours)


def test_same_package_in_both_formats_lands_in_both_sections(tmp_path, run_cli):
    case = CASES / "case3_tar_bz2_and_conda_same_pkg_osx64"
    channel = copy_tree(case / "input", tmp_path / "test-channel")
    assert run_cli(main, [channel, "-q"]).code == 0
    doc = read_json(channel / "osx-64/repodata.json")
    assert list(doc["packages"]) == ["conda-index-pkg-a-1.0-py27h5e241af_0.tar.bz2"]
    assert list(doc["packages.conda"]) == ["conda-index-pkg-a-1.0-py27h5e241af_0.conda"]
    assert doc["removed"] == [] and doc["repodata_version"] == 1
    assert doc["info"] == {"subdir": "osx-64"}


def test_hotfix_packages_repodata_current_repodata_and_channeldata(tmp_path, run_cli):
    # conda-index indexed only the .tar.bz2 files of this folder (see the conformance
    # README); its repodata, current_repodata and channeldata are the oracle.
    source = CONDA_INDEX_DATA / "tests/index_hotfix_pkgs"
    channel = tmp_path / "hotfix"
    (channel / "osx-64").mkdir(parents=True)
    for path in (source / "osx-64").glob("*.tar.bz2"):
        (channel / "osx-64" / path.name).write_bytes(path.read_bytes())
    assert run_cli(main, [channel, "--current-repodata", "-q"]).code == 0
    for subdir in ("osx-64", "noarch"):
        for name in ("repodata.json", "repodata_from_packages.json", "current_repodata.json"):
            assert read_json(channel / subdir / name) == read_json(source / subdir / name), name
    expected = read_json(source / "channeldata.json")
    for entry in expected["packages"].values():  # newer conda-index drops null fields
        for key in [k for k, v in entry.items() if v is None]:
            del entry[key]
    assert read_json(channel / "channeldata.json") == expected


def test_conda_twins_in_current_repodata_carry_legacy_bz2_md5(tmp_path, run_cli):
    source = CONDA_INDEX_DATA / "tests/index_hotfix_pkgs/osx-64"
    channel = tmp_path / "hotfix"
    copy_tree(source, channel / "osx-64")
    assert run_cli(main, [channel, "--current-repodata", "-q"]).code == 0
    full = read_json(channel / "osx-64/repodata.json")
    current = read_json(channel / "osx-64/current_repodata.json")
    # conda sees only the .conda of a twin pair, so current_repodata holds only those
    assert current["packages"] == {}
    assert set(current["packages.conda"]) == set(full["packages.conda"])
    for fn, record in current["packages.conda"].items():
        twin = fn.removesuffix(".conda") + ".tar.bz2"
        assert record == {**full["packages.conda"][fn],
                          "legacy_bz2_md5": full["packages"][twin]["md5"]}
    assert json.loads((channel / "channeldata.json").read_text())["subdirs"] == [
        "noarch", "osx-64"]
