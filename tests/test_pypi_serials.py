"""Serials, which decide what the next run looks at: the changelog merge (several changes
of one project, in any order, give its highest serial), and `last_serial`, which must not
move past changes a failed run did not mirror."""

from __future__ import annotations

import xmlrpc.client

import pytest

from cas_mirror.net import Downloader, NetworkSettings
from cas_mirror.pypi.client import fetch_listing_xmlrpc
from tests.support.pypi_mirror import PypiMirror, make_upstream, saved_state


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    m = PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)
    m.configure(use_xml_rpc=True)
    return m


def _changelog(rows) -> bytes:
    return xmlrpc.client.dumps(([list(r) for r in rows],), methodresponse=True).encode()


def test_changelog_rows_merge_to_the_highest_serial(upstream):
    rows = [("gamma", "2.0", 1, "new release", 110), ("GAMMA", "2.0", 1, "add file", 112),
            ("Gamma", "2.0", 1, "add file", 111), ("alpha", "1.0", 1, "remove file", 105),
            ("beta", "", 1, "remove project", 108), ("beta", "0.1", 1, "create", 109),
            ("delta", "1.0", 1, "new release", 104), ("delta", "", 1, "remove project", 107)]
    upstream.server.add_fault("/pypi", body=_changelog(rows), methods=("POST",))
    with Downloader(NetworkSettings(retries=0, timeout=5)) as downloader:
        listing = fetch_listing_xmlrpc(downloader, f"{upstream.url}/pypi", 100)
    assert {k: p.serial for k, p in listing.projects.items()} == {
        "gamma": 112, "alpha": 105, "beta": 109}
    assert listing.last_serial == 112 and not listing.complete
    assert listing.dropped == {"delta": "delta"}  # its last change removed it


def test_a_stale_page_below_the_merged_serial_is_asked_again(mirror, upstream):
    assert mirror.sync().code == 0
    upstream.add("gamma", "2.0")
    stale = upstream.project_json("gamma")  # what a cache still holds after 3.0 arrives
    upstream.add("gamma", "3.0")
    assert [row[0] for row in upstream.changelog[-4:]] == ["gamma"] * 4  # four changes
    upstream.server.add_fault("/simple/gamma/", body=stale, times=1)
    result = mirror.sync()
    assert result.code == 0, result
    assert "gamma-3.0.tar.gz" in mirror.filenames("gamma")  # the stale answer was refused
    assert saved_state(mirror)["projects"]["gamma"]["serial"] == upstream.serial
    assert saved_state(mirror)["last_serial"] == upstream.serial


def test_a_failed_run_does_not_advance_last_serial(mirror, upstream):
    assert mirror.sync().code == 0
    before = saved_state(mirror)["last_serial"]
    assert before == upstream.serial
    sdist = upstream.add("beta", "0.6", kinds=("sdist",))[0]
    upstream.add("gamma", "2.0")
    upstream.server.add_fault(f"/packages/{sdist.relpath}", status=404)
    result = mirror.sync()
    assert result.code == 1, result
    assert "gamma-2.0.tar.gz" in mirror.filenames("gamma")  # the rest of the run went on
    assert saved_state(mirror)["last_serial"] == before  # beta's change is asked for again
    upstream.server.clear_faults()
    result = mirror.sync()
    assert result.code == 0, result
    assert "beta-0.6.tar.gz" in mirror.filenames("beta")
    assert saved_state(mirror)["last_serial"] == upstream.serial
