"""A PyPI no-op (nothing changed upstream) is mostly start-up: it loads only what listing,
planning and the state need, not what examining a page, downloading, lockfiles or the
dependency closure use (checked in a fresh interpreter's sys.modules after a real re-sync
against a loopback index), and its records generate no code at import."""

from __future__ import annotations

import json
import subprocess
import sys

from cas_mirror.config import parsed
from tests.support.pypi_mirror import PypiMirror, make_upstream

# Made lazy for the no-op: what examining a page needs (file selection, packaging, the
# page-fetching thread pool), lockfile pins, the closure, and the downloader's transfer
# loop and worker processes (with shutil's compression modules).
NOT_FOR_A_NO_OP = {
    "cas_mirror.pypi.selection", "packaging", "concurrent.futures",
    "cas_mirror.lockfiles", "cas_mirror.pypi.locked", "cas_mirror.pypi.depends",
    "cas_mirror.net.multi", "cas_mirror.net.transfer", "cas_mirror.net.processes",
    "bz2", "lzma",
}


def test_a_pypi_no_op_loads_no_page_examining_download_or_lockfile_code(
        tmp_path, http_server, isolated_config, run_cli, monkeypatch):
    monkeypatch.setattr(parsed, "SETTLED", 0.0)  # the file was written just now
    mirror = PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli,
                        make_upstream(tmp_path, http_server))
    assert mirror.sync().code == 0
    seen = tmp_path / "modules.json"
    code = ("import json, sys\nfrom cas_mirror.cli import main\ncode = main(sys.argv[1:])\n"
            f"open({str(seen)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", code, "pypi", "--json"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(seen.read_text())
    summary = json.loads(done.stdout)
    assert status == 0 and summary["unchanged"] == 3 and summary["projects"] == [], summary
    assert "cas_mirror.pypi.sync" in modules  # (the sync did run in that interpreter)
    loaded = NOT_FOR_A_NO_OP & {m.split(".")[0] if m.startswith("packaging") else m
                                for m in modules}
    assert not loaded, sorted(loaded)


def test_the_pypi_records_a_no_op_imports_are_not_dataclasses():
    """Immutable records are NamedTuples: a dataclass compiles its methods at import
    (about 1 ms each), which every run pays."""
    import dataclasses

    from cas_mirror.pypi.filters import FilterSpec
    from cas_mirror.pypi.model import UpstreamFile
    from cas_mirror.pypi.pages import PageFile, ProjectMarkers
    from cas_mirror.pypi.plan import FilesPlan, ProjectsPlan, WantedFile
    from cas_mirror.pypi.settings import PypiSettings
    from cas_mirror.pypi.state import ProjectState

    records = (FilterSpec, UpstreamFile, PageFile, ProjectMarkers, WantedFile, FilesPlan,
               ProjectsPlan, PypiSettings, ProjectState)
    assert not [r.__name__ for r in records if dataclasses.is_dataclass(r)]
    spec = FilterSpec.from_settings({"whitelist": ["requests"]})
    assert spec._replace(keep_latest=2).whitelist == spec.whitelist and not spec.pins
