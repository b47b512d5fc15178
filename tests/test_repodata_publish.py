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


def _document(records: int) -> bytes:
    packages = {f"pkg{i}-1.{i}-h{i:08x}_0.conda": {
        "name": f"pkg{i}", "version": f"1.{i}", "build": f"h{i:08x}_0", "build_number": 0,
        "depends": [f"pkg{i // 7} >=1.{i % 13}", "python >=3.9"], "size": 1000 + i * 37,
        "sha256": f"{i * 2654435761 % (1 << 64):064x}", "subdir": "linux-64"}
        for i in range(records)}
    return dumps_repodata({"info": {"subdir": "linux-64"}, "packages": {},
                           "packages.conda": packages})


def test_small_documents_are_compressed_at_the_small_level(tmp_path):
    """A platform under 1 MiB gets zstd level 6 (fast: the cold sync publishes several);
    a larger one keeps level 16, conda-index's. Either decompresses to the document."""
    for records, level in ((300, 6), (4000, 16)):
        data = _document(records)
        assert (len(data) < 1 << 20) == (level == 6)
        write_repodata(tmp_path, data, bz2_variant=False)
        packed = (tmp_path / "repodata.json.zst").read_bytes()
        assert zstandard.ZstdDecompressor().decompress(packed) == data
        assert packed == zstandard.ZstdCompressor(level=level).compress(data), records
