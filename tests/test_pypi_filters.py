"""The PyPI filters and planning, as pure functions."""

from __future__ import annotations

import pytest

from cas_mirror.pypi.filters import (
    EntryError,
    FilterSpec,
    parse_entry,
    project_decision,
)
from cas_mirror.pypi.model import ListedProject, Listing, UpstreamFile
from cas_mirror.pypi.plan import WantedFile, plan_files, plan_projects
from cas_mirror.pypi.selection import select_files


def f(filename, version, yanked=False, requires_python=None):
    return UpstreamFile(filename, f"https://files.example.invalid/packages/{filename}",
                        filename, {"sha256": "0"}, 10, requires_python, yanked, False, None,
                        version)


FILES = [f("pkg-1.0.tar.gz", "1.0"), f("pkg-1.0-py3-none-any.whl", "1.0"),
         f("pkg-2.0rc1.tar.gz", "2.0rc1"), f("pkg-1.5.tar.gz", "1.5", yanked="bad"),
         f("pkg-1.2-cp311-cp311-manylinux_2_17_x86_64.whl", "1.2"),
         f("pkg-1.2-cp310-cp310-win_amd64.whl", "1.2"),
         f("pkg-1.2-cp38-abi3-macosx_11_0_arm64.whl", "1.2"),
         f("pkg-1.2-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl", "1.2"),
         f("pkg-1.1.tar.gz", "1.1", requires_python=">=3.12")]


def kept(spec, files=FILES):
    return sorted(x.filename for x in select_files(spec, "pkg", files).kept)


def spec(**settings):
    return FilterSpec.from_settings(settings)


def test_entries():
    assert parse_entry("Requests>=2.30").pattern == "requests"
    assert str(parse_entry("numpy >=1.26,<3").specifier) == "<3,>=1.26"
    assert parse_entry("Django_*").pattern == "django-*"
    for bad in ("requests>>2", "", "a b c", "requests; os_name == 'nt'"):
        with pytest.raises(EntryError):
            parse_entry(bad)


def test_project_decisions():
    s = spec(whitelist=["django-*", "requests>=2"], blacklist=["django-evil", "requests<2.1"])
    assert project_decision(s, "django-rest").kept
    assert not project_decision(s, "django-evil").kept
    assert project_decision(s, "requests").kept  # a specifier only limits versions
    assert not project_decision(s, "flask").kept


def test_version_filters():
    assert kept(spec(whitelist=["pkg>=1.2"]), FILES[:4]) == ["pkg-1.5.tar.gz", "pkg-2.0rc1.tar.gz"]
    assert kept(spec(blacklist=["pkg==1.0"]), FILES[:4]) == ["pkg-1.5.tar.gz", "pkg-2.0rc1.tar.gz"]
    assert kept(spec(exclude_prereleases=True), FILES[:4]) == [
        "pkg-1.0-py3-none-any.whl", "pkg-1.0.tar.gz", "pkg-1.5.tar.gz"]
    # latest: 2.0rc1 is newest; 1.5 is yanked, so 1.0 ranks above it
    assert kept(spec(latest_only=True), FILES[:4]) == ["pkg-2.0rc1.tar.gz"]
    assert kept(spec(keep_latest=2), FILES[:4]) == [
        "pkg-1.0-py3-none-any.whl", "pkg-1.0.tar.gz", "pkg-2.0rc1.tar.gz"]


def test_file_filters():
    assert kept(spec(packagetypes=["sdist"])) == sorted(
        x.filename for x in FILES if x.filename.endswith(".tar.gz"))
    linux_311 = kept(spec(platforms=["linux"], python_versions=["3.11"]))
    assert "pkg-1.2-cp311-cp311-manylinux_2_17_x86_64.whl" in linux_311
    assert "pkg-1.0-py3-none-any.whl" in linux_311
    assert "pkg-1.2-cp310-cp310-win_amd64.whl" not in linux_311
    assert "pkg-1.2-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl" not in linux_311
    assert "pkg-1.1.tar.gz" not in linux_311  # Requires-Python >=3.12
    assert "pkg-1.2-cp38-abi3-macosx_11_0_arm64.whl" in kept(
        spec(platforms=["macosx_*_arm64"], python_versions=["3.12"]))
    assert "pkg-1.2-cp310-cp310-win_amd64.whl" in kept(spec(platforms=["windows"]))
    dropped = select_files(spec(platforms=["windows"]), "pkg", FILES).dropped
    assert dropped["pkg-1.2-cp311-cp311-manylinux_2_17_x86_64.whl"].startswith("platforms")


def test_plan_projects_by_serial():
    listing = Listing({"a": ListedProject("A", 5), "b": ListedProject("b", 7),
                       "c": ListedProject("c", 1), "x": ListedProject("x", 1)}, 7)
    mirrored = {"a": 5, "b": 6, "gone": 3, "x": 1}
    plan = plan_projects(listing, mirrored, spec(blacklist=["x"]), refetch_all=False)
    assert plan.fetch == {"b": 7, "c": 1}
    assert plan.unchanged == ["a"]
    assert plan.remove == {"x": "blacklist: x", "gone": "removed upstream"}
    changelog = Listing({"b": ListedProject("b", 7)}, 7, complete=False)
    plan = plan_projects(changelog, mirrored, spec(), refetch_all=False)
    assert plan.fetch == {"b": 7} and "gone" in plan.unchanged and not plan.remove


def test_plan_files():
    wanted = [WantedFile("aa/x.whl", "u", 1, "h", None),
              WantedFile("bb/y.tar.gz", "u", 2, "h", None)]
    plan = plan_files(wanted, {"aa/x.whl"}, ["aa/x.whl", "cc/old.whl"])
    assert [w.relpath for w in plan.download] == ["bb/y.tar.gz"]
    assert [w.relpath for w in plan.up_to_date] == ["aa/x.whl"]
    assert plan.delete == ["cc/old.whl"] and plan.download_bytes == 2
