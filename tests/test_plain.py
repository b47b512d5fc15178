"""cas_index/plain.py: the slotted records that replace dataclasses on a no-op's path
behave as the dataclasses did (construction, defaults, equality, repr, read-only frozen
records, pickling across processes); and gather.in_threads, which replaced a thread pool
there, runs every task and raises what a task raised."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest

from cas_index.plain import Frozen, Plain
from cas_mirror.conda.fetch import ChannelSource
from cas_mirror.conda.gather import in_threads
from cas_mirror.conda.results import PlatformReport
from cas_mirror.net.types import DownloadJob, DownloadResult


class Point(Frozen):
    _fields = ("x", "y")
    __slots__ = _fields
    _defaults = {"y": 0}  # noqa: RUF012


class Bag(Plain):
    _fields = ("name", "items")
    __slots__ = _fields
    _defaults = {"items": list}  # noqa: RUF012
    _factories = frozenset({"items"})


def test_construction_defaults_and_factories():
    assert Point(1) == Point(x=1, y=0) != Point(1, 2)
    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert b.items == [] and a.items == [1]  # one list per record, as default_factory
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert Point(1, 2)._asdict() == {"x": 1, "y": 2}
    assert Point(1, 2)._replace(y=5) == Point(1, 5)
    with pytest.raises(TypeError, match="missing argument 'x'"):
        Point()
    with pytest.raises(TypeError, match="unexpected keyword"):
        Point(1, z=3)
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="at most 2"):
        Point(1, 2, 3)


def test_frozen_records_are_read_only_and_hashable_plain_ones_are_not_hashable():
    p = Point(1, 2)
    with pytest.raises(AttributeError, match="read-only"):
        p.x = 5
    assert {p: 1}[Point(1, 2)] == 1
    with pytest.raises(TypeError):
        hash(Bag("a"))
    with pytest.raises(AttributeError):
        Bag("a").other = 1  # slotted: no attribute outside the fields


def test_records_pickle_and_copy_by_their_fields():
    source = ChannelSource("pkgs/main", "http://127.0.0.1:1/pkgs/main", "pkgs/main")
    result = DownloadResult(DownloadJob("http://127.0.0.1:1/a", dest="a"), True, received=3)
    report = PlatformReport("pkgs/main", "noarch", failed=[("a", "why")])
    for record in (source, result, report):
        assert pickle.loads(pickle.dumps(record)) == record
        assert copy.deepcopy(record) == record and copy.copy(record) == record


def test_in_threads_runs_every_task_and_raises_what_one_raised():
    seen, lock = [], threading.Lock()

    def task(item):
        with lock:
            seen.append(item)
        if item == 3:
            raise ValueError("bug in task 3")

    with pytest.raises(ValueError, match="bug in task 3"):
        in_threads(task, list(range(10)))
    assert sorted(seen) == list(range(10))
    seen.clear()
    in_threads(task, [7])
    in_threads(task, [])
    assert seen == [7]
