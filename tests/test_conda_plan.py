"""Planning one platform folder (a pure function): what to download, keep and delete."""

from __future__ import annotations

import json

import pytest

from cas_mirror.conda.plan import plan_platform
from cas_mirror.conda.repodata import parse_repodata


def _records(kind):
    raw = {f"p{i}-1.0-0.conda": {"name": f"p{i}", "version": "1.0", "build": "0",
                                 **({"size": 10 * i} if i % 3 else {})} for i in range(1, 8)}
    if kind == "dicts":
        return raw
    return parse_repodata(json.dumps({"packages.conda": raw}).encode(), "u", "noarch").records


@pytest.mark.parametrize("kind", ["dicts", "views"])
def test_a_new_folder_plans_every_download_as_a_folder_with_other_files_does(kind):
    """An empty folder takes a shortcut (no test per record); it plans the same downloads,
    in the same order and with the same byte count (unknown sizes count 0), as the
    record-by-record path a folder holding some unrelated file takes."""
    selected = _records(kind)
    new = plan_platform(selected, {})
    other = plan_platform(selected, {"gone-1-0.conda": 5})
    assert new.download == other.download == list(selected)
    assert new.download_bytes == other.download_bytes == sum(
        10 * i for i in range(1, 8) if i % 3)
    assert new.up_to_date == other.up_to_date == []
    assert (new.delete, other.delete, other.delete_bytes) == ([], ["gone-1-0.conda"], 5)


def test_local_files_of_the_right_size_are_up_to_date_and_partials_are_sorted():
    selected = _records("views")
    local = {"p1-1.0-0.conda": 10, "p2-1.0-0.conda": 999, "extra-1-0.tar.bz2": 7,
             ".hidden.conda": 1}
    plan = plan_platform(selected, local, partials={"p4-1.0-0.conda": 3, "old-1-0.conda": 2})
    assert plan.up_to_date == ["p1-1.0-0.conda"]
    assert "p2-1.0-0.conda" in plan.download and "p1-1.0-0.conda" not in plan.download
    assert plan.delete == ["extra-1-0.tar.bz2"]
    assert plan.stale_partials == ["old-1-0.conda"]
    assert plan.delete_bytes == 7 + 2


def test_planned_downloads_leave_the_collector_nothing_to_walk_per_file():
    """A dry run of a big platform plans hundreds of thousands of downloads: the report
    keeps their names and sizes (objects the collector never tracks), not a tuple per
    file, and still reads as a list of (name, size)."""
    import gc
    from types import SimpleNamespace

    from cas_mirror.conda.gather import _fill_plan
    from cas_mirror.conda.local import LocalFolder
    from cas_mirror.conda.results import PlannedFile, PlatformReport

    selected = _records("views")
    w = SimpleNamespace(report=PlatformReport("pkgs/main", "noarch"),
                        plan=plan_platform(selected, {}), decisions=dict.fromkeys(selected),
                        local=LocalFolder(), source=SimpleNamespace(path="pkgs/main"),
                        platform="noarch")
    _fill_plan(w, selected, frozenset())
    planned = w.report.planned_download
    # two lists of strings and numbers; a list of tuples would hold seven tracked ones
    assert sum(map(gc.is_tracked, gc.get_referents(planned))) <= 3  # and its class
    assert not any(map(gc.is_tracked, [o for part in gc.get_referents(planned)
                                       if isinstance(part, list) for o in part]))
    assert list(planned) == [PlannedFile(fn, r.size) for fn, r in selected.items()]
    assert len(planned) == 7 and planned[0] == PlannedFile("p1-1.0-0.conda", 10)


@pytest.mark.parametrize("local", [
    {},  # a new folder
    {"p1-1.0-0.conda": 10, "p5-1.0-0.conda": 50},  # some up to date
    {f"p{i}-1.0-0.conda": 1 for i in range(1, 8)},  # every one present, every one wrong
], ids=["new", "some-kept", "all-wrong"])
def test_the_report_gives_each_planned_download_its_own_size(local):
    """The report's sizes are read from the records in the plan's order; when every
    selected file is downloaded, straight from the records as they are (no look-up)."""
    from types import SimpleNamespace

    from cas_mirror.conda.gather import _fill_plan
    from cas_mirror.conda.local import LocalFolder
    from cas_mirror.conda.results import PlannedFile, PlatformReport

    selected = dict(reversed(_records("views").items()))  # not in name order
    w = SimpleNamespace(report=PlatformReport("pkgs/main", "noarch"),
                        plan=plan_platform(selected, local), decisions=dict.fromkeys(selected),
                        local=LocalFolder(packages=local), source=SimpleNamespace(path="p"),
                        platform="noarch")
    _fill_plan(w, selected, frozenset())
    planned = list(w.report.planned_download)
    assert planned == [PlannedFile(fn, selected[fn].size) for fn in w.plan.download]
    assert [p.name for p in planned] == [fn for fn, r in selected.items()
                                         if fn not in local or r.size not in (None, local[fn])]
