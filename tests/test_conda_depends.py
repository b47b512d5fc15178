"""`include_dependencies`: the closure pulls what the whitelisted records need, across a
platform and noarch, honouring version and build specs; py-rattler then installs from
the mirror alone (and cannot without the closure); blocked dependencies are reported; the
sharded upstream gives the same mirror as the whole repodata.json; `--explain` names who
pulled a record in."""

from __future__ import annotations

import json
import shutil

import pytest

from cas_mirror.conda.depends import close
from cas_mirror.conda.filter import FilterSpec, select
from cas_mirror.conda.repodata import parse_repodata
from tests.support.clients import rattler_install
from tests.support.conda_mirror import Mirror
from tests.support.conda_packages import PkgSpec, build_channel
from tests.test_conda_upstream_shards import shard_channel

# app (linux-64) -> libfoo >=2 -> zlib 1.2.* ; app -> helper (noarch) -> pyish >=3 *_cp
SPECS = [
    PkgSpec("app", "1.0", subdir="linux-64",
            depends=["libfoo >=2", "helper"],
            extra_index={"constrains": ["notthere >=1"]}),
    PkgSpec("libfoo", "1.0", subdir="linux-64"),
    PkgSpec("libfoo", "2.1", subdir="linux-64", depends=["zlib 1.2.*"]),
    PkgSpec("zlib", "1.2.13", subdir="linux-64"),
    PkgSpec("zlib", "1.3.1", subdir="linux-64"),
    PkgSpec("helper", "1.0", subdir="noarch", depends=["pyish >=3 *_cp"]),
    PkgSpec("pyish", "3.1", build="h1_cp", subdir="linux-64"),
    PkgSpec("pyish", "3.1", build="h1_pypy", subdir="linux-64"),
    PkgSpec("pyish", "2.7", build="h0_cp", subdir="linux-64"),
    PkgSpec("notthere", "1.0", subdir="linux-64"),
    PkgSpec("unrelated", "1.0", subdir="linux-64"),
    # tool needs a GPL package and one a blacklist entry drops
    PkgSpec("tool", "1.0", subdir="linux-64",
            depends=["gplthing", "oldlib <1", "zlib", "__glibc >=2.17"]),
    PkgSpec("gplthing", "1.0", subdir="linux-64", license="GPL-3.0-only",
            license_family="GPL3"),
    PkgSpec("oldlib", "0.5", subdir="linux-64"),
]
PULLED = {"app-1.0-0.conda", "libfoo-2.1-0.conda", "zlib-1.2.13-0.conda",
          "pyish-3.1-h1_cp.conda"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("depends") / "upstream"
    build_channel(root / "pkgs/main", SPECS)
    sharded = root.parent / "sharded"
    shutil.copytree(root, sharded)
    shard_channel(sharded / "pkgs/main", ["linux-64", "noarch"])
    return root, sharded


@pytest.fixture(params=["whole", "sharded"])
def mirror(request, tmp_path, isolated_config, built, http_server, run_cli):
    from types import SimpleNamespace

    root = built[0] if request.param == "whole" else built[1]
    server = http_server(root)
    upstream = SimpleNamespace(root=root, server=server, url=server.url)
    m = Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)
    m.kind = request.param
    return m


def serve_mirror(mirror, http_server) -> str:
    return http_server(mirror.dir).url + "/pkgs/main"


def test_closure_makes_the_mirror_installable_across_platform_and_noarch(
        mirror, http_server, tmp_path):
    mirror.configure(blacklist=["*"], whitelist=["app"], include_dependencies=True)
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.files("linux-64") == PULLED
    assert mirror.files("noarch") == {"helper-1.0-0.conda"}
    installed = rattler_install([serve_mirror(mirror, http_server)], ["app"],
                                tmp_path / "env")
    assert set(installed) == PULLED | {"helper-1.0-0.conda"}


def test_without_closure_the_install_fails_and_the_warning_names_the_gap(
        mirror, http_server, tmp_path):
    mirror.configure(blacklist=["*"], whitelist=["app"])
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.files("linux-64") == {"app-1.0-0.conda"}
    assert "app-1.0-0.conda (needs helper, libfoo)" in result.out
    with pytest.raises(Exception, match=r"libfoo|helper"):
        rattler_install([serve_mirror(mirror, http_server)], ["app"], tmp_path / "env")


def test_blocked_dependencies_are_reported_with_the_entry_that_blocked_them(mirror):
    mirror.configure(blacklist=["*", "oldlib"], whitelist=["tool"],
                     license_blacklist=["GPL"], include_dependencies=True)
    result = mirror.sync("--json")
    assert result.code == 0, result
    [linux] = [p for p in json.loads(result.out)["platforms"] if p["platform"] == "linux-64"]
    assert sorted((b["needed_by"], b["spec"], b["why"]) for b in linux["blocked"]) == [
        ("tool-1.0-0.conda", "gplthing", "license_blacklist entry 'GPL'"),
        ("tool-1.0-0.conda", "oldlib <1", "blacklist entry 'oldlib'"),
    ]
    # the closure still took what it could: every zlib
    assert mirror.files("linux-64") == {"tool-1.0-0.conda", "zlib-1.2.13-0.conda",
                                        "zlib-1.3.1-0.conda"}
    text = mirror.sync("--dry-run")
    assert "tool-1.0-0.conda needs gplthing, not mirrored: license_blacklist entry 'GPL'" \
        in text.out


def test_a_whitelist_mapping_brings_only_its_own_dependencies(mirror):
    mirror.configure(blacklist=["*"], whitelist=[
        {"name": "libfoo", "version": ">=2", "include_dependencies": True}, "tool"])
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.files("linux-64") == {"libfoo-2.1-0.conda", "zlib-1.2.13-0.conda",
                                        "tool-1.0-0.conda"}


def test_explain_says_which_record_pulled_a_record_in(mirror):
    mirror.configure(blacklist=["*"], whitelist=["app"], include_dependencies=True)
    result = mirror.sync("--explain", "zlib", "--json")
    rows = {r["file"]: r for r in json.loads(result.out)}
    assert rows["zlib-1.2.13-0.conda"]["kept"]
    assert rows["zlib-1.2.13-0.conda"]["reason"] == "pulled by libfoo 2.1: zlib 1.2.*"
    assert rows["zlib-1.2.13-0.conda"]["step"] == "dependency"
    assert not rows["zlib-1.3.1-0.conda"]["kept"]


# ------------------------------------------------------------------------ pure closure

def _records(specs):
    """platform -> file name -> RecordView, as the sync parses upstream's documents."""
    docs: dict[str, dict] = {}
    for s in specs:
        docs.setdefault(s.subdir, {"info": {"subdir": s.subdir}, "packages.conda": {}})
        docs[s.subdir]["packages.conda"][s.filename] = s.index_json()
    return {p: parse_repodata(json.dumps(d).encode(), f"test/{p}", p).records
            for p, d in docs.items()}


def test_noarch_records_pull_from_every_platform_and_matchspecs_mean_what_rattler_says():
    specs = [PkgSpec("tool", "1", subdir="noarch",
                     depends=["py 3.11.*", "lib[build_number='>=2']", "__unix"]),
             PkgSpec("py", "3.11.4", subdir="linux-64"), PkgSpec("py", "3.11.4", subdir="osx-64"),
             PkgSpec("py", "3.12.0", subdir="osx-64"),
             PkgSpec("lib", "1", build="b1", build_number=1, subdir="linux-64"),
             PkgSpec("lib", "1", build="b2", build_number=2, subdir="linux-64")]
    records = _records(specs)
    spec = FilterSpec.from_config(None, [], ["*"], ["tool"])
    channel = {p: (r, select(r, p, spec)) for p, r in records.items()}
    result = close(channel, spec, {"noarch": ["tool-1-0.conda"]})
    assert {p: set(d) for p, d in result.pulled.items()} == {
        "linux-64": {"py-3.11.4-0.conda", "lib-1-b2.conda"}, "osx-64": {"py-3.11.4-0.conda"}}
    assert result.blocked == []


def test_closure_solve_mirrors_the_union_of_the_environments_solutions(mirror, http_server,
                                                                       tmp_path):
    mirror.configure(blacklist=["*"], closure="solve", environments=[
        {"name": "app", "platforms": ["linux-64"], "specs": ["app"]},
        {"name": "old", "specs": ["pyish <3"]}])
    result = mirror.sync()
    assert result.code == 0, result
    # newest builds only: one zlib, one pyish 3.1 (the *_cp one helper asks for), + 2.7
    assert mirror.files("linux-64") == PULLED | {"pyish-2.7-h0_cp.conda"}
    assert mirror.files("noarch") == {"helper-1.0-0.conda"}
    installed = rattler_install([serve_mirror(mirror, http_server)], ["app"], tmp_path / "env")
    assert set(installed) == PULLED | {"helper-1.0-0.conda"}


def test_an_environment_that_cannot_be_solved_is_reported(mirror):
    mirror.configure(blacklist=["*", "zlib"], closure="solve", environments=[
        {"name": "broken", "specs": ["app"]}])
    result = mirror.sync()
    assert result.code == 0, result
    assert "environment broken needs app, not mirrored:" in result.out
    assert "zlib" in result.out.split("environment broken needs app")[1]


@pytest.mark.parametrize("environments, message", [
    ([{"name": "e", "specs": ["app >=>=1"]}], "item 1 (e): 'app >=>=1' is not a MatchSpec"),
    ([{"name": "e", "platforms": ["linux-65"], "specs": ["app"]}],
     "item 1 (e): unknown platform 'linux-65'"),
    ([{"specs": ["app"]}], "item 1: expected a mapping with name, specs"),
])
def test_bad_environments_are_refused_with_the_item(mirror, environments, message):
    mirror.configure(closure="solve", environments=environments)
    result = mirror.sync("--show")
    assert result.code == 2, result
    assert message in result.err and "environments" in result.err


SPEC_CASES = ["py", "py 3.11.*", "py >=3.11,<3.12", "py 3.11.4", "py ==3.11", "py 3.11.* *_cp",
              "py >=3 h1*", "py !=3.11.4", "py 3.12.*|3.11.*", "py[build_number='>=3']",
              "py[version='>=3.12']", "py ~=3.11.0", "py[build=h1_cp]"]
RECORD_CASES = [("3.11.4", "h1_cp", 3), ("3.11.0", "h0_pypy", 0), ("3.12.1", "h2_cp", 5),
                ("3.10.13", "h1_cp", 1)]


@pytest.mark.parametrize("text", SPEC_CASES)
def test_the_closure_matches_records_exactly_as_rattler_does(text):
    """Our matcher (a rattler VersionSpec plus build and build-number tests, fast on
    320,000 records) against rattler's own MatchSpec.matches on a PackageRecord, both the
    one-record test and the selection over a name's records the closure uses."""
    import rattler

    from cas_mirror.conda.depends import _Pool
    from cas_mirror.conda.filter import KEPT
    from cas_mirror.conda.matchspec import parsed

    specs = [PkgSpec("py", v, build=b, build_number=n, subdir="linux-64")
             for v, b, n in RECORD_CASES]
    records = _records(specs)["linux-64"]
    theirs = [rattler.MatchSpec(text).matches(rattler.PackageRecord(
        "py", s.version, rattler.BuildString(s.build), s.build_number, "linux-64"))
        for s in specs]
    assert [parsed(text).test(records[s.filename]) for s in specs] == theirs, text
    pool = _Pool(records, dict.fromkeys(records, KEPT))
    chosen = pool.selected(parsed(text), pool.groups["py"])
    assert [pool.fns[at] for at in chosen] == \
        [s.filename for s, hit in zip(specs, theirs, strict=True) if hit], text


# ------------------------------------------------- the closure against a plain oracle

def _oracle(channel, spec, starts):
    """The closure as the module docstring states it, record by record: rounds of the
    records pulled, each round a platform at a time (in the order the platform first
    appears in it), each record's entries in order; the first record to ask for an entry
    meets it (pulling every matching record only a bare `*` dropped) or is named as the
    one it is blocked for, and every record asking for a blocked entry is counted."""
    from cas_mirror.conda.depends import (
        DEPENDENCY,
        Blocked,
        blocked_by,
        depends_list,
        is_catch_all,
    )
    from cas_mirror.conda.filter import Decision
    from cas_mirror.conda.matchspec import parsed

    strict = bool(spec.license_blacklist) or any(not is_catch_all(e) for e in spec.blacklist)
    state = {p: dict(d) for p, (_, d) in channel.items()}
    seen = {p: set() for p in channel}
    blocked, pulled = {}, {p: set() for p in channel}
    round_ = [(p, fn) for p in sorted(starts) for fn in starts[p]]
    while round_:
        order = list(dict.fromkeys(p for p, _ in round_))
        this = [(p, fn) for q in order for p, fn in round_ if p == q]
        round_ = []
        for platform, fn in this:
            record = channel[platform][0][fn]
            for text in dict.fromkeys(depends_list(record)):
                if (platform, text) in blocked:
                    b = blocked[(platform, text)]
                    blocked[(platform, text)] = Blocked(b.platform, b.needed_by, b.spec,
                                                        b.why, b.count + 1)
                if text in seen[platform]:
                    continue
                seen[platform].add(text)
                name = text.split()[0].lower()
                spec_ = parsed(text)
                if name.startswith("__") or spec_ is None:
                    continue
                met = offered = False
                why = decision = None
                pools = sorted(channel) if platform == "noarch" else (platform, "noarch")
                for pool in [p for p in pools if p in channel]:
                    for cfn, r in channel[pool][0].items():
                        if str(r.name).lower() != name:
                            continue
                        offered = True
                        if not spec_.test(r):
                            continue
                        d = state[pool][cfn]
                        if d.kept:
                            met = True
                            continue
                        if d.step not in ("blacklist", "license_blacklist"):
                            continue
                        if strict and (reason := blocked_by(r, d, spec)):
                            why = why or reason
                            continue
                        decision = decision or Decision(
                            True, DEPENDENCY, f"pulled by {record.name} {record.version}: {text}")
                        state[pool][cfn] = decision
                        pulled[pool].add(cfn)
                        round_.append((pool, cfn))
                        met = True
                if offered and not met:
                    blocked[(platform, text)] = Blocked(
                        platform, fn, text, why or "no upstream record matches it")
    return ({p: {fn: state[p][fn] for fn in fns} for p, fns in pulled.items() if fns},
            sorted(blocked.values(), key=lambda b: (b.platform, b.needed_by, b.spec)))


@pytest.mark.parametrize("seed", range(6))
def test_the_closure_gives_what_a_record_by_record_walk_gives(seed):
    """Random channels (a platform and noarch, names differing in case, shared and
    duplicated depends lists, specs on versions, builds and build numbers, entries a
    blacklist or license_blacklist blocks, names nobody offers): the grouped walk adds
    the same records with the same reasons and reports the same blocked entries, with the
    same first asker and count, as the plain oracle above."""
    import random

    rng = random.Random(seed)
    names = [f"p{i}" for i in range(12)] + ["Mixed", "mixed"]
    lists = [[f"{rng.choice(names)}{rng.choice(['', ' >=1', ' <2', ' 1.*', ' * b1', ' >=0 *_2'])}"
              for _ in range(rng.randint(0, 3))] + rng.choice([[], ["__glibc >=2"], ["absent"]])
             for _ in range(10)]
    lists.append(["p1", "p1"])  # listed twice
    specs = []
    for i in range(80):
        name = rng.choice(names)
        specs.append(PkgSpec(name, f"{rng.randint(0, 3)}.{i}", build=f"b{i % 3}",
                             build_number=i % 4, subdir=rng.choice(["linux-64", "noarch"]),
                             depends=rng.choice(lists),
                             license=rng.choice(["MIT", "GPL-3.0-only"])))
    records = _records(specs)
    for blacklist, licenses in ((["*"], []), (["*", "p3", "p4 >=2"], ["GPL"])):
        spec = FilterSpec.from_config(None, licenses, blacklist, ["p0", "mixed"])
        channel = {p: (r, select(r, p, spec)) for p, r in records.items()}
        starts = {p: [fn for fn, d in decisions.items() if d.kept]
                  for p, (_, decisions) in channel.items()}
        result = close(channel, spec, starts)
        pulled, blocked = _oracle(channel, spec, starts)
        assert {p: {fn: result.decisions[p][fn] for fn in fns}
                for p, fns in result.pulled.items()} == pulled, (seed, blacklist)
        assert result.blocked == blocked, (seed, blacklist)
        for p, fns in result.pulled.items():  # the rest of the decisions are as they were
            assert {fn: d for fn, d in result.decisions[p].items() if fn not in fns} == \
                {fn: d for fn, d in channel[p][1].items() if fn not in fns}
