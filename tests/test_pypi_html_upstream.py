"""An HTML-only upstream (PEP 503, as devpi, Artifactory and static trees serve it): the
project list and pages are parsed (hash fragments, data-requires-python, data-yanked with
its reason, data-core-metadata, relative and absolute links), change is detected with
ETag / If-None-Match or the page's digest, and pip and uv install from the result."""

from __future__ import annotations

import hashlib
import html
import json

import pytest

from cas_mirror.pypi import html as pep503
from tests.support.cas_server import CasServer
from tests.support.http_server import LoggedRequest, Response
from tests.support.pypi_mirror import PypiMirror
from tests.support.pypi_packages import SimpleUpstream


class HtmlUpstream(SimpleUpstream):
    """The same projects, served only as PEP 503 HTML, with ETags (when `etags`)."""

    etags = True

    def page_html(self, key: str) -> bytes:
        project = self.projects[key]
        links = []
        for index, f in enumerate(project.files):
            # alternate relative and absolute links, as real indexes do
            href = f"../../packages/{f.relpath}" if index % 2 == 0 else \
                f"{self.url}/packages/{f.relpath}"
            attrs = [f'href="{html.escape(href)}#sha256={f.sha256}"']
            if f.requires_python:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            if f.yanked:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                attrs.append(f'data-yanked="{html.escape(reason)}"')
            if f.metadata is not None:
                digest = hashlib.sha256(f.metadata).hexdigest()
                attrs.append(f'data-core-metadata="sha256={digest}"')
            links.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>")
        return ("<!DOCTYPE html><html><head><title>Links for " + key + "</title></head>"
                "<body>" + "\n".join(links) + "</body></html>").encode()

    def root_page(self) -> bytes:
        return ("<!DOCTYPE html><html><body>" + "".join(
            f'<a href="{p.name.lower()}/">{html.escape(p.name)}</a>'
            for p in self.projects.values()) + "</body></html>").encode()

    def _answer(self, request: LoggedRequest, body: bytes) -> Response:
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if self.etags:
            tag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            headers["ETag"] = tag
            if request.headers.get("If-None-Match") == tag:
                return Response(304, b"", headers)
        return Response(200, body, headers)

    def _root(self, request: LoggedRequest) -> Response:
        return self._answer(request, self.root_page())

    def _page(self, request: LoggedRequest) -> Response:
        key = request.path.split("?")[0].strip("/").split("/")[-1]
        if key not in self.projects:
            return Response(404, b"no such project\n")
        return self._answer(request, self.page_html(key))


@pytest.fixture
def upstream(tmp_path, http_server):
    root = tmp_path / "upstream"
    server = http_server(root)
    up = HtmlUpstream(root).serve(server)
    up.server = server
    up.add("Alpha", "1.0", requires_python=">=3.8,<4")
    up.add("alpha", "2.0")
    up.add("beta", "0.5", kinds=("sdist",))
    up.yank("alpha-2.0.tar.gz", "broken <build>")
    return up


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def test_parser_reads_every_pep_503_attribute():
    page = b"""<!DOCTYPE html><html><head>
      <meta name="pypi:repository-version" content="1.4">
      <meta name="pypi:tracks" content="https://pypi.example.invalid/simple/demo/">
      <meta name="pypi:project-status" content="archived">
      <base href="https://files.example.invalid/root/"></head><body>
      <a href="demo-1.0.tar.gz#sha256=ABC123" data-requires-python="&gt;=3.9"
         data-yanked="">demo-1.0.tar.gz</a>
      <a href="/abs/demo-2.0-py3-none-any.whl#md5=ff" data-dist-info-metadata="true"
         data-yanked="security &amp; more">demo-2.0-py3-none-any.whl</a>
      <a href="https://other.invalid/demo-3.0.zip" data-core-metadata="sha256=aa"
         data-dist-info-metadata="sha256=bb" data-provenance="prov/demo-3.0.zip">x</a>
    </body></html>"""
    document = pep503.project_document(page, "https://index.invalid/simple/demo/", "demo")
    one, two, three = document["files"]
    assert one == {"filename": "demo-1.0.tar.gz",
                   "url": "https://files.example.invalid/root/demo-1.0.tar.gz",
                   "hashes": {"sha256": "ABC123"}, "requires-python": ">=3.9", "yanked": True}
    assert two["url"] == "https://files.example.invalid/abs/demo-2.0-py3-none-any.whl"
    assert two["yanked"] == "security & more" and two["core-metadata"] is True
    assert two["hashes"] == {"md5": "ff"}
    assert three["filename"] == "demo-3.0.zip"  # the URL names the file, not the text
    assert three["core-metadata"] == {"sha256": "aa"}  # PEP 714: the new name wins
    assert three["provenance"] == "https://files.example.invalid/root/prov/demo-3.0.zip"
    assert document["meta"] == {"api-version": "1.4",
                                "tracks": ["https://pypi.example.invalid/simple/demo/"]}
    assert document["project-status"] == {"status": "archived"}
    root = pep503.root_document(b'<a href="/simple/Foo/">Foo</a><a href="bar/"></a>',
                                "https://index.invalid/simple/")
    assert root["projects"] == [{"name": "Foo"}, {"name": "bar"}]


def test_html_upstream_is_mirrored_with_everything_its_pages_say(mirror, upstream):
    result = mirror.sync()
    assert result.code == 0, result
    page = mirror.page("alpha")
    by_name = {f["filename"]: f for f in page["files"]}
    assert set(by_name) == {f.filename for f in upstream.projects["alpha"].files}
    for up in upstream.projects["alpha"].files:
        entry = by_name[up.filename]
        assert entry["hashes"] == {"sha256": up.sha256}
        assert entry["url"] == f"../../packages/{up.relpath}"
        local = mirror.web / "packages" / up.relpath
        assert hashlib.sha256(local.read_bytes()).hexdigest() == up.sha256
        if up.metadata is not None:
            assert local.with_name(local.name + ".metadata").read_bytes() == up.metadata
    assert by_name["alpha-1.0.tar.gz"]["requires-python"] == ">=3.8,<4"
    assert by_name["alpha-2.0.tar.gz"]["yanked"] == "broken <build>"  # PEP 592, JSON
    assert 'data-yanked="broken &lt;build&gt;"' in mirror.html("alpha")  # and HTML
    assert {p["name"] for p in mirror.root()["projects"]} == {"Alpha", "beta"}


def test_html_upstream_noop_is_conditional_and_one_change_refetches_one_page(mirror,
                                                                             upstream):
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0, result
    pages = [r for r in upstream.server.requests if r.path.startswith("/simple/")
             and r.path != "/simple/"]
    assert pages and all(r.status == 304 for r in pages)
    assert all("If-None-Match" in r.headers for r in pages)
    assert json.loads(result.out)["unchanged"] == 2
    assert mirror.snapshot() == before  # nothing rewritten
    upstream.add("beta", "0.6", kinds=("sdist",))
    upstream.server.clear_log()
    assert mirror.sync().code == 0
    got = {r.path: r.status for r in upstream.server.requests}
    assert got["/simple/beta/"] == 200 and got["/simple/alpha/"] == 304
    assert "beta-0.6.tar.gz" in mirror.filenames("beta")


def test_without_etags_the_page_digest_tells_it_unchanged(mirror, upstream):
    upstream.etags = False
    assert mirror.sync().code == 0
    before = mirror.snapshot()
    result = mirror.sync("--json")
    assert result.code == 0 and json.loads(result.out)["unchanged"] == 2
    assert mirror.snapshot() == before


@pytest.mark.slow
def test_pip_and_uv_install_from_a_mirror_of_an_html_only_upstream(mirror, upstream,
                                                                   tmp_path):
    from tests.test_pypi_layout import install

    assert mirror.sync().code == 0
    server = CasServer(mirror.dir, tmp_path / "logs", workers=1)
    try:
        for client in ("pip", "uv"):
            target = tmp_path / f"{client}-target"
            proc = install(client, f"{server.url}/pypi/simple/", target, "alpha")
            assert proc.returncode == 0, proc.stderr + proc.stdout
            # 2.0's sdist is yanked, its wheel is not: the newest wheel is installed
            assert (target / "alpha" / "__init__.py").read_text().startswith("VERSION = '2.0'")
    finally:
        server.stop()
