"""cas_index.package: one package file in, its record and channeldata facts out."""

from __future__ import annotations

import json
import re

import pytest

from cas_index import package
from cas_index.package import PackageError, bz2_stream_complete, read_package
from tests.support.conda_packages import PkgSpec, build_package
from tests.support.index_tools import (
    CONDA_INDEX_DATA,
    corrupt_conda_info,
    corrupt_middle,
    file_hashes,
    needs_conformance,
    truncate,
)


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
@pytest.mark.parametrize("subdir", ["linux-64", "osx-arm64", "noarch"])
def test_record_is_index_json_without_arch_platform_plus_hashes(tmp_path, fmt, subdir):
    spec = PkgSpec("alpha", "1.2.3", build="h123_4", build_number=4, subdir=subdir, fmt=fmt,
                   depends=["python >=3.9", "zlib"], payload_size=4096,
                   extra_index={"timestamp": 1700000000123, "constrains": ["beta <2"]})
    path = build_package(spec, tmp_path / subdir)
    info = read_package(path, subdir)
    expected = {k: v for k, v in spec.index_json().items() if k not in ("arch", "platform")}
    assert info.record == {**expected, **file_hashes(path)}
    assert "arch" not in info.record and "platform" not in info.record
    assert (info.size, info.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)


def test_large_files_are_memory_mapped_with_the_same_result(tmp_path, monkeypatch):
    paths = [build_package(PkgSpec("big", fmt=fmt, payload_size=300_000), tmp_path)
             for fmt in (".conda", ".tar.bz2")]
    small = [read_package(p) for p in paths]
    monkeypatch.setattr(package, "MMAP_THRESHOLD", 1024)
    monkeypatch.setattr(package, "HASH_CHUNK", 4096)  # several chunks per file
    assert [read_package(p) for p in paths] == small
    assert small[0].record["sha256"] == file_hashes(paths[0])["sha256"]


def test_channeldata_facts_from_about_and_paths(tmp_path):
    spec = PkgSpec("tool", about={"summary": " A tool\nfor things ", "description": ["a\n", "b"],
                                  "dev_url": "https://example.invalid/dev", "keywords": ["x"]})
    info = read_package(build_package(spec, tmp_path))
    assert info.facts["summary"] == "A tool for things"
    assert info.facts["description"] == "a b"
    assert info.facts["dev_url"] == "https://example.invalid/dev"
    assert info.facts["keywords"] == ["x"]
    assert info.facts["run_exports"] == {}
    assert info.facts["post_link"] is False and info.facts["text_prefix"] is False


def test_link_flags_follow_paths_json():
    flags = package.link_flags({"paths": [
        {"_path": "bin/.tool-post-link.sh"},
        {"_path": "etc/conda/activate.d/tool.sh"},
        {"_path": "lib/libtool.so", "prefix_placeholder": "/opt/p", "file_mode": "binary"},
        {"_path": "bin/tool", "prefix_placeholder": "/opt/p", "file_mode": "text"},
    ]})
    assert flags == {"binary_prefix": True, "text_prefix": True, "activate.d": True,
                     "deactivate.d": False, "pre_link": False, "post_link": True,
                     "pre_unlink": False}


@needs_conformance
def test_reads_real_packages_of_both_formats_alike():
    # conda-forge's mock-2.0.0 in both formats (conda-package-handling's test data) and
    # conda-index's test package: same metadata, different bytes.
    for folder, stem in ((CONDA_INDEX_DATA.parent / "conda-package-handling/tests/data",
                          "mock-2.0.0-py37_1000"),
                         (CONDA_INDEX_DATA / "tests/archives",
                          "conda-index-pkg-a-1.0-py27h5e241af_0")):
        old, new = (read_package(folder / f"{stem}{ext}") for ext in (".tar.bz2", ".conda"))
        for info, ext in ((old, ".tar.bz2"), (new, ".conda")):
            assert {k: info.record[k] for k in ("md5", "sha256", "size")} == file_hashes(
                folder / f"{stem}{ext}")
        strip = ("md5", "sha256", "size")
        assert ({k: v for k, v in old.record.items() if k not in strip}
                == {k: v for k, v in new.record.items() if k not in strip})
        assert old.facts == new.facts


# ---------------------------------------------------------------------------- bad packages
def _built(tmp_path, fmt=".conda", **kwargs):
    return build_package(PkgSpec("bad", fmt=fmt, payload_size=8192, **kwargs), tmp_path)


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_truncated_package_is_refused(tmp_path, fmt):
    path = truncate(_built(tmp_path, fmt))
    with pytest.raises(PackageError, match=r"truncated|not a valid"):
        read_package(path)


def test_truncated_tar_bz2_is_refused_even_when_info_still_decompresses(tmp_path):
    # A multi-stream .tar.bz2 cut at the end keeps its first stream (with info/) intact.
    import bz2
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("info/index.json", json.dumps(PkgSpec("cut").index_json())),
                           ("share/cut/data.bin", "x" * 100_000)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data.encode()))
    raw = buf.getvalue()
    whole = bz2.compress(raw[:2048]) + bz2.compress(raw[2048:])
    path = tmp_path / "cut-1.0-0.tar.bz2"
    path.write_bytes(whole)
    assert read_package(path).record["name"] == "cut"
    path.write_bytes(whole[:-40])
    with pytest.raises(PackageError, match=re.escape("truncated .tar.bz2")):
        read_package(path)


def test_corrupt_tar_bz2_is_refused(tmp_path):
    with pytest.raises(PackageError, match=re.escape("not a valid .tar.bz2 archive")):
        read_package(corrupt_middle(_built(tmp_path, ".tar.bz2")))


def test_corrupt_conda_info_is_refused(tmp_path):
    with pytest.raises(PackageError, match=re.escape("not a valid .conda archive")):
        read_package(corrupt_conda_info(_built(tmp_path, ".conda")))


@pytest.mark.parametrize("name", ["notes-1.0-0.conda", "notes-1.0-0.tar.bz2"])
def test_non_package_with_a_package_name_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_text("these are my notes, not a package\n" * 20)
    with pytest.raises(PackageError, match="not a valid"):
        read_package(path)


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty-1.0-0.conda").write_bytes(b"")
    with pytest.raises(PackageError, match="empty file"):
        read_package(tmp_path / "empty-1.0-0.conda")


@needs_conformance
def test_archive_without_index_json_is_refused():
    # conda-index's deliberately-not-a-package test archive: a valid .tar.bz2, no info/.
    with pytest.raises(PackageError, match=re.escape("not a conda package: no info/index.json")):
        read_package(CONDA_INDEX_DATA / "tests/archives/a.tar.bz2")


def test_renamed_conda_is_refused(tmp_path):
    path = _built(tmp_path)
    renamed = path.rename(tmp_path / "other-1.0-0.conda")
    with pytest.raises(PackageError, match=re.escape("no info-other-1.0-0.tar.zst")):
        read_package(renamed)


def test_package_for_another_platform_is_refused(tmp_path):
    path = build_package(PkgSpec("wrong", subdir="linux-64"), tmp_path)
    with pytest.raises(PackageError, match="says subdir 'linux-64', but the file is in 'osx-64'"):
        read_package(path, "osx-64")
    assert read_package(path, "linux-64").record["subdir"] == "linux-64"


@pytest.mark.parametrize("platform, arch, folder, refused", [
    ("osx", "x86_64", "linux-64", ("says platform 'osx', arch 'x86_64' (no subdir), but the "
                                   "file is in 'linux-64'")),
    ("linux", "x86", "linux-64", "says platform 'linux', arch 'x86' (no subdir)"),
    ("linux", "x86_64", "noarch", ("says platform 'linux', arch 'x86_64' (no subdir), but the "
                                   "file is in 'noarch'")),
    ("win", None, "linux-64", "says platform 'win' (no subdir), but the file is in 'linux-64'"),
    ("linux", "x86_64", "linux-64", None),
    ("linux", "aarch64", "linux-aarch64", None),
    ("osx", "arm64", "osx-arm64", None),
    ("win", "x86", "win-32", None),
    (None, None, "noarch", None),
])
def test_old_package_without_subdir_is_checked_by_platform_and_arch(tmp_path, platform, arch,
                                                                    folder, refused):
    # packages from before conda-build wrote `subdir` say where they belong with
    # platform/arch: a contradiction is refused like a wrong subdir
    spec = PkgSpec("old", subdir="linux-64", fmt=".tar.bz2", drop_index=("subdir",),
                   extra_index={"platform": platform, "arch": arch})
    path = build_package(spec, tmp_path)
    if refused:
        with pytest.raises(PackageError, match=re.escape(refused)):
            read_package(path, folder)
    else:
        assert read_package(path, folder).record["name"] == "old"


@pytest.mark.parametrize("changes, message", [
    ({"version": None}, "lacks required field.*version"),
    ({"build_number": None, "build": ""}, "lacks required field.*build, build_number"),
    ({"build_number": "4"}, "'build_number' should be an integer"),
    ({"name": 7}, "'name' should be a string"),
])
def test_missing_or_mistyped_fields_are_refused(tmp_path, changes, message):
    with pytest.raises(PackageError, match=message):
        read_package(_built(tmp_path, extra_index=changes))


def test_unreadable_file_is_refused(tmp_path, monkeypatch):
    path = _built(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    # chmod 0 does not stop root, which the test machines run as: refuse the open instead.
    monkeypatch.setattr(package, "open", denied, raising=False)
    with pytest.raises(PackageError, match=r"cannot read the file \(Permission denied\)"):
        read_package(path)


def test_bz2_end_marker_check():
    import bz2

    for size in (0, 1, 100, 5000):
        data = bz2.compress(bytes(range(256)) * size)
        assert bz2_stream_complete(data)
        assert not bz2_stream_complete(data[:-1])
        assert not bz2_stream_complete(data[: len(data) // 2])


def test_reading_stops_once_the_info_members_are_seen(tmp_path):
    # Every member we want comes first, then a payload that is cut short: a reader that
    # went on to the end of the archive would fail ("unexpected end of data"). Two bzip2
    # streams, each complete, so only the tar inside is short.
    import bz2
    import io
    import tarfile

    def tar_of(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    index = json.dumps(PkgSpec("early", subdir="noarch").index_json()).encode()
    wanted = [("info/index.json", index), ("info/about.json", b'{"summary": "s"}'),
              ("info/paths.json", b'{"paths": []}'), ("info/run_exports.json", b"{}"),
              ("info/recipe/meta.yaml", b"source:\n  url: https://example.invalid/s.tgz\n")]
    cut = tar_of([*wanted, ("share/early/big.bin", b"x" * 600000)])[:300_000]
    # the first stream ends 64 KB into the payload, so read-ahead after the info members
    # (tarfile reads 10 KB records) stays inside it
    head = len(wanted) * 1024 + 512 + 65536
    path = tmp_path / "early-1.0-0.tar.bz2"
    path.write_bytes(bz2.compress(cut[:head]) + bz2.compress(cut[head:]))
    with (pytest.raises(tarfile.ReadError, match="unexpected end of data"),
          tarfile.open(path, "r|bz2") as whole):  # proof: the archive is short
        for _ in whole:
            pass
    info = read_package(path, "noarch")
    assert info.record["name"] == "early"
    assert info.facts["source_url"] == "https://example.invalid/s.tgz"


def test_conda_payload_component_is_never_opened(tmp_path, monkeypatch):
    import zipfile

    path = build_package(PkgSpec("lazy", payload_size=50_000), tmp_path)
    opened = []
    original = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    assert read_package(path).record["name"] == "lazy"
    assert opened == ["info-lazy-1.0-0.tar.zst"]
