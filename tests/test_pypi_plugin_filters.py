"""The filters that bandersnatch's plugins map onto (exclude_platform, regex_release,
regex_project, size_project_metadata), as pure functions."""

from __future__ import annotations

from cas_mirror.pypi.filters import FilterSpec, project_decision
from cas_mirror.pypi.selection import select_files
from tests.test_pypi_filters import FILES, f


def kept(settings, files=FILES):
    return sorted(x.filename for x in select_files(FilterSpec.from_settings(settings), "pkg",
                                                   files).kept)


def test_exclude_platforms_drops_wheels_for_those_platforms_and_pythons():
    left = kept({"exclude_platforms": ["windows", "macos"]})
    assert "pkg-1.2-cp310-cp310-win_amd64.whl" not in left
    assert "pkg-1.2-cp38-abi3-macosx_11_0_arm64.whl" not in left
    assert "pkg-1.2-cp311-cp311-manylinux_2_17_x86_64.whl" in left
    assert "pkg-1.0-py3-none-any.whl" in left and "pkg-1.0.tar.gz" in left
    left = kept({"exclude_platforms": ["py3.11"]})
    assert "pkg-1.2-cp311-cp311-manylinux_2_17_x86_64.whl" not in left
    assert "pkg-1.2-cp310-cp310-win_amd64.whl" in left
    installers = [f("pkg-1.0.win32.exe", "1.0"), f("pkg-1.0-py2.7.egg", "1.0"),
                  f("pkg-1.0.tar.gz", "1.0")]
    assert kept({"exclude_platforms": ["windows", "py2.7"]}, installers) == ["pkg-1.0.tar.gz"]


def test_release_regex_drops_matching_versions_and_project_regex_projects():
    left = kept({"exclude_release_regex": [r"rc\d+$", r"^1\.5$"]})
    assert "pkg-2.0rc1.tar.gz" not in left and "pkg-1.5.tar.gz" not in left
    assert "pkg-1.0.tar.gz" in left
    spec = FilterSpec.from_settings({"exclude_project_regex": [".+-dev$"]})
    assert not project_decision(spec, "tool-dev").kept
    assert project_decision(spec, "tool").kept


def test_max_project_size_drops_big_projects_unless_whitelisted():
    total = sum(x.size for x in FILES)
    assert kept({"max_project_size": total}) != []
    assert kept({"max_project_size": total - 1}) == []
    assert kept({"max_project_size": total - 1, "whitelist": ["pkg"]}) != []
