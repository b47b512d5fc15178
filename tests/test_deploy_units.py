"""The deployment files in etc/ agree with the README's "Production install": the program
(a venv) outside the served tree, the data in mirror_dir, the sync user writing and the
server only reading; and systemd accepts the units as written."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
ETC = PROJECT / "etc"
PROGRAM = "/usr/local/lib/cas-mirror"  # the venv
DATA = "/srv/cas-mirror"  # mirror_dir
UNITS = sorted((ETC / "systemd").glob("*.service")) + sorted((ETC / "systemd").glob("*.timer"))


def service(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser["Service"]


def production_section() -> str:
    readme = (PROJECT / "README.md").read_text()
    return readme.split("## Production install", 1)[1].split("\n## ", 1)[0]


def test_the_program_lives_outside_the_served_tree():
    assert not PROGRAM.startswith(DATA + "/") and not DATA.startswith(PROGRAM + "/")
    section = production_section()
    assert f"python3 -m venv {PROGRAM}" in section
    assert f"mirror_dir: {DATA}" in section
    for path in (*UNITS, ETC / "cron.d-cas-mirror", ETC / "nginx.conf"):
        assert "/opt/cas-mirror/venv" not in path.read_text(), path


def test_units_run_the_program_from_its_venv_as_the_readme_says():
    for path in (ETC / "systemd").glob("*.service"):
        assert service(path)["ExecStart"].startswith(f"{PROGRAM}/bin/cas-"), path


def test_the_sync_user_writes_and_the_server_only_reads():
    for name in ("cas-sync.service", "cas-sync-pypi.service"):
        unit = service(ETC / "systemd" / name)
        assert unit["User"] == "cas-mirror" and unit["UMask"] == "0022"  # world-readable files
    server = service(ETC / "systemd" / "cas-server.service")
    assert "User" not in server and server["DynamicUser"] == "yes"  # a user that owns nothing
    assert server["ProtectSystem"] == "strict" and "ReadWritePaths" not in server
    assert f"--root {DATA} " in server["ExecStart"] + " "
    assert f"    root {DATA};" in (ETC / "nginx.conf").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    # the program folder of a test install: the units' executables must exist
    program = tmp_path / "lib" / "cas-mirror"
    (program / "bin").mkdir(parents=True)
    for name in ("cas-sync", "cas-server"):
        (program / "bin" / name).write_text("#!/bin/sh\nexit 0\n")
        (program / "bin" / name).chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for path in UNITS:
        (units / path.name).write_text(path.read_text().replace(PROGRAM, str(program)))
    result = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, units.iterdir()))],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no unknown keys, no bad values
