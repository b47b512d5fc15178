"""cas-sync mirrors upstream's run_exports.json (CEP-12) restricted to the published
records: read as .zst when offered, only when upstream's metadata changed (a no-op run
asks nothing for it), removed when upstream has none, a malformed one is a warning."""

from __future__ import annotations

import json

import pytest
import zstandard

from cas_index.channel import Options, index_channel
from tests.support.conda_mirror import Mirror
from tests.support.conda_packages import PkgSpec, build_channel

SPECS = [
    PkgSpec("lib", "1.0", subdir="linux-64", run_exports={"weak": ["lib >=1.0,<2"]}),
    PkgSpec("lib", "2.0", subdir="linux-64", fmt=".tar.bz2", run_exports={"strong": ["lib"]}),
    PkgSpec("tool", "1.0", subdir="linux-64"),
    PkgSpec("noarchy", "1.0", subdir="noarch", run_exports={"weak": ["noarchy"]}),
]


@pytest.fixture
def upstream(tmp_path, http_server):
    from types import SimpleNamespace

    root = tmp_path / "upstream"
    channel = build_channel(root / "pkgs/main", SPECS)
    index_channel(channel.root, options=Options(threads=1))
    return SimpleNamespace(root=root, channel=channel, server=http_server(root),
                           url=None)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    upstream.url = upstream.server.url
    return Mirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def upstream_doc(upstream, platform: str) -> dict:
    return json.loads((upstream.channel.root / platform / "run_exports.json").read_bytes())


def published(mirror, platform: str = "linux-64") -> dict:
    return json.loads((mirror.folder(platform) / "run_exports.json").read_bytes())


def run_exports_requests(upstream) -> list[str]:
    return [p for p in upstream.server.paths("GET") if "run_exports" in p]


def test_run_exports_restricted_to_the_published_records(mirror, upstream):
    mirror.configure(blacklist=["tool", "lib 2.*"])
    result = mirror.sync()
    assert result.code == 0, result
    full = upstream_doc(upstream, "linux-64")
    assert published(mirror) == {
        "info": full["info"], "packages": {},
        "packages.conda": {"lib-1.0-0.conda": full["packages.conda"]["lib-1.0-0.conda"]}}
    assert published(mirror, "noarch") == upstream_doc(upstream, "noarch")
    folder = mirror.folder("linux-64")
    assert json.loads(zstandard.ZstdDecompressor().decompress(
        (folder / "run_exports.json.zst").read_bytes())) == published(mirror)
    assert sorted(run_exports_requests(upstream)) == [
        "/pkgs/main/linux-64/run_exports.json.zst", "/pkgs/main/noarch/run_exports.json.zst"]

    upstream.server.clear_log()  # nothing changed upstream: no request for it
    mirror.configure()  # ... and a new configuration is applied to the kept copy
    assert mirror.sync().code == 0
    assert run_exports_requests(upstream) == []
    assert set(published(mirror)["packages"]) == {"lib-2.0-0.tar.bz2"}
    assert set(published(mirror)["packages.conda"]) == {"lib-1.0-0.conda", "tool-1.0-0.conda"}


def test_run_exports_gone_upstream_is_removed(mirror, upstream):
    assert mirror.sync().code == 0
    assert (mirror.folder("linux-64") / "run_exports.json").is_file()
    upstream.channel.add([PkgSpec("tool", "2.0", subdir="linux-64")])  # repodata changes
    index_channel(upstream.channel.root, options=Options(threads=1, run_exports=False))
    assert not list((upstream.channel.root / "linux-64").glob("run_exports.json*"))
    assert mirror.sync().code == 0
    assert not list(mirror.folder("linux-64").glob("run_exports.json*"))
    # noarch's repodata did not change, so its run_exports.json was not asked for again
    assert (mirror.folder("noarch") / "run_exports.json").is_file()
    upstream.server.clear_log()
    assert mirror.sync().code == 0  # remembered as absent: not asked for again
    assert run_exports_requests(upstream) == []


def test_a_malformed_run_exports_is_a_warning_and_not_published(mirror, upstream):
    assert mirror.sync().code == 0
    assert (mirror.folder("linux-64") / "run_exports.json").is_file()
    upstream.channel.add([PkgSpec("tool", "2.0", subdir="linux-64")])
    index_channel(upstream.channel.root, options=Options(threads=1))
    for path in (upstream.channel.root / "linux-64").glob("run_exports.json*"):
        path.unlink()
    (upstream.channel.root / "linux-64/run_exports.json").write_text('{"packages": [1]}')
    result = mirror.sync()
    assert result.code == 0, result
    assert "run_exports.json: malformed run_exports.json" in result.err + result.out
    assert "Traceback" not in result.err
    assert not list(mirror.folder("linux-64").glob("run_exports.json*"))  # the old one too
    assert "tool-2.0-0.conda" in mirror.files("linux-64")  # the packages are mirrored all the same


def test_run_exports_that_cannot_be_fetched_leave_the_published_one(mirror, upstream):
    assert mirror.sync().code == 0
    before = published(mirror)
    upstream.channel.add([PkgSpec("tool", "2.0", subdir="linux-64")])
    index_channel(upstream.channel.root, options=Options(threads=1))
    upstream.server.add_fault("*/run_exports.json*", status=500)
    result = mirror.sync()
    assert result.code == 0, result
    assert "run_exports.json left as it was" in result.err + result.out
    assert published(mirror) == before
    upstream.server.clear_faults()
    upstream.server.clear_log()
    assert mirror.sync().code == 0  # looked for again, since it was not read last time
    assert "tool-2.0-0.conda" in published(mirror)["packages.conda"]
