"""The filter pipeline and its entry forms: pure functions over records."""

from __future__ import annotations

import pytest

from cas_mirror.conda.entries import EntryError, parse_entry
from cas_mirror.conda.filter import FilterSpec, decide, license_match, select


def rec(name, version="1.0", build="0", license=None, family=None, subdir=None, **extra):
    record = {"name": name, "version": version, "build": build, "build_number": 0, **extra}
    if license is not None:
        record["license"] = license
    if family is not None:
        record["license_family"] = family
    if subdir is not None:
        record["subdir"] = subdir
    return record


def spec(platforms=None, license_blacklist=(), blacklist=(), whitelist=()):
    return FilterSpec.from_config(platforms, list(license_blacklist), list(blacklist),
                                  list(whitelist))


def test_seed_faq_example():
    """The FAQ's ~/.cas-mirror: linux-32 and linux-64, GPL out, flask and readline out,
    distribute and conda back in whatever the blacklists say."""
    config = spec(platforms=["linux-32", "linux-64", "noarch"], license_blacklist=["GPL"],
                  blacklist=["flask", "readline"], whitelist=["distribute", "conda"])
    records = {
        "numpy-1.0-0.tar.bz2": rec("numpy", license="BSD", family="BSD"),
        "readline-6.2-2.tar.bz2": rec("readline", license="GPL3", family="GPL3"),
        "flask-0.10-py27.tar.bz2": rec("flask", license="BSD", family="BSD"),
        "gcc-4.8-1.tar.bz2": rec("gcc", license="GPL", family="GPL"),
        "distribute-0.6-py27.tar.bz2": rec("distribute", license="PSF or ZPL"),
        "conda-3.0-py27.tar.bz2": rec("conda", license="BSD", family="BSD"),
        "glib-2.0-0.tar.bz2": rec("glib", license="LGPL", family="LGPL"),
    }
    for platform in ("linux-32", "linux-64"):
        decisions = select(records, platform, config)
        kept = {fn.split("-")[0] for fn, d in decisions.items() if d.kept}
        assert kept == {"numpy", "distribute", "conda", "glib"}
        assert decisions["readline-6.2-2.tar.bz2"].step == "license_blacklist"
        assert decisions["gcc-4.8-1.tar.bz2"].step == "license_blacklist"
        assert decisions["flask-0.10-py27.tar.bz2"].step == "blacklist"
        assert decisions["numpy-1.0-0.tar.bz2"].step == "default"
    win = select(records, "win-64", config)
    assert not any(d.kept for d in win.values())
    assert {d.step for d in win.values()} == {"platforms"}


def test_whitelist_overrides_both_blacklists_and_says_so():
    config = spec(license_blacklist=["GPL"], blacklist=["r-*"], whitelist=["r-base", "gcc"])
    gcc = decide(rec("gcc", license="GPL-3.0-only"), "linux-64", config)
    assert gcc.kept and gcc.step == "whitelist"
    assert "overrides license_blacklist" in gcc.reason
    r_base = decide(rec("r-base", license="MIT"), "linux-64", config)
    assert r_base.kept and r_base.step == "whitelist" and "overrides blacklist" in r_base.reason
    r_other = decide(rec("r-other", license="MIT"), "linux-64", config)
    assert not r_other.kept and r_other.step == "blacklist" and "'r-*'" in r_other.reason


def test_whitelist_only_adds_back():
    config = spec(whitelist=["conda"])
    assert decide(rec("numpy"), "linux-64", config).kept


def test_whitelist_does_not_cross_platforms():
    config = spec(platforms=["linux-64", "noarch"], whitelist=["conda"])
    assert not decide(rec("conda"), "win-64", config).kept


def test_record_with_another_subdir_is_dropped_by_platforms():
    decision = decide(rec("numpy", subdir="win-64"), "linux-64", spec())
    assert not decision.kept and decision.step == "platforms"


@pytest.mark.parametrize(
    "license, family, blacklist, expected",
    [
        ("GPL-3.0-only", None, "GPL", True),
        ("GPL-2.0-or-later", None, "gpl", True),
        ("GPL2", None, "GPL", True),
        ("GPLv3", None, "GPL", True),
        (None, "GPL3", "GPL", True),
        ("GNU General Public License v3 (GPLv3)", None, "GPL", True),
        ("LGPL-2.1-or-later", "LGPL", "GPL", False),
        ("AGPL-3.0-only", "AGPL", "GPL", False),
        ("LGPL-2.1", None, "LGPL", True),
        ("AGPL-3.0", None, "AGPL", True),
        ("MIT", "MIT", "GPL", False),
        ("GPL-2.0-only", None, "GPL3", False),
        ("GPL-3.0-or-later", None, "GPL3", True),
        ("MIT AND (GPL-2.0-or-later OR Apache-2.0)", None, "GPL", True),
        ("Apache-2.0", None, "apache-2.0", True),
        ("BSD-3-Clause", "BSD", "MIT", False),
        (None, None, "GPL", False),
    ],
)
def test_license_matching(license, family, blacklist, expected):
    assert bool(license_match(license, family, [blacklist])) is expected


@pytest.mark.parametrize(
    "entry, record, expected",
    [
        ("flask", rec("flask"), True),
        ("flask", rec("flask-cors"), False),
        ("Flask", rec("flask"), True),
        ("r-*", rec("r-base"), True),
        ("r-*", rec("rpy2"), False),
        ("numpy >=1.20,<2", rec("numpy", "1.21.0"), True),
        ("numpy >=1.20,<2", rec("numpy", "2.0.0"), False),
        ("numpy>=1.20", rec("numpy", "1.20"), True),
        ("numpy!=1.20", rec("numpy", "1.20"), False),
        ("python 3.11.*", rec("python", "3.11.4"), True),
        ("python 3.11.*", rec("python", "3.12.0"), False),
        ("openssl 3.* *_0", rec("openssl", "3.0.1", "h1_0"), True),
        ("openssl 3.* *_0", rec("openssl", "3.0.1", "h1_1"), False),
        ("r-[!a]*", rec("r-base"), True),
        ({"name": "r-*", "version": ">=4", "license": "*GPL*"},
         rec("r-base", "4.1.0", license="GPL-2.0"), True),
        ({"name": "r-*", "version": ">=4", "license": "*GPL*"},
         rec("r-base", "3.6.0", license="GPL-2.0"), False),
        ({"name": "r-*", "version": ">=4", "license": "*GPL*"},
         rec("r-base", "4.1.0", license="MIT"), False),
        ({"version": "1.2*"}, rec("anything", "1.2.3"), True),
        ({"build": "*py27*"}, rec("x", build="py27_0"), True),
        ({"license_family": "gpl*"}, rec("x", family="GPL3"), True),
        ({"platform": "linux-*"}, rec("x", subdir="linux-64"), True),
        ({"build_number": "0"}, rec("x"), True),
    ],
)
def test_entry_forms(entry, record, expected):
    assert parse_entry(entry).matches(record) is expected


@pytest.mark.parametrize(
    "entry, message",
    [
        ("numpy >>1", "not a conda version spec"),
        ("", "not a package name"),
        ("a b c d", "got 4 words"),
        ({}, "empty mapping"),
        ({"nme": "x"}, "did you mean 'name'"),
        ({"name": ["x"]}, "must be a string"),
        (42, "expected a package name"),
    ],
)
def test_bad_entries_explain_themselves(entry, message):
    with pytest.raises(EntryError, match=message):
        parse_entry(entry)


def test_unparsable_upstream_version_matches_no_spec():
    assert not parse_entry("numpy >=1").matches(rec("numpy", "not a version!!"))


def test_many_records_are_filtered_per_name():
    records = {f"pkg{i % 50}-{i}-0.conda": rec(f"pkg{i % 50}", str(i)) for i in range(5000)}
    config = spec(blacklist=["pkg1 >=100", "pkg2*"], whitelist=["pkg21"])
    decisions = select(records, "noarch", config)
    dropped = {fn for fn, d in decisions.items() if not d.kept}
    expected = {fn for fn, r in records.items()
                if (r["name"] == "pkg1" and int(r["version"]) >= 100)
                or (r["name"].startswith("pkg2") and r["name"] != "pkg21")}
    assert dropped == expected


@pytest.mark.parametrize(("blacklist", "reasons"), [
    (["nump*", "numpy"], ["matches 'nump*'", "matches 'nump*'"]),
    (["numpy", "nump*"], ["matches 'numpy'", "matches 'numpy'"]),
    (["numpy >=2", "nump*"], ["matches 'nump*'", "matches 'numpy >=2'"]),
    (["*", "numpy >=2"], ["matches '*'", "matches '*'"]),
    (["numpy >=2", "*", "numpy"], ["matches '*'", "matches 'numpy >=2'"]),
])
def test_the_first_matching_entry_in_configured_order_decides(blacklist, reasons):
    """Entries naming one package are found by look-up, globs are tried: either way the
    entry a record is dropped by (and its reason) is the first that matches it, in the
    order the configuration lists them."""
    records = {"numpy-1.0-0.conda": rec("numpy", "1.0"), "numpy-2.1-0.conda": rec("numpy", "2.1")}
    decisions = select(records, "noarch", spec(blacklist=blacklist))
    assert [d.reason for d in decisions.values()] == reasons


# ------------------------------------------------------- names a sharded upstream must read

NAMED_RECORDS = {
    f"{r['name']}-{r['version']}-{r['build']}.conda": r for r in [
        rec("numpy", "1.19"), rec("numpy", "1.26"), rec("r-base", "4.3", license="GPL-3.0"),
        rec("r-x", "1.0", license="MIT"), rec("flask", "2.0"), rec("Zlib", "1.3"),
        rec("x-y", "1.0", build="py_0"), rec("gpl-tool", "1.0", license="GPL2")]}


@pytest.mark.parametrize(("license_blacklist", "blacklist", "whitelist", "exact"), [
    ([], [], [], True),
    ([], ["*"], ["numpy", "r-*"], True),
    ([], ["r-*", "zlib"], [], True),
    ([], [{"name": "r-*"}], ["r-x"], True),
    ([], ["*"], ["numpy >=1.20"], True),  # the whitelist's name decides what may be added
    ([], ["numpy >=1.20", "flask"], [], False),  # numpy's records are needed
    ([], [{"name": "r-*", "license": "*GPL*"}], [], False),
    (["GPL"], ["flask"], [], False),
    ([], ["x-?", "*-y 1.*"], ["x-[yz]"], False),
])
def test_names_that_may_pass_never_leave_out_a_kept_record(license_blacklist, blacklist,
                                                           whitelist, exact):
    from cas_mirror.conda.filter import names_that_may_pass

    spec = FilterSpec.from_config(["linux-64"], license_blacklist, blacklist, whitelist)
    names = {r["name"] for r in NAMED_RECORDS.values()}
    may_pass = names_that_may_pass(names, "linux-64", spec)
    kept = {NAMED_RECORDS[fn]["name"]
            for fn, d in select(NAMED_RECORDS, "linux-64", spec).items() if d.kept}
    assert kept <= may_pass
    if exact:  # names alone decide: every name read has a record kept
        assert may_pass == kept
    assert names_that_may_pass(names, "osx-64", spec) == set()  # platform not configured
