"""cas_index.repodata: publishing a document and its compressed twins atomically."""

from __future__ import annotations

import bz2
import json

import zstandard

from cas_index.repodata import dumps_repodata, write_repodata


def test_variants_hold_the_same_document(tmp_path):
    doc = {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}}
    data = dumps_repodata(doc)
    written = write_repodata(tmp_path, data)
    assert {p.name for p in written} == {"repodata.json", "repodata.json.zst", "repodata.json.bz2"}
    assert json.loads((tmp_path / "repodata.json").read_bytes()) == doc
    assert zstandard.ZstdDecompressor().decompress(
        (tmp_path / "repodata.json.zst").read_bytes()) == data
    assert bz2.decompress((tmp_path / "repodata.json.bz2").read_bytes()) == data
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unchanged_document_is_not_rewritten(tmp_path):
    data = dumps_repodata({"packages": {}})
    write_repodata(tmp_path, data)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert write_repodata(tmp_path, data) == []
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes
    assert len(write_repodata(tmp_path, dumps_repodata({"packages": {"a": 1}}))) == 3


def test_unwanted_variants_are_removed(tmp_path):
    data = dumps_repodata({})
    write_repodata(tmp_path, data)
    write_repodata(tmp_path, data, bz2_variant=False, zst_variant=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repodata.json"]
    assert write_repodata(tmp_path, data, zst_variant=True, bz2_variant=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repodata.json", "repodata.json.zst"]
