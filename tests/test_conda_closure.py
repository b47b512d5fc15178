"""conda.closure and conda.plan on their own: dependency names nothing kept provides, and
stale partial downloads."""

from __future__ import annotations

from cas_mirror.conda.closure import dependency_names, unsatisfied, unsatisfied_by_platform
from cas_mirror.conda.plan import plan_platform


def rec(name: str, *depends: str) -> dict:
    return {"name": name, "depends": list(depends)}


def test_dependency_names_are_the_first_word_without_virtual_packages():
    assert dependency_names(["zlib >=1.2,<2", "python 3.11.* *_cpython", "libgcc-ng>=11",
                             "__glibc >=2.17", "Openssl", "", 3, "numpy[version='>=1']"]) == \
        {"zlib", "python", "libgcc-ng", "openssl", "numpy"}
    assert dependency_names(None) == set()


def test_unsatisfied_names_each_record_and_what_it_misses():
    kept = {"numpy-1.0-0.conda": rec("numpy", "zlib", "python >=3"),
            "python-3.11-0.conda": rec("python", "__unix")}
    assert unsatisfied(kept, {"numpy", "python"}) == {"numpy-1.0-0.conda": ["zlib"]}


def test_platform_records_are_satisfied_by_noarch_and_noarch_by_any_platform():
    kept = {
        "linux-64": {"numpy-1.0-0.conda": rec("numpy", "python", "six", "zlib"),
                     "python-3.11-0.conda": rec("python")},
        "osx-64": {"numpy-1.0-0.conda": rec("numpy", "python")},
        "noarch": {"six-1.0-0.conda": rec("six", "python"),
                   "tool-1.0-0.conda": rec("tool", "missing")},
    }
    assert unsatisfied_by_platform(kept) == {
        "linux-64": {"numpy-1.0-0.conda": ["zlib"]},
        "osx-64": {"numpy-1.0-0.conda": ["python"]},  # linux-64's python does not help
        "noarch": {"tool-1.0-0.conda": ["missing"]},
    }


def test_partials_of_unplanned_files_are_stale_and_planned_ones_resume():
    selected = {"a-1-0.conda": {"size": 10}, "b-1-0.conda": {"size": 10}}
    plan = plan_platform(selected, {"b-1-0.conda": 10}, partials={"a-1-0.conda": 4,
                                                                  "gone-1-0.conda": 7})
    assert plan.download == ["a-1-0.conda"]
    assert plan.stale_partials == ["gone-1-0.conda"]
    assert plan.delete_bytes == 7
