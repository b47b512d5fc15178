"""conda.closure and conda.plan on their own: dependencies on packages the filters
dropped, and stale partial downloads."""

from __future__ import annotations

from cas_mirror.conda.closure import dependency_name, missing_names, unsatisfied
from cas_mirror.conda.plan import plan_platform


def test_dependency_name_is_the_first_word_and_virtual_packages_are_none():
    assert [dependency_name(e) for e in ["zlib >=1.2,<2", "python 3.11.* *_cpython",
                                         "libgcc-ng>=11", "Openssl", "numpy[version='>=1']",
                                         "__glibc >=2.17", ""]] == \
        ["zlib", "python", "libgcc-ng", "openssl", "numpy", None, None]


def test_unsatisfied_names_each_record_and_what_it_misses():
    depends = {"numpy-1.0-0.conda": ["zlib 1.2.*", "python >=3", "__unix"],
               "scipy-1.0-0.conda": ["numpy", {"not": "a string"}, "zlib", "libzip"],
               "python-3.11-0.conda": [], "odd-1.0-0.conda": None}
    assert unsatisfied(depends, {"zlib", "libzip"}) == {
        "numpy-1.0-0.conda": ["zlib"], "scipy-1.0-0.conda": ["libzip", "zlib"]}
    assert unsatisfied(depends, set()) == {}


def test_platforms_are_satisfied_by_noarch_and_noarch_by_any_platform():
    kept = {"linux-64": {"numpy", "python"}, "osx-64": {"numpy"}, "noarch": {"six"}}
    dropped = {"linux-64": {"zlib", "python"}, "osx-64": {"python"}, "noarch": {"tool"}}
    assert missing_names(kept, dropped) == {
        "linux-64": {"zlib", "tool"},  # python: another build of it is kept
        "osx-64": {"python", "tool"},  # linux-64's python does not help osx-64
        "noarch": {"zlib", "tool"},  # any platform's python satisfies a noarch record
    }
    assert missing_names({"linux-64": {"a"}}, {"linux-64": set()}) == {}


def test_partials_of_unplanned_files_are_stale_and_planned_ones_resume():
    selected = {"a-1-0.conda": {"size": 10}, "b-1-0.conda": {"size": 10}}
    plan = plan_platform(selected, {"b-1-0.conda": 10}, partials={"a-1-0.conda": 4,
                                                                  "gone-1-0.conda": 7})
    assert plan.download == ["a-1-0.conda"]
    assert plan.stale_partials == ["gone-1-0.conda"]
    assert plan.delete_bytes == 7
