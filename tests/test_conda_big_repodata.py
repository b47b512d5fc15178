"""Big repodata documents (issues 15 and 14): the parse keeps one small view per record and
refuses bad records with the same one-line reasons as before; publishing writes
upstream's bytes of the kept records; the filter's per-name shortcut decides exactly as
the pipeline does record by record; the downloader holds a big body once; the collector
waits while the pipeline runs; the dependency check gives the same findings a chunk at a
time."""

from __future__ import annotations

import gc
import json
import tracemalloc

import msgspec
import pytest

from cas_mirror.conda import gather as gather_module
from cas_mirror.conda import unsatisfied
from cas_mirror.conda.filter import FilterSpec, decide, matched_steps, select
from cas_mirror.conda.repodata import parse_repodata, restricted_document
from cas_mirror.net import Downloader, NetworkSettings
from tests.support.http_server import Response


def record(name, version="1.0", build="0", **extra):
    return {"name": name, "version": version, "build": build, "build_number": 0,
            "subdir": "linux-64", "size": 10, "sha256": "a" * 64, "md5": "b" * 32,
            "depends": [], **extra}


def fn(r, ext=".conda"):
    return f"{r['name']}-{r['version']}-{r['build']}{ext}"


# A record of each kind the inline test lets through only to record_problem, with the
# reason it gives (the same as before the inline test existed).
BAD = [
    (record("badsize", size="12"), "record has an invalid size '12'"),
    (record("negsize", size=-1), "record has an invalid size -1"),
    (record("shortsha", sha256="abc"), "record has an invalid sha256"),
    (record("intsha", sha256=7), "record has an invalid sha256"),
    (record("shortmd5", md5="abc"), "record has an invalid md5"),
    (record("othersubdir", subdir="win-64"), "record says subdir 'win-64', expected 'linux-64'"),
]


def test_records_with_a_field_of_the_wrong_type_are_refused_with_their_reason():
    good = [record("good"), record("alsogood", version="2.0", license="MIT")]
    conda = {fn(r): r for r in good + [bad for bad, _ in BAD]}
    conda["noname-1.0-0.conda"] = {k: v for k, v in record("noname").items() if k != "name"}
    conda["listname-1.0-0.conda"] = record(["listname"])
    conda["wrongname-1.0-0.conda"] = record("othername")
    tar = {fn(record("old"), ".tar.bz2"): record("old"),
           fn(record("misfiled")): record("misfiled")}  # a .conda under packages
    doc = {"info": {"subdir": "linux-64"}, "packages": tar, "packages.conda": conda}
    upstream = parse_repodata(json.dumps(doc).encode(), "u", "linux-64")
    assert sorted(upstream.records) == sorted(
        [fn(r) for r in good] + ["old-1.0-0.tar.bz2"])
    expected = {fn(bad): why for bad, why in BAD}
    expected["noname-1.0-0.conda"] = "record has no name"
    expected["listname-1.0-0.conda"] = "record has no name"
    expected["wrongname-1.0-0.conda"] = ("file name does not match the record "
                                         "(othername-1.0-0)")
    expected["misfiled-1.0-0.conda"] = "file name does not end in .tar.bz2"
    assert upstream.refused == expected
    view = upstream.records["alsogood-2.0-0.conda"]
    assert (view.fn, view.name, view.version, view.license, view.size) == (
        "alsogood-2.0-0.conda", "alsogood", "2.0", "MIT", 10)


def test_records_of_one_name_share_one_name_string():
    names = "".join(["pkg", "a"])  # built at run time: not a constant of this module
    doc = {"packages.conda": {fn(r): r for r in (record(names, version=f"1.{i}")
                                                 for i in range(3))}}
    views = list(parse_repodata(json.dumps(doc).encode(), "u", "linux-64").records.values())
    assert views[0].name is views[1].name is views[2].name
    assert views[0].subdir is views[2].subdir


def test_published_records_are_upstreams_bytes():
    # Odd spacing, key order, escapes and a float: re-encoding would change each.
    kept = ('{"name":"keep", "version":"1.0","build":"0",  "size":10,'
            '"summary":"caf\\u00e9","weight":1.50,"depends":["x >=1"]}')
    other = '{"name":"drop","version":"1.0","build":"0"}'
    old = '{"build":"0","name":"old","version":"1.0"}'
    text = ('{"info":{"subdir":"linux-64"},"packages":{"old-1.0-0.tar.bz2":' + old +
            '},"packages.conda":{"keep-1.0-0.conda":' + kept + ',"drop-1.0-0.conda":' +
            other + '},"removed":["gone-1.0-0.conda"],"repodata_version":1}')
    upstream = parse_repodata(text.encode(), "u", "linux-64")
    out = restricted_document(upstream, {"keep-1.0-0.conda", "old-1.0-0.tar.bz2"})
    assert out == ('{"info":{"subdir":"linux-64"},"packages":{"old-1.0-0.tar.bz2":' + old +
                   '},"packages.conda":{"keep-1.0-0.conda":' + kept + '},'
                   '"removed":["gone-1.0-0.conda"],"repodata_version":1}').encode()
    assert restricted_document(upstream, set()) == (
        b'{"info":{"subdir":"linux-64"},"packages":{},"packages.conda":{},'
        b'"removed":["gone-1.0-0.conda"],"repodata_version":1}')


def reference(record, platform, spec):
    """The pipeline of GUIDE section 1 from every entry's own test (matched_steps tries
    each entry on the record; no per-name shortcut)."""
    steps = matched_steps(record, platform, spec)
    if any(step == "platforms" for step, _ in steps):
        return (False, "platforms", next(why for step, why in steps if step == "platforms"))
    dropped = next(((s, w) for s, w in steps if s in ("license_blacklist", "blacklist")), None)
    if dropped is None:
        return (True, "default", "no filter dropped it")
    white = next((w for s, w in steps if s == "whitelist"), None)
    if white is None:
        return (False, *dropped)
    return (True, "whitelist", f"{white} (overrides {dropped[0]}: {dropped[1]})")


@pytest.mark.parametrize("kind", ["views", "dicts", "mixed"])
def test_the_per_name_shortcut_decides_as_the_pipeline_does_record_by_record(kind):
    """Views (the parse's), dicts, and both at once (decided one by one): the same
    decisions as the pipeline on each record alone. Names of one class (no entry:
    "plain", "other") meet records of two subdirs, which the shortcut tells apart."""
    records = {}
    for name in ("numpy", "numba", "scipy", "r-base", "r-x", "zlib", "gcc", "plain"):
        for version in ("0.9", "1.5", "2.1"):
            for license in ("MIT", "GPL-3.0-only", None):
                r = record(name, version=version, build=f"h{len(records)}_0",
                           license=license)
                records[fn(r)] = r
    other = record("other", subdir="win-64")
    if kind == "dicts":
        records[fn(other)] = other
    else:  # a view's subdir is the platform's: the parse refuses another
        doc = {"packages.conda": records}
        parsed = parse_repodata(json.dumps(doc).encode(), "u", "linux-64")
        records = {**parsed.records, **({fn(other): other} if kind == "mixed" else {})}
    spec = FilterSpec.from_config(
        ["linux-64"], ["GPL"],
        ["numpy >=2", "num*", "r-*", {"name": "zlib", "version": "<2"}, "scipy 1.5 *_0"],
        ["numba", "numpy 0.9", "r-base", {"name": "zlib", "license": "mit"}, "gcc"])
    one_by_one = {f: decide(r, "linux-64", spec) for f, r in records.items()}
    decisions = select(records, "linux-64", spec)
    assert decisions == one_by_one
    assert {f: (d.kept, d.step, d.reason) for f, d in decisions.items()} == {
        f: reference(r, "linux-64", spec) for f, r in records.items()}
    # each kind of decision occurs, so the comparison above means something
    assert {d.step for d in decisions.values()} == {
        "default", "license_blacklist", "blacklist", "whitelist",
        *(["platforms"] if kind != "views" else [])}


def test_a_big_body_is_held_once(http_server, tmp_path):
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB
    answer = Response(200, body)  # made before tracing: the server sends it as it is
    server = http_server(tmp_path)
    server.route("/big.json", lambda request: answer)
    with Downloader(NetworkSettings(workers=1, timeout=10.0)) as downloader:
        tracemalloc.start()
        try:
            response = downloader.get(f"{server.url}/big.json")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.data == body
    assert peak < 1.5 * len(body), peak  # chunks joined at the end: twice the body


def test_the_collector_waits_while_the_pipeline_runs(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(gather_module, "_gather", lambda *a: seen.append(gc.isenabled()))
    assert gc.isenabled()
    gather_module.gather(*[None] * 7)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:  # a caller that had it off keeps it off
        gather_module.gather(*[None] * 7)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _unsatisfied(upstream, decisions):
    """What the dependency check reports for one platform of `upstream` so decided."""
    from types import SimpleNamespace

    report = SimpleNamespace(unsatisfied={})
    w = SimpleNamespace(usable=True, source=SimpleNamespace(path="pkgs/main"),
                        platform="linux-64", quiet=None, fetched=None,
                        upstream=upstream, decisions=decisions, report=report)
    unsatisfied.check_dependencies([w])
    return report.unsatisfied


def test_the_dependency_check_finds_the_same_a_chunk_at_a_time(monkeypatch):

    from cas_mirror.conda.filter import KEPT, Decision

    needs = {f"app{i}": ["zlib", "python"] if i % 3 else ["libx >=1"] for i in range(7)}
    recs = [record(name, depends=deps) for name, deps in needs.items()]
    recs += [record("zlib"), record("libx"), record("python")]
    upstream = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in recs}})
                              .encode(), "u", "linux-64")
    dropped = Decision(False, "blacklist", "matches 'zlib'")
    decisions = {f: dropped if f.startswith("zlib") else KEPT for f in upstream.records}

    def check(chunk):
        monkeypatch.setattr(unsatisfied, "DEPENDS_CHUNK", chunk)
        return _unsatisfied(upstream, decisions)

    whole = check(10_000)
    assert whole == {f"app{i}-1.0-0.conda": ["zlib"] for i in range(7) if i % 3}
    assert check(2) == whole


def test_a_chunk_with_a_depends_that_is_not_a_list_of_strings_is_checked_record_by_record(
        monkeypatch):
    """The check decodes a chunk's depends as lists of strings in one call; a chunk where
    one is something else (a string, a number in the list) still reports the others."""

    from cas_mirror.conda.filter import KEPT, Decision

    recs = [record("a", depends="zlib"), record("b", depends=["zlib", 3]),
            record("c", depends=["zlib >=1.2", "python"]), record("d", depends=["python"]),
            record("zlib"), record("python")]
    upstream = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in recs}})
                              .encode(), "u", "linux-64")
    dropped = Decision(False, "blacklist", "matches 'zlib'")
    decisions = {f: dropped if f.startswith("zlib") else KEPT for f in upstream.records}
    for chunk in (1, 2, 10):
        monkeypatch.setattr(unsatisfied, "DEPENDS_CHUNK", chunk)
        assert _unsatisfied(upstream, decisions) == {"b-1.0-0.conda": ["zlib"],
                                                     "c-1.0-0.conda": ["zlib"]}


def test_depends_that_are_not_json_lists_are_skipped_not_fatal():
    text = ('{"packages.conda":{"a-1.0-0.conda":{"name":"a","version":"1.0","build":"0",'
            '"depends":"zlib"},"b-1.0-0.conda":{"name":"b","version":"1.0","build":"0",'
            '"depends":["zlib"]}}}')
    upstream = parse_repodata(text.encode(), "u", "linux-64")
    from cas_mirror.conda.repodata import depends_of

    assert depends_of(upstream, ["a-1.0-0.conda", "b-1.0-0.conda"]) == {
        "a-1.0-0.conda": "zlib", "b-1.0-0.conda": ["zlib"]}
    assert isinstance(upstream.records["a-1.0-0.conda"].depends, msgspec.Raw)


def test_identical_depends_are_decoded_once_and_shared():
    from cas_mirror.conda.closure import unsatisfied
    from cas_mirror.conda.repodata import depends_of

    recs = [record("a", version=f"1.{i}", depends=["zlib >=1", "python"]) for i in range(3)]
    recs.append(record("b", depends=["python"]))
    upstream = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in recs}})
                              .encode(), "u", "linux-64")
    lists = depends_of(upstream, list(upstream.records))
    assert lists["a-1.0-0.conda"] is lists["a-1.1-0.conda"] is lists["a-1.2-0.conda"]
    assert lists["b-1.0-0.conda"] == ["python"]
    found = unsatisfied(lists, {"zlib"})
    assert found == {f"a-1.{i}-0.conda": ["zlib"] for i in range(3)}
    found["a-1.0-0.conda"].append("changed")  # each record's finding is its own list
    assert found["a-1.1-0.conda"] == ["zlib"]


def test_the_closure_index_groups_names_by_case_in_document_order():
    from cas_mirror.conda.depends import _Pool
    from cas_mirror.conda.filter import KEPT

    recs = [record("Foo", version="1"), record("foo", version="2"), record("bar"),
            record("Foo", version="3")]
    upstream = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in recs}})
                              .encode(), "u", "linux-64")
    pool = _Pool(upstream.records, dict.fromkeys(upstream.records, KEPT))
    assert [pool.fns[at] for at in pool.groups["foo"]] == \
        ["Foo-1-0.conda", "foo-2-0.conda", "Foo-3-0.conda"]
    assert [pool.fns[at] for at in pool.groups["bar"]] == ["bar-1.0-0.conda"]


def test_a_plain_section_decoded_whole_gives_the_records_the_record_by_record_path_gives():
    """A section whose records are all plain is taken whole (types checked by msgspec
    while decoding); one bad record sends it record by record: the good records come out
    the same either way, and the bad one alone is refused."""
    from cas_mirror.conda.repodata import RecordView

    good = [record("a", license="MIT"), record("b", version="2.0", subdir=None),
            record("a", version="1.1", size=None, sha256=None)]
    good[1].pop("subdir")
    plain = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in good}})
                           .encode(), "u", "linux-64")
    bad = record("c", size=-1)
    mixed = parse_repodata(json.dumps({"packages.conda": {fn(r): r for r in [*good, bad]}})
                           .encode(), "u", "linux-64")
    assert mixed.refused == {fn(bad): "record has an invalid size -1"}
    assert plain.refused == {}
    fields = RecordView.__struct_fields__
    assert {f: [getattr(v, f) for f in fields] for f, v in plain.records.items()} == \
        {f: [getattr(v, f) for f in fields] for f, v in mixed.records.items()}
    views = list(plain.records.values())
    assert all(isinstance(v, RecordView) for v in views)
    assert views[0].name is views[2].name  # one string object per distinct name
    assert views[0].fn == "a-1.0-0.conda" and views[1].subdir is None


@pytest.mark.parametrize("record_fields", [
    {"size": True}, {"size": 1.5}, {"sha256": "A" * 63}, {"md5": 5}, {"subdir": "noarch"},
    {"name": 3}, {"build": None}])
def test_a_section_with_one_record_not_plain_still_refuses_only_that_one(record_fields):
    odd = {**record("odd"), **record_fields}
    name = odd["name"] if isinstance(odd["name"], str) else "odd"
    build = odd["build"] if isinstance(odd["build"], str) else "0"
    conda = {fn(record("good")): record("good"), f"{name}-1.0-{build}.conda": odd}
    upstream = parse_repodata(json.dumps({"packages.conda": conda}).encode(), "u",
                              "linux-64")
    assert list(upstream.records) == ["good-1.0-0.conda"]
    assert list(upstream.refused) == [f"{name}-1.0-{build}.conda"]


def test_a_record_whose_licence_is_not_equal_to_itself_is_still_decided():
    """select groups records by (subdir, name, license, license_family): a NaN licence
    makes a key equal to no other, and that record is decided on its own."""
    records = {"a-1-0.conda": {"name": "a", "version": "1", "build": "0",
                               "license": float("nan")},
               "b-1-0.conda": {"name": "b", "version": "1", "build": "0", "license": "GPL"}}
    spec = FilterSpec.from_config(None, ["GPL"], [], [])
    decisions = select(records, "linux-64", spec)
    assert decisions["a-1-0.conda"].kept and not decisions["b-1-0.conda"].kept


def test_a_plain_document_is_decoded_in_one_pass_and_publishes_as_one_read_by_sections():
    """A document whose records are all plain is decoded whole, its sections found only
    when publishing asks; it gives the records, info and published bytes that the
    section-by-section path gives a document with one odd record beside them."""
    good = {fn(r): r for r in [record("a"), record("b", version="2.0")]}
    doc = {"info": {"subdir": "linux-64", "base_url": "x"}, "packages.conda": good,
           "packages": {fn(record("c"), ".tar.bz2"): record("c")},
           "removed": ["old-1-0.conda"], "repodata_version": 1, "signatures": {}}
    plain = parse_repodata(json.dumps(doc).encode(), "u", "linux-64")
    assert plain.top is None and plain.refused == {}
    odd = json.loads(json.dumps(doc))
    odd["packages.conda"][fn(record("z", size=-1))] = record("z", size=-1)
    sectioned = parse_repodata(json.dumps(odd).encode(), "u", "linux-64")
    assert sectioned.top is not None and list(sectioned.refused) == [fn(record("z"))]
    assert plain.info == sectioned.info and list(plain.records) == list(sectioned.records)
    keep = set(plain.records)
    assert restricted_document(plain, keep) == restricted_document(sectioned, keep)
    assert json.loads(restricted_document(plain, keep))["removed"] == ["old-1-0.conda"]
    from cas_mirror.conda.errors import RepodataError

    with pytest.raises(RepodataError, match=r"info\.subdir is 'linux-64', expected 'osx-64'"):
        parse_repodata(json.dumps(doc).encode(), "u", "osx-64")


# Entries around a missing name `zlib` (and the virtual `__zlib`): the byte scan must let
# through every record the exact check reports, whatever the spelling.
SCAN_DEPENDS = [
    ["zlib"], ["ZLib >=1.2"], ["  zlib"], ["zlib>=1.2"], ["zlib=1.2"], ["zlib[build=0]"],
    ["zlib|x"], ["zlib~=1"], ["zlib!=1"], ["zlib<2"], ["zlib,x"], ["zlib\tx"],
    ["zlibx"], ["xzlib"], ["py-zlib"], ["zlib]"], ["zlib(1)"], ["python", "zlib 1.*"],
    ["__zlib"], [["zlib"]], "zlib", ["zlib", 3], {"zlib": 1}, [],
    ["zlib\u00a0x"], ["\u00a0zlib"], ["ESCAPED"], ["\u212alib >=1"], ["caf\u00e9"],
]


def _scan_upstream(depends_lists, escape):
    recs = [record(f"app{i}", depends=d) for i, d in enumerate(depends_lists)]
    recs += [record("zlib"), record("__zlib"), record("klib"), record("python")]
    text = json.dumps({"packages.conda": {fn(r): r for r in recs}}, ensure_ascii=escape)
    text = text.replace('"ESCAPED"', '"z\\u006cib"')  # zlib, its l a JSON escape
    return parse_repodata(text.encode(), "u", "linux-64")


@pytest.mark.parametrize("escape", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_the_byte_scan_lets_through_every_record_the_exact_check_reports(
        monkeypatch, escape, chunk):
    """The check scans a chunk's raw depends for the missing names before decoding any; it
    reports what decoding every record reports (the scan switched off: MAX_NAMES -1),
    with names spelt in any case, after spaces, before any operator, in JSON escapes,
    beside non-ASCII text or in a character whose lower case is ASCII (the Kelvin sign of
    `klib`), and nothing for a longer name, a virtual package or an entry that is not a
    string."""

    from cas_mirror.conda import depends_scan
    from cas_mirror.conda.filter import KEPT, Decision

    upstream, max_names = _scan_upstream(SCAN_DEPENDS, escape), depends_scan.MAX_NAMES
    dropped = Decision(False, "blacklist", "dropped")
    gone = ("zlib-", "__zlib-", "klib-")
    decisions = {f: dropped if f.startswith(gone) else KEPT for f in upstream.records}

    def check(max_names):
        monkeypatch.setattr(unsatisfied, "DEPENDS_CHUNK", chunk)
        monkeypatch.setattr(depends_scan, "MAX_NAMES", max_names)
        return _unsatisfied(upstream, decisions)

    exact = check(-1)
    reported = {int(f.split("-")[0][3:]) for f in exact}
    assert reported == {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17, 21, 24, 25, 26, 27}
    assert exact["app27-1.0-0.conda"] == ["klib"]
    assert check(max_names) == exact


def test_the_byte_scan_passes_over_records_naming_none_and_reads_escapes_as_unknown():
    from cas_mirror.conda.depends_scan import candidates, name_pattern

    pattern = name_pattern({"zlib", "lib-x"})
    raws = [b'["python >=3", "openssl"]', b'[\n "ZLIB >=1"\n]', b'["zlibx", "libx"]',
            b'["lib-x"]', b'["py", "zlib"]', b"[]"]
    assert candidates(raws, pattern) == [1, 3, 4]
    for unsafe in (b'["z\\u006cib"]', '["caf\u00e9"]'.encode()):  # escapes, non-ASCII
        assert candidates([*raws, unsafe], pattern) == list(range(len(raws) + 1))
    assert name_pattern({f"n{i}" for i in range(5000)}) is None  # too many to pay


def test_kept_records_follow_the_decisions_in_either_order():
    """`Work.kept` takes the records in one pass when the decisions have select's order,
    and looks each one up when they do not (decisions rebuilt by the closure or a lock)."""
    from types import SimpleNamespace

    from cas_mirror.conda.filter import KEPT, Decision
    from cas_mirror.conda.work import Work, records_of

    records = {"a.conda": "A", "b.conda": "B", "c.conda": "C"}
    dropped = Decision(False, "blacklist", "x")
    assert list(records_of(records, dict.fromkeys(records, KEPT))) == ["A", "B", "C"]
    assert records_of(records, {"c.conda": KEPT, "a.conda": KEPT}) == ["C", "A"]
    for decisions in ({"a.conda": KEPT, "b.conda": dropped, "c.conda": KEPT},
                      {"c.conda": KEPT, "b.conda": dropped, "a.conda": KEPT}):
        w = SimpleNamespace(upstream=SimpleNamespace(records=records), decisions=decisions)
        kept = Work.kept(w)
        assert kept == {fn: records[fn] for fn in decisions if decisions[fn].kept}
        assert list(kept) == [fn for fn in decisions if decisions[fn].kept]
