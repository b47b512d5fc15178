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
    320,000 records) against rattler's own MatchSpec.matches on a PackageRecord."""
    import rattler

    from cas_mirror.conda.depends import _matcher

    specs = [PkgSpec("py", v, build=b, build_number=n, subdir="linux-64")
             for v, b, n in RECORD_CASES]
    records = _records(specs)["linux-64"]
    for s in specs:
        theirs = rattler.MatchSpec(text).matches(rattler.PackageRecord(
            "py", s.version, rattler.BuildString(s.build), s.build_number, "linux-64"))
        assert _matcher(text)(records[s.filename]) == theirs, (text, s.filename)
