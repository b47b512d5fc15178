"""The quick reading of info/ members (tarscan.py, package.quick_info_members): the same
members as tarfile gives for every header format conda packages use, and None (tarfile
decides) for everything else."""

from __future__ import annotations

import bz2
import io
import tarfile

import pytest

from cas_index import package
from cas_index.package import WANTED, info_members, quick_info_members, read_package
from cas_index.tarscan import scan_members
from tests.support.conda_packages import PkgSpec, build_package

RECIPES = (frozenset(package.RECIPES),)


def _tar(members: list[tuple[str, bytes]], fmt=tarfile.PAX_FORMAT, links=(), pax=None
         ) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, pax_headers=pax or {}) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1700000000.5
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def _tarfile_members(data: bytes) -> dict[str, bytes]:
    return info_members("x-1-0.tar.bz2", io.BytesIO(bz2.compress(data)))


LONG = "info/" + "d" * 120 + "/x"  # longer than the 100-byte name field


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT,
                                 tarfile.PAX_FORMAT])
def test_same_members_as_tarfile_in_every_header_format(fmt):
    members = [("info/index.json", b'{"name": "a"}'), ("info/about.json", b"{}"),
               ("info/recipe/meta.yaml", b"source: {}"), ("info/meta.yaml", b"second"),
               ("info/paths.json", b"x" * 1000), ("info/index.json", b"duplicate"),
               ("info/" + "p" * 90 + "/y", b"prefix field"), ("bin/tool", b"\0" * 3000)]
    if fmt != tarfile.USTAR_FORMAT:
        members.append((LONG, b"long name"))
    data = _tar(members, fmt=fmt)
    wanted = WANTED | {LONG, "info/" + "p" * 90 + "/y"}
    expected = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.name in wanted and member.name not in expected and not (
                    member.name in package.RECIPES and expected.keys() & set(package.RECIPES)):
                expected[member.name] = tar.extractfile(member).read()
    assert scan_members(data, frozenset(wanted), RECIPES) == expected
    assert expected["info/index.json"] == b'{"name": "a"}'
    assert "info/meta.yaml" not in expected  # the first recipe name wins
    assert _tarfile_members(data) == {k: v for k, v in expected.items() if k in WANTED}


def test_pax_path_and_size_records_are_honoured():
    name = "info/" + "ü" * 80 + ".json"  # non-ASCII and long: a pax path record
    data = _tar([(name, b"12345"), ("info/index.json", b"{}")])
    assert scan_members(data, frozenset({name, "info/index.json"})) == {
        name: b"12345", "info/index.json": b"{}"}


@pytest.mark.parametrize("case", ["global pax header", "symlink", "truncated",
                                  "bad checksum"])
def test_anything_unusual_is_left_to_tarfile(case):
    members = [("info/about.json", b"{}"), ("info/index.json", b"{}")]
    if case == "global pax header":
        data = _tar(members, pax={"comment": "x"})
    elif case == "symlink":
        data = _tar(members[:1], links=[("info/index.json", "elsewhere.json")])
    elif case == "truncated":
        data = _tar(members)[:512 + 100]
    else:
        data = bytearray(_tar(members, fmt=tarfile.USTAR_FORMAT))
        data[0] ^= 1
        data = bytes(data)
    assert scan_members(data, WANTED) is None


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_read_package_takes_the_quick_way_with_the_same_result(tmp_path, monkeypatch, fmt):
    path = build_package(PkgSpec("quick", "1.0", fmt=fmt, about={"summary": "s"},
                                 run_exports={"weak": ["quick >=1"]}), tmp_path)
    slow = info_members(path.name, io.BytesIO(path.read_bytes()))
    assert quick_info_members(path.name, path.read_bytes()) == slow
    expected = read_package(path)

    def unused(*_args):
        raise AssertionError("tarfile was used")

    monkeypatch.setattr(package, "info_members", unused)
    assert read_package(path) == expected


def test_a_damaged_package_gets_the_reason_tarfile_gives(tmp_path):
    path = build_package(PkgSpec("broken", "1.0", fmt=".conda"), tmp_path)
    data = bytearray(path.read_bytes())
    start = data.find(b"info-broken")  # damage the info component's local header name
    data[start:start + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    assert quick_info_members(path.name, bytes(data)) is None
    with pytest.raises(package.PackageError, match=r"not a valid \.conda archive|no info-"):
        read_package(path)

