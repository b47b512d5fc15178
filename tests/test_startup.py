"""Start-up is most of what a run with nothing to do costs: `cas-sync --version` and a
PyPI no-op import only what they use (checked in a fresh interpreter's sys.modules; the
conda no-op's own check is in test_conda_quiet.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from cas_mirror.config import parsed
from tests.support.pypi_mirror import PypiMirror, make_upstream


def modules_after(args: list[str], seen) -> tuple[int, set[str], str]:
    """Run cas-sync ARGS in a fresh interpreter: (exit status, modules imported, stdout)."""
    code = ("import json, sys\nfrom cas_mirror.cli import main\ncode = main(sys.argv[1:])\n"
            f"open({str(seen)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(seen.read_text())
    return status, set(modules), done.stdout


def test_version_imports_neither_a_sync_nor_the_network(tmp_path):
    from cas_mirror import __version__

    status, modules, out = modules_after(["--version"], tmp_path / "modules.json")
    assert status == 0 and out.strip() == f"cas-sync, version {__version__}"
    unused = {"pycurl", "yaml", "msgspec", "cas_mirror.net", "cas_mirror.pypi.cli",
              "cas_mirror.airgap.cli", "cas_mirror.conda.sync"}
    assert unused.isdisjoint(modules), sorted(unused & modules)


def test_a_pypi_no_op_imports_only_what_it_uses(tmp_path, http_server, isolated_config,
                                                run_cli, monkeypatch):
    """Neither PyPI (its configuration was parsed before), nor what reading a
    distribution's metadata needs (email, tarfile, zipfile) when no dependency is
    followed, nor the conda side."""
    monkeypatch.setattr(parsed, "SETTLED", 0.0)  # the file was written just now
    mirror = PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli,
                        make_upstream(tmp_path, http_server))
    assert mirror.sync().code == 0
    status, modules, out = modules_after(["pypi", "--json"], tmp_path / "modules.json")
    summary = json.loads(out)
    assert status == 0 and summary["unchanged"] > 0, summary
    assert not any(p["downloaded"] for p in summary["projects"])
    unused = {"yaml", "ssl", "email.parser", "tarfile", "zipfile", "cas_mirror.conda.sync",
              "click"}
    assert unused.isdisjoint(modules), sorted(unused & modules)


def test_the_records_every_run_imports_generate_no_code_at_import():
    """Every run imports the downloader (and a PyPI run its model): their immutable
    records are NamedTuples, not dataclasses (each of which compiles its methods at
    import, about 0.8 ms)."""
    import dataclasses

    from cas_mirror.net import DownloadJob, HostCondition, NetworkSettings, RetryPolicy
    from cas_mirror.pypi.filters import Decision, ProjectEntry
    from cas_mirror.pypi.model import ListedProject
    from cas_mirror.pypi.results import PlannedFile

    records = (NetworkSettings, DownloadJob, RetryPolicy, HostCondition, Decision,
               ProjectEntry, ListedProject, PlannedFile)
    assert not any(dataclasses.is_dataclass(r) for r in records)
    settings = NetworkSettings(workers=4)
    assert settings._replace(processes=1) == NetworkSettings(workers=4, processes=1)
    assert RetryPolicy(retries=3, backoff=1.0).delay(1) >= 0


def test_the_programs_run_with_a_collector_for_a_process_that_ends(monkeypatch):
    """cas-sync and cas-index (their console entry points, not `main` called in a longer
    process such as this one) collect the young generation rarely and freeze what is
    alive at the end, which the interpreter's last collection then skips."""
    import gc
    from pathlib import Path

    import cas_index.cli
    import cas_mirror.cli
    from cas_index import oneshot

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'cas-sync = "cas_mirror.cli:console"' in pyproject
    assert 'cas-index = "cas_index.cli:console"' in pyproject
    before = gc.get_threshold()
    seen = []
    try:
        for module in (cas_mirror.cli, cas_index.cli):
            monkeypatch.setattr(module, "main", lambda: seen.append(gc.get_threshold()) or 3)
            assert module.console() == 3
            assert gc.get_freeze_count() > 0
            gc.unfreeze()
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert [t[0] for t in seen] == [oneshot.YOUNG, oneshot.YOUNG]
