"""What a sync with packages to download does once, not twice: publishing's CPU work
(compression, shards) and the writing of shard files are done while the packages
download, on the document expected once they all arrive, and used only when that is the
document published; and a run whose
configuration asks for no closure, lockfile or environment imports none of that code."""

from __future__ import annotations

import bz2
import json
import os
import subprocess
import sys

import pytest
import zstandard

import cas_index.repodata
import cas_index.shard_files
import cas_index.shards
from cas_index.shards import SHARD_INDEX, decode_index, decode_shard
from tests.support.conda_mirror import Mirror, make_upstream


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def counting(monkeypatch, module, name: str) -> list:
    calls: list = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def published_forms(folder) -> dict[str, set[str]]:
    """The file names each published form of the platform's repodata names."""
    raw = (folder / "repodata.json").read_bytes()
    assert zstandard.ZstdDecompressor().decompress(
        (folder / "repodata.json.zst").read_bytes()) == raw
    assert bz2.decompress((folder / "repodata.json.bz2").read_bytes()) == raw
    doc = json.loads(raw)
    in_shards: set[str] = set()
    named = {digest.hex() + ".msgpack.zst"
             for digest in decode_index((folder / SHARD_INDEX).read_bytes())["shards"].values()}
    for filename in named:
        shard = decode_shard((folder / "shards" / filename).read_bytes())
        in_shards |= {*shard["packages"], *shard["packages.conda"]}
    # no shard file but those the index names (none staged for another document is left)
    assert {p.name for p in (folder / "shards").iterdir()} == named
    return {"json": {*doc["packages"], *doc["packages.conda"]}, "shards": in_shards}


def test_what_was_prepared_while_downloading_is_published_without_doing_it_again(
        mirror, monkeypatch):
    mirror.configure(platforms=["linux-64", "noarch"])
    prepared = counting(monkeypatch, cas_index.repodata, "prepare_repodata")
    compressed = counting(monkeypatch, cas_index.repodata, "_compress")
    parsed = counting(monkeypatch, cas_index.shards, "_parse")
    staged = counting(monkeypatch, cas_index.repodata, "stage_shards")
    written = counting(monkeypatch, cas_index.shard_files, "write_atomic")
    assert mirror.sync().code == 0
    assert len(prepared) == 2
    # the shard files were written ahead (each once: publishing wrote only the indexes)
    assert len(staged) == 2
    names = [os.path.basename(args[0]) for args in written]
    assert names.count(SHARD_INDEX) == 2 and len(names) == len(set(names)) + 1
    # .zst and .bz2 of each platform, and its shards, once each: not again to publish
    assert sorted(suffix for suffix, _ in compressed) == [".bz2", ".bz2", ".zst", ".zst"]
    assert len(parsed) == 2
    forms = published_forms(mirror.folder("linux-64"))
    assert forms["json"] == forms["shards"] == mirror.files("linux-64")


def test_a_failed_download_is_in_no_published_form_though_it_was_prepared_for(
        mirror, upstream, monkeypatch):
    upstream.server.add_fault("*/beta-2.0-0.conda", status=404)
    compressed = counting(monkeypatch, cas_index.repodata, "_compress")
    result = mirror.sync()
    assert result.code == 1 and "beta-2.0-0.conda" in result.out
    # noarch's prepared once; linux-64's prepared with beta, then again without it
    assert len(compressed) == 6
    forms = published_forms(mirror.folder("linux-64"))
    assert "beta-2.0-0.conda" not in forms["json"] | forms["shards"]
    assert forms["json"] == forms["shards"] == mirror.files("linux-64")


def test_a_sync_that_asks_for_no_closure_imports_none_of_its_code(mirror, tmp_path):
    """Wishes (closure, lockfiles, environments to solve) are worked out only when the
    configuration asks for one of them (gather._Wishes); the closure tests cover those."""
    seen = tmp_path / "modules.json"
    code = ("import json, sys\nfrom cas_mirror.cli import main\ncode = main(['--quiet'])\n"
            f"open({str(seen)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(seen.read_text())
    assert status == 0 and mirror.files("linux-64")
    unused = {"cas_mirror.conda.wishes", "cas_mirror.conda.depends", "cas_mirror.conda.solve",
              "cas_mirror.lockfiles", "cas_mirror.storage.base"}
    assert unused.isdisjoint(modules), sorted(unused & set(modules))
