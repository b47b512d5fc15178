"""cas-sync pypi end to end: real wheels and sdists, a Simple-API upstream on 127.0.0.1
with serials, yanked files, .metadata and XML-RPC, real faults."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from cas_mirror.lock import TreeLock
from cas_mirror.net import human_bytes
from tests.support.pypi_mirror import PypiMirror, make_upstream, requests_of, upstream_size
from tests.support.pypi_packages import normalize
from tests.support.trees import no_hidden_leftovers as no_leftovers


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


# --------------------------------------------------------------------------- the tree


def test_first_sync_writes_the_bandersnatch_tree(mirror, upstream):
    result = mirror.sync()
    assert result.code == 0, result
    simple = mirror.web / "simple"
    for folder in (simple, simple / "alpha", simple / "beta", simple / "gamma"):
        assert {p.name for p in folder.iterdir() if p.is_file()} == {
            "index.html", "index.v1_html", "index.v1_json"}
        assert (folder / "index.html").read_bytes() == (folder / "index.v1_html").read_bytes()
    page = mirror.page("alpha")
    assert page["meta"] == {"api-version": "1.4", "_last-serial": upstream.projects["alpha"].serial}
    assert page["name"] == "alpha"
    assert sorted(page["versions"]) == ["1.0", "2.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert set(by_name) == {f.filename for f in upstream.projects["alpha"].files}
    for up in upstream.projects["alpha"].files:
        entry = by_name[up.filename]
        assert entry["hashes"] == {"sha256": up.sha256}
        assert entry["size"] == up.size and entry["upload-time"] == up.upload_time
        assert entry["url"] == f"../../packages/{up.relpath}"  # upstream's layout, relative
        local = (simple / "alpha" / entry["url"]).resolve()
        assert hashlib.sha256(local.read_bytes()).hexdigest() == up.sha256
        if up.metadata is not None:  # PEP 658: mirrored and named by hash (PEP 714 key)
            assert "dist-info-metadata" not in entry
            assert Path(f"{local}.metadata").read_bytes() == up.metadata
            assert entry["core-metadata"] == {"sha256": hashlib.sha256(up.metadata).hexdigest()}
    assert by_name["alpha-1.0.tar.gz"]["requires-python"] == ">=3.8,<4"
    html = mirror.html("alpha")
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in html
    wheel = upstream.find("Alpha-1.0-py3-none-any.whl")[1]
    digest = hashlib.sha256(wheel.metadata).hexdigest()
    assert (f'<a href="../../packages/{wheel.relpath}#sha256={wheel.sha256}" '
            f'data-requires-python="&gt;=3.8,&lt;4" data-dist-info-metadata="sha256={digest}" '
            f'data-core-metadata="sha256={digest}">Alpha-1.0-py3-none-any.whl</a>') in html
    root = mirror.root()
    assert root["meta"]["_last-serial"] == upstream.serial
    assert root["projects"] == [{"name": p.name, "_last-serial": p.serial}
                                for _, p in sorted(upstream.projects.items())]
    assert '<a href="alpha/">Alpha</a>' in (simple / "index.html").read_text()
    assert "cas-sync pypi summary" in result.out
    assert no_leftovers(mirror.dir)


def test_noop_resync_asks_only_for_the_project_list(mirror, upstream):
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert requests_of(upstream) == ["/simple/"]
    assert mirror.snapshot() == before  # nothing rewritten: mtimes unchanged
    summary = json.loads(result.out)
    assert summary["unchanged"] == 3 and summary["projects"] == []


def test_new_release_yank_and_removed_project(mirror, upstream):
    assert mirror.sync().code == 0
    upstream.add("beta", "0.6", kinds=("sdist",))
    upstream.server.clear_log()
    assert mirror.sync().code == 0
    pages = [p for p in requests_of(upstream) if p.startswith("/simple/")]
    assert pages == ["/simple/", "/simple/beta/"]  # only the project whose serial moved
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz", "beta-0.6.tar.gz"}

    upstream.yank("beta-0.5.tar.gz", "broken <b>build</b> & more")
    assert mirror.sync().code == 0
    yanked = {f["filename"]: f["yanked"] for f in mirror.page("beta")["files"]}
    assert yanked == {"beta-0.5.tar.gz": "broken <b>build</b> & more", "beta-0.6.tar.gz": False}
    assert 'data-yanked="broken &lt;b&gt;build&lt;/b&gt; &amp; more"' in mirror.html("beta")

    gamma_files = {f.filename for f in upstream.projects["gamma"].files}
    upstream.remove_project("gamma")
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert not (mirror.web / "simple" / "gamma").exists()
    assert "gamma" not in {p["name"] for p in mirror.root()["projects"]}
    assert 'href="gamma/"' not in (mirror.web / "simple" / "index.html").read_text()
    assert not gamma_files & mirror.package_files()
    removed = [p for p in json.loads(result.out)["projects"] if p["action"] == "remove"]
    assert [(p["project"], p["why"], p["deleted"], p["metadata_deleted"]) for p in removed] \
        == [("gamma", "removed upstream", 2, 1)]


@pytest.mark.parametrize("status", [404, 410, 500])
def test_a_listed_project_whose_page_fails_is_kept(mirror, upstream, status):
    """Only the project list removes a project: a listed project whose page answers 404
    (a CDN or cache fault, a race with an upload) fails alone, as a 500 does."""
    assert mirror.sync().code == 0
    before = {p: v for p, v in mirror.snapshot().items() if "gamma" in p or "packages" in p}
    upstream.add("gamma", "2.0")
    upstream.server.add_fault("/simple/gamma/*", status=status)
    result = mirror.sync("--json")
    assert result.code == 1, result
    gamma = next(p for p in json.loads(result.out)["projects"] if p["project"] == "gamma")
    assert gamma["action"] == "sync" and f"HTTP {status}" in gamma["error"]
    assert mirror.filenames("gamma") == {"gamma-1.0-py3-none-any.whl", "gamma-1.0.tar.gz"}
    assert "gamma" in {normalize(p["name"]) for p in mirror.root()["projects"]}
    after = mirror.snapshot()
    assert before == {p: after[p] for p in before}  # pages and files untouched
    upstream.server.clear_faults()
    upstream.remove_project("gamma")  # now the list drops it: removed
    result = mirror.sync()
    assert result.code == 0, result
    assert not (mirror.web / "simple" / "gamma").exists()


def test_xmlrpc_changelog_removes_only_what_it_says_was_removed(mirror, upstream):
    mirror.configure(use_xml_rpc=True)
    assert mirror.sync().code == 0
    upstream.add("beta", "0.6", kinds=("sdist",))
    upstream.server.add_fault("/simple/beta/*", status=404)
    result = mirror.sync()
    assert result.code == 1, result
    assert "the mirrored copy is kept" in result.out
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz"}
    upstream.server.clear_faults()
    upstream.remove_project("gamma")
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert "/simple/gamma/" not in requests_of(upstream)  # the changelog said: removed
    assert not (mirror.web / "simple" / "gamma").exists()
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz", "beta-0.6.tar.gz"}
    removed = [(p["project"], p["why"]) for p in json.loads(result.out)["projects"]
               if p["action"] == "remove"]
    assert removed == [("gamma", "removed upstream")]


def test_removed_file_is_deleted_unless_keep_removed(mirror, upstream):
    assert mirror.sync().code == 0
    upstream.remove_file("alpha-1.0.tar.gz")
    assert mirror.sync().code == 0
    assert "alpha-1.0.tar.gz" not in mirror.package_files()
    assert "alpha-1.0.tar.gz" not in mirror.filenames("alpha")
    mirror.configure(keep_removed=True)
    upstream.remove_file("alpha-2.0.tar.gz")
    assert mirror.sync().code == 0
    assert "alpha-2.0.tar.gz" in mirror.package_files()
    assert "alpha-2.0.tar.gz" not in mirror.filenames("alpha")
    assert no_leftovers(mirror.dir)


def test_filters_in_one_sync(mirror, upstream):
    upstream.add("alpha", "3.0b1")
    upstream.add("delta", "1.0", kinds=("wheel",), tag="cp311-cp311-manylinux_2_17_x86_64")
    upstream.add("delta", "1.0", kinds=("wheel",), tag="cp311-cp311-win_amd64")
    upstream.add("delta", "1.0", kinds=("wheel",), tag="cp312-cp312-manylinux_2_17_x86_64")
    upstream.add("delta", "1.0", kinds=("wheel",), tag="cp38-abi3-manylinux_2_17_x86_64")
    upstream.add("delta", "1.0", kinds=("sdist",), requires_python=">=3.12")
    upstream.add("epsilon", "1.0")
    mirror.configure(whitelist=["ALPHA>=2", "d*", "beta", "epsilon"], blacklist=["epsilon"],
                     exclude_prereleases=True, platforms=["linux"], python_versions=["3.11"],
                     packagetypes=["wheel", "sdist"])
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert {normalize(p["name"]) for p in mirror.root()["projects"]} == {"alpha", "beta",
                                                                          "delta"}
    assert mirror.filenames("alpha") == {"alpha-2.0-py3-none-any.whl", "alpha-2.0.tar.gz"}
    assert mirror.filenames("delta") == {"delta-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                                         "delta-1.0-cp38-abi3-manylinux_2_17_x86_64.whl"}
    assert "epsilon-1.0.tar.gz" not in mirror.package_files()
    # A configuration change re-examines every project without any serial moving.
    mirror.configure(latest_only=True, packagetypes=["sdist"])
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert mirror.filenames("alpha") == {"alpha-3.0b1.tar.gz"}
    assert mirror.filenames("gamma") == {"gamma-1.0.tar.gz"}
    assert "alpha-2.0.tar.gz" not in mirror.package_files()
    mirror.configure(keep_latest=2, exclude_prereleases=True)
    assert mirror.sync().code == 0
    assert mirror.filenames("alpha") == {"alpha-1.0.tar.gz", "alpha-2.0.tar.gz",
                                         "Alpha-1.0-py3-none-any.whl",
                                         "alpha-2.0-py3-none-any.whl"}


def test_release_files_false_links_to_root_uri(mirror, upstream):
    mirror.configure(release_files=False, root_uri="https://files.example.invalid/")
    assert mirror.sync().code == 0
    assert mirror.package_files() == set()
    wheel = upstream.find("alpha-2.0-py3-none-any.whl")[1]
    urls = {f["filename"]: f["url"] for f in mirror.page("alpha")["files"]}
    assert urls[wheel.filename] == f"https://files.example.invalid/packages/{wheel.relpath}"
    assert f'href="https://files.example.invalid/packages/{wheel.relpath}#sha256=' \
           in mirror.html("alpha")
    mirror.configure(release_files=False)
    assert mirror.sync().code == 0
    urls = {f["filename"]: f["url"] for f in mirror.page("alpha")["files"]}
    assert urls[wheel.filename] == f"{upstream.url}/packages/{wheel.relpath}"


@pytest.mark.parametrize("fmt, files", [("HTML", {"index.html", "index.v1_html"}),
                                        ("JSON", {"index.v1_json"})])
def test_simple_format(mirror, fmt, files):
    assert mirror.sync().code == 0
    mirror.configure(simple_format=fmt.lower())
    assert mirror.sync().code == 0
    for folder in (mirror.web / "simple", mirror.web / "simple" / "alpha"):
        assert {p.name for p in folder.iterdir() if p.is_file()} == files


def test_json_api_copies(mirror, upstream):
    mirror.configure(json=True)
    assert mirror.sync().code == 0
    saved = json.loads((mirror.web / "json" / "alpha").read_bytes())
    assert saved["last_serial"] == upstream.projects["alpha"].serial
    link = mirror.web / "pypi" / "alpha" / "json"
    assert link.is_symlink() and link.read_bytes() == (mirror.web / "json" / "alpha").read_bytes()


def test_diff_file_inherited_from_top_level_gets_a_pypi_suffix(mirror, tmp_path):
    settings = yaml.safe_load(mirror.config_path.read_text())
    settings["diff_file"] = str(tmp_path / "diffs" / "new-files")
    mirror.config_path.write_text(yaml.safe_dump(settings))
    assert mirror.sync().code == 0
    listed = (tmp_path / "diffs" / "new-files-pypi").read_text().splitlines()
    assert str((mirror.web / "simple" / "alpha" / "index.v1_json").resolve()) in listed
    assert len([p for p in listed if "/packages/" in p]) == 10  # 7 files + 3 .metadata
    assert not (tmp_path / "diffs" / "new-files").exists()


def test_download_mirror_first_then_fallback(mirror, upstream, http_server, tmp_path):
    other = http_server(tmp_path / "download-mirror")  # has nothing: every file falls back
    mirror.configure(download_mirror=other.url)
    assert mirror.sync().code == 0
    assert len([p for p in other.paths() if p.startswith("/packages/")]) == 10
    mirror.configure(download_mirror=other.url, download_mirror_no_fallback=True)
    upstream.add("beta", "0.7", kinds=("sdist",))
    result = mirror.sync()
    assert result.code == 1
    assert "beta-0.7.tar.gz" in result.out and "HTTP 404" in result.out


# --------------------------------------------------------------------------- XML-RPC


def test_xmlrpc_list_then_changelog(mirror, upstream):
    mirror.configure(use_xml_rpc=True)
    assert mirror.sync().code == 0
    assert next(r.body for r in upstream.server.requests if r.method == "POST").count(
        b"list_packages_with_serial") == 1
    assert "/simple/" not in requests_of(upstream)
    upstream.add("gamma", "2.0")
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0, result
    posts = [r.body for r in upstream.server.requests if r.method == "POST"]
    assert len(posts) == 1 and b"changelog_since_serial" in posts[0]
    assert [p for p in requests_of(upstream, "GET") if p.startswith("/simple")] == [
        "/simple/gamma/"]
    assert json.loads(result.out)["source"] == "xmlrpc-changelog"
    assert "gamma-2.0.tar.gz" in mirror.filenames("gamma")


def test_xmlrpc_unavailable_falls_back_to_the_simple_index(mirror, upstream):
    upstream.xmlrpc_enabled = False
    mirror.configure(use_xml_rpc=True)
    result = mirror.sync("--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["source"] == "simple"
    assert "using the Simple API project list instead" in summary["notices"][0]
    assert "warning:" in result.err
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz"}


def test_xmlrpc_off_never_posts(mirror, upstream):
    assert mirror.sync().code == 0
    assert requests_of(upstream, "POST") == []


# --------------------------------------------------------------------------- faults


def test_transient_faults_are_retried(mirror, upstream):
    wheel = upstream.find("alpha-2.0-py3-none-any.whl")[1]
    sdist = upstream.find("beta-0.5.tar.gz")[1]
    gamma = upstream.find("gamma-1.0.tar.gz")[1]
    upstream.server.add_fault(f"/packages/{wheel.relpath}", status=500, times=1)
    upstream.server.add_fault(f"/packages/{sdist.relpath}", truncate=50, times=1)
    upstream.server.add_fault(f"/packages/{gamma.relpath}", corrupt=True, times=1)
    upstream.server.add_fault("/simple/alpha/", status=503, times=1)
    upstream.server.add_fault(f"/packages/{wheel.relpath}.metadata", delay=1.0, times=1)
    mirror.configure(timeout=0.3)
    result = mirror.sync()
    assert result.code == 0, result
    for up in (wheel, sdist, gamma):
        path = mirror.web / "packages" / up.relpath
        assert hashlib.sha256(path.read_bytes()).hexdigest() == up.sha256
    assert (mirror.web / "packages" / f"{wheel.relpath}.metadata").read_bytes() == wheel.metadata
    assert no_leftovers(mirror.dir)


def test_lasting_failures_exit_1_and_stay_off_the_pages(mirror, upstream):
    wheel = upstream.find("alpha-2.0-py3-none-any.whl")[1]
    upstream.server.add_fault(f"/packages/{wheel.relpath}", corrupt=True)
    upstream.server.add_fault("/simple/beta/", status=500)
    result = mirror.sync()
    assert result.code == 1, result
    assert "failures:" in result.out and "sha256 mismatch" in result.out
    assert "beta: /simple/beta/" not in result.out and "HTTP 500" in result.out
    assert wheel.filename not in mirror.filenames("alpha")
    assert wheel.filename not in mirror.package_files()
    assert not (mirror.web / "simple" / "beta").exists()
    assert no_leftovers(mirror.dir)
    upstream.server.clear_faults()
    upstream.server.clear_log()
    assert mirror.sync().code == 0  # the failed project and file are tried again
    assert "/simple/alpha/" in requests_of(upstream) and "/simple/beta/" in requests_of(upstream)
    assert wheel.filename in mirror.filenames("alpha")


def test_a_stale_page_is_asked_again_then_reported(mirror, upstream):
    assert mirror.sync().code == 0
    upstream.add("gamma", "2.0")
    stale = upstream.project_json("gamma").replace(
        f'"_last-serial": {upstream.serial}'.encode(), b'"_last-serial": 1')
    upstream.server.add_fault("/simple/gamma/", body=stale, times=1)
    assert mirror.sync().code == 0  # the second answer is fresh
    assert "gamma-2.0.tar.gz" in mirror.filenames("gamma")
    upstream.add("gamma", "3.0")
    stale = upstream.project_json("gamma").replace(
        f'"_last-serial": {upstream.serial}'.encode(), b'"_last-serial": 1')
    upstream.server.add_fault("/simple/gamma/", body=stale)
    result = mirror.sync()
    assert result.code == 1
    assert "older than" in result.out and "stale" in result.out
    assert "gamma-3.0.tar.gz" not in mirror.filenames("gamma")  # previous page kept


def test_stop_on_error_stops_early(mirror, upstream):
    upstream.server.add_fault("/packages/*", status=404)
    mirror.configure(stop_on_error=True, workers=1)
    result = mirror.sync("--json")
    assert result.code == 1
    summary = json.loads(result.out)
    assert "stop_on_error" in summary["stopped_on_error"]
    downloads = [p for p in requests_of(upstream) if p.startswith("/packages/")]
    assert 1 <= len(downloads) <= 2 < 10  # the one worker may have started the next file
    failures = [f["error"] for p in summary["projects"] for f in p["failures"]]
    assert sum("not downloaded" in f and "stop_on_error" in f for f in failures) >= 8


def test_not_enough_disk_space_exits_4(mirror):
    settings = yaml.safe_load(mirror.config_path.read_text())
    settings["minimum_free_space"] = "1000 TB"
    mirror.config_path.write_text(yaml.safe_dump(settings))
    result = mirror.sync()
    assert result.code == 4, result
    assert "not enough free space" in result.out
    assert mirror.package_files() == set()


def test_a_second_run_on_the_same_tree_exits_3(mirror):
    assert mirror.sync().code == 0
    with TreeLock(mirror.dir / "pypi" / ".cas-sync" / "lock"):
        result = mirror.sync()
    assert result.code == 3
    assert "another cas-sync pypi run holds the lock" in result.err


# --------------------------------------------------------------------------- hostile upstream


def test_hostile_names_and_urls_are_refused(mirror, upstream, tmp_path):
    good = upstream.find("gamma-1.0.tar.gz")[1]
    evil = {
        "meta": {"api-version": "1.1", "_last-serial": 500}, "name": "gamma",
        "files": [
            upstream.file_entry(good),
            {**upstream.file_entry(good), "filename": "../gamma-6.0.tar.gz",
             "url": "../../packages/x/../gamma-6.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "gamma-7.0.tar.gz",
             "url": "../../packages/%2e%2e/%2e%2e/%2e%2e/gamma-7.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "gamma-8.0.tar.gz",
             "url": "../../packages/a%2Fb/gamma-8.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "alpha-9.0.tar.gz",
             "url": "../../packages/aa/alpha-9.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "gamma-9.0.tar.gz",
             "url": "file:///etc/passwd/gamma-9.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "gamma-10.0.tar.gz",
             "url": "../../packages/aa/.hidden/gamma-10.0.tar.gz"},
            {**upstream.file_entry(good), "filename": "gamma-11.0.tar.gz",
             "url": "../../packages/aa/other-name.tar.gz"},
        ],
    }
    upstream.server.add_fault("/simple/gamma/", body=json.dumps(evil).encode())
    root = json.loads(upstream.root_json())
    root["projects"] += [{"name": "../../etc", "_last-serial": 1},
                         {"name": "GAMMA", "_last-serial": 1},
                         {"name": "<script>", "_last-serial": 1}]
    upstream.server.add_fault("/simple/", body=json.dumps(root).encode())
    result = mirror.sync("--json")
    assert result.code == 1, result
    summary = json.loads(result.out)
    refused_names = {r["item"] for r in summary["refused"]}
    assert refused_names == {"'../../etc'", "GAMMA", "'<script>'"}
    gamma = next(p for p in summary["projects"] if p["project"] == "gamma")
    assert len(gamma["failures"]) == 7
    assert all(f["error"].startswith("refused:") for f in gamma["failures"])
    assert mirror.filenames("gamma") == {"gamma-1.0.tar.gz"}
    outside = [p for p in tmp_path.rglob("gamma-*") if mirror.dir not in p.parents
               and tmp_path / "upstream" not in p.parents]
    assert outside == []
    assert {p.name for p in (mirror.web / "simple").iterdir()} == {
        "alpha", "beta", "gamma", "index.html", "index.v1_html", "index.v1_json"}


def test_a_page_about_another_project_is_refused(mirror, upstream):
    upstream.server.add_fault("/simple/beta/", body=upstream.project_json("alpha"))
    result = mirror.sync()
    assert result.code == 1
    assert "refused: the page names project 'alpha', not 'beta'" in result.out
    assert not (mirror.web / "simple" / "beta").exists()


# --------------------------------------------------------------------------- verify, dry run


def test_verify_rehashes_and_repairs(mirror, upstream):
    assert mirror.sync().code == 0
    wheel = upstream.find("alpha-2.0-py3-none-any.whl")[1]
    path = mirror.web / "packages" / wheel.relpath
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    page = mirror.web / "simple" / "beta" / "index.v1_json"
    page.write_text("garbage")
    stray = mirror.web / "packages" / "zz" / "stray.whl"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    leftover = mirror.web / "simple" / "alpha" / ".tmp-index.html.x1y2"
    leftover.write_bytes(b"partial")
    upstream.add("gamma", "9.0")  # a serial moved too: verify fetches everything anyway
    assert mirror.sync().code == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() != wheel.sha256  # trusted the cache
    result = mirror.sync("--verify", "--json")
    assert result.code == 0, result
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256
    assert mirror.page("beta")["name"] == "beta"
    assert not stray.exists() and not leftover.exists()
    summary = json.loads(result.out)
    assert summary["strays_removed"] == 2
    assert sorted(s["path"] for s in summary["strays"]) == [
        "packages/zz/stray.whl", "simple/alpha/.tmp-index.html.x1y2"]
    alpha = next(p for p in summary["projects"] if p["project"] == "alpha")
    assert alpha["repaired"] == [{"file": wheel.relpath,
                                  "what": "sha256 mismatch; downloaded again"}]


def test_verify_names_what_it_repaired_in_the_summary(mirror, upstream):
    assert mirror.sync().code == 0
    wheel = upstream.find("gamma-1.0-py3-none-any.whl")[1]
    (mirror.web / "packages" / wheel.relpath).write_bytes(b"short")
    (mirror.web / "packages" / f"{wheel.relpath}.metadata").unlink()
    stray = mirror.web / "packages" / "zz" / "stray.whl"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    result = mirror.sync("--verify")
    assert result.code == 0, result
    assert "(no project)  --verify" in result.out  # the strays' row in the table
    repaired = result.out.split("repaired:\n", 1)[1].splitlines()
    assert f"  gamma: {wheel.relpath}: 5 bytes, upstream says {wheel.size}; downloaded again" \
        in repaired
    assert f"  gamma: {wheel.relpath}.metadata: missing; downloaded again" in repaired
    assert "  packages/zz/stray.whl: no project owns it: deleted" in repaired
    assert "1 file and 1 .metadata (" in result.out  # counted apart, singular


def test_one_file_is_one_file(mirror, upstream):
    assert mirror.sync().code == 0
    upstream.add("beta", "0.6", kinds=("sdist",))
    result = mirror.sync()
    assert result.code == 0, result
    assert "pypi: 1 project to examine" in result.err
    assert "1 file and 0 .metadata (" in result.out
    assert "1 files" not in result.out + result.err and "1 projects" not in result.err


def test_dry_run_changes_nothing(mirror, upstream):
    result = mirror.sync("--dry-run")
    assert result.code == 0, result
    assert "dry run: nothing changed" in result.out
    assert not mirror.dir.exists()
    assert mirror.sync().code == 0
    upstream.add("beta", "0.9", kinds=("sdist",))
    upstream.remove_project("gamma")
    before = mirror.snapshot()
    result = mirror.sync("--dry-run", "--json")
    assert result.code == 0, result
    plan = {p["project"]: p for p in json.loads(result.out)["projects"]}
    assert plan["beta"]["plan"]["download"] == 1
    assert plan["gamma"]["action"] == "remove"
    assert (plan["gamma"]["plan"]["delete"], plan["gamma"]["plan"]["delete_metadata"]) == (2, 1)
    assert mirror.snapshot() == before


def test_dry_run_lists_each_file_to_download_and_delete(mirror, upstream):
    assert mirror.sync().code == 0
    new = upstream.add("beta", "0.9")  # a wheel with .metadata and an sdist
    upstream.remove_file("alpha-1.0.tar.gz")
    removed = upstream.find("Alpha-1.0-py3-none-any.whl")[1]
    result = mirror.sync("--dry-run", "--json")
    assert result.code == 0, result
    plan = {p["project"]: p["plan"] for p in json.loads(result.out)["projects"]}
    wheel, sdist = new
    assert sorted((f["file"], f["size"], f["metadata"]) for f in plan["beta"]["download_files"]) \
        == sorted([(wheel.filename, wheel.size, False), (f"{wheel.filename}.metadata", None, True),
                   (sdist.filename, sdist.size, False)])
    assert plan["beta"]["download_bytes"] == wheel.size + sdist.size
    assert {f["path"] for f in plan["beta"]["download_files"]} == {
        wheel.relpath, f"{wheel.relpath}.metadata", sdist.relpath}
    assert [(f["file"], f["size"]) for f in plan["alpha"]["delete_files"]] == [
        ("alpha-1.0.tar.gz", upstream_size(mirror, "alpha-1.0.tar.gz"))]
    assert removed.filename not in {f["file"] for f in plan["alpha"]["delete_files"]}
    human = mirror.sync("--dry-run")
    assert human.code == 0, human
    assert "would download (3 files):" in human.out
    assert f"  beta: {wheel.filename} ({human_bytes(wheel.size)})" in human.out
    assert f"  beta: {wheel.filename}.metadata (size unknown)" in human.out
    assert "would delete (1 file):" in human.out
    assert "  alpha: alpha-1.0.tar.gz (" in human.out


def test_quiet_prints_nothing_on_success(mirror):
    result = mirror.sync("--quiet")
    assert result.code == 0 and result.out == "" and result.err == ""


def test_normalized_project_folders(mirror, upstream):
    upstream.add("Zope.Interface_Extra", "1.0", kinds=("sdist",))
    assert mirror.sync().code == 0
    assert mirror.page("zope-interface-extra")["name"] == "zope-interface-extra"
    assert normalize("Zope.Interface_Extra") in {p.name for p in (mirror.web / "simple").iterdir()}
