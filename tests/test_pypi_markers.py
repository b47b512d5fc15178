"""What PyPI publishes today, carried through: PEP 740 provenance (mirrored, URL
rewritten), PEP 792 project status (quarantined serves no files, archived/deprecated
shown), PEP 708 tracks / alternate-locations, at the newest API version; and an exact-name
whitelist that never fetches the project list."""

from __future__ import annotations

import json

import pytest

from tests.support.http_server import LoggedRequest, Response
from tests.support.pypi_mirror import PypiMirror, requests_of
from tests.support.pypi_packages import SimpleUpstream

TRACKS = "https://pypi.example.invalid/simple/alpha/"


class ModernUpstream(SimpleUpstream):
    """PyPI's newest keys: provenance per file, project-status, tracks."""

    def __init__(self, root):
        super().__init__(root)
        self.status: dict[str, dict] = {}

    def file_entry(self, f, base="../../"):
        entry = super().file_entry(f, base)
        entry["provenance"] = f"/integrity/{f.filename}/provenance"
        return entry

    def project_json(self, key: str) -> bytes:
        document = json.loads(super().project_json(key))
        document["meta"]["api-version"] = "1.4"
        if key in self.status:
            document["project-status"] = self.status[key]
        if key == "alpha":
            document["meta"]["tracks"] = [TRACKS]
            document["alternate-locations"] = [TRACKS]
        return json.dumps(document).encode()

    def serve(self, server):
        super().serve(server)
        server.route("/integrity/*", self._provenance)
        return self

    def _provenance(self, request: LoggedRequest) -> Response:
        filename = request.path.split("/")[2]
        return Response(200, json.dumps({"version": 1, "attestation_bundles": [
            {"publisher": {"kind": "test"}, "file": filename}]}).encode(),
            {"Content-Type": "application/json"})


@pytest.fixture
def upstream(tmp_path, http_server):
    root = tmp_path / "upstream"
    server = http_server(root)
    up = ModernUpstream(root).serve(server)
    up.server = server
    up.add("alpha", "1.0", kinds=("wheel",))
    up.add("beta", "1.0", kinds=("wheel",))
    up.add("gamma", "1.0", kinds=("sdist",))
    return up


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def test_provenance_is_mirrored_and_its_url_rewritten(mirror, upstream):
    assert mirror.sync().code == 0
    wheel = upstream.find("alpha-1.0-py3-none-any.whl")[1]
    entry = mirror.page("alpha")["files"][0]
    assert entry["provenance"] == f"../../packages/{wheel.relpath}.provenance"
    local = mirror.web / "simple" / "alpha" / entry["provenance"]
    assert json.loads(local.resolve().read_bytes())["attestation_bundles"][0]["file"] == \
        wheel.filename
    assert f'data-provenance="../../packages/{wheel.relpath}.provenance"' in mirror.html("alpha")


def test_tracks_and_alternate_locations_and_the_newest_api_version(mirror):
    assert mirror.sync().code == 0
    page = mirror.page("alpha")
    assert page["meta"]["api-version"] == "1.4" and page["meta"]["tracks"] == [TRACKS]
    assert page["alternate-locations"] == [TRACKS]
    text = mirror.html("alpha")
    assert f'<meta name="pypi:tracks" content="{TRACKS}">' in text
    assert f'<meta name="pypi:alternate-locations" content="{TRACKS}">' in text
    assert '<meta name="pypi:repository-version" content="1.4">' in text


def test_archived_and_deprecated_are_shown_with_their_files(mirror, upstream):
    upstream.status = {"beta": {"status": "archived", "reason": "no longer maintained"},
                       "gamma": {"status": "deprecated"}}
    assert mirror.sync().code == 0
    beta = mirror.page("beta")
    assert beta["project-status"] == {"status": "archived", "reason": "no longer maintained"}
    assert beta["files"]  # archived projects keep offering their files
    assert '<meta name="pypi:project-status" content="archived">' in mirror.html("beta")
    assert '<meta name="pypi:project-status-reason" content="no longer maintained">' in \
        mirror.html("beta")
    assert mirror.page("gamma")["project-status"] == {"status": "deprecated"}
    assert "project-status" not in mirror.page("alpha")


def test_a_quarantined_project_serves_no_files(mirror, upstream, http_server, tmp_path):
    assert mirror.sync().code == 0
    wheel = upstream.find("beta-1.0-py3-none-any.whl")[1]
    assert (mirror.web / "packages" / wheel.relpath).is_file()
    upstream.status = {"beta": {"status": "quarantined", "reason": "malware"}}
    upstream.projects["beta"].serial = upstream._bump("beta", "", "quarantine")
    assert mirror.sync().code == 0
    page = mirror.page("beta")
    assert page["files"] == [] and page["project-status"]["status"] == "quarantined"
    assert "<a " not in mirror.html("beta")
    assert not (mirror.web / "packages" / wheel.relpath).exists()  # its files are gone
    from tests.support.pypi_packages import serve_mirror
    from tests.test_pypi_layout import install

    server = http_server(tmp_path / "empty")
    serve_mirror(server, mirror.web, "/pypi/")
    for client in ("pip", "uv"):
        proc = install(client, f"{server.url}/pypi/simple/", tmp_path / f"{client}-t", "beta")
        assert proc.returncode != 0, proc.stdout
        assert "beta" in proc.stderr + proc.stdout


# --------------------------------------------------------------------------- whitelist


def test_an_exact_name_whitelist_never_fetches_the_project_list(mirror, upstream):
    mirror.configure(whitelist=["Alpha", "gamma", "no-such-project"])
    result = mirror.sync()
    assert result.code == 0, result
    asked = requests_of(upstream, "GET")
    assert "/simple/" not in asked
    assert {"/simple/alpha/", "/simple/gamma/", "/simple/no-such-project/"} <= set(asked)
    assert {p["name"] for p in mirror.root()["projects"]} == {"alpha", "gamma"}
    before = mirror.snapshot()
    upstream.server.clear_log()
    result = mirror.sync("--json")
    assert result.code == 0, result
    pages = sorted(requests_of(upstream, "GET"))
    assert pages == ["/simple/alpha/", "/simple/gamma/", "/simple/no-such-project/"]
    summary = json.loads(result.out)
    assert summary["unchanged"] == 2 and summary["source"] == "whitelist"
    assert summary["listed"] == 2  # no-such-project has no page upstream
    assert mirror.snapshot() == before
    upstream.remove_project("gamma")  # its page now answers 404: removed here too
    assert mirror.sync().code == 0
    assert not (mirror.web / "simple" / "gamma").exists()
    assert {p["name"] for p in mirror.root()["projects"]} == {"alpha"}


def test_a_glob_whitelist_still_reads_the_project_list(mirror, upstream):
    mirror.configure(whitelist=["alph*"])
    assert mirror.sync().code == 0
    assert "/simple/" in requests_of(upstream, "GET")
