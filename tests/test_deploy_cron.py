"""etc/cron.d-cas-mirror: each documented cron line, run as cron runs it (`/bin/sh -c`), logs
to syslog and still lets cron mail and monitoring see a failure.

`cas-sync` and `logger` are fakes on PATH (a run that fails with a chosen status, and a
syslog that is a file); `cas-mirror-log` is etc/cas-mirror-log, installed as the file
says. The command text is taken from the file verbatim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CRON_FILE = PROJECT / "etc" / "cron.d-cas-mirror"
WRAPPER = PROJECT / "etc" / "cas-mirror-log"

FAKE_CAS_SYNC = """#!/bin/sh
echo "cas-sync: summary line on stdout ($*)"
if [ "$FAKE_STATUS" -ne 0 ]; then
    echo "cas-sync: error: upstream https://example.invalid unreachable" >&2
fi
exit "$FAKE_STATUS"
"""
FAKE_LOGGER = """#!/bin/sh
# logger -t TAG [MESSAGE...]: a line per message, or per line of stdin
[ "$1" = "-t" ] || exit 64
tag=$2
shift 2
if [ "$#" -gt 0 ]; then
    echo "$tag: $*" >> "$FAKE_SYSLOG"
else
    while IFS= read -r line; do echo "$tag: $line" >> "$FAKE_SYSLOG"; done
fi
exit "${FAKE_LOGGER_STATUS:-0}"
"""


def cron_file() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(variables, [(user, command)]) of the cron file's active lines."""
    variables, jobs = {}, []
    for line in CRON_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if equals and " " not in name.strip():
            variables[name.strip()] = value.strip()
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, line
        jobs.append((fields[5], fields[6]))
    return variables, jobs


@pytest.fixture
def fake_bin(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("cas-sync", FAKE_CAS_SYNC), ("logger", FAKE_LOGGER)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    shutil.copy(WRAPPER, folder / "cas-mirror-log")  # install -m 0755, as the file says
    (folder / "cas-mirror-log").chmod(0o755)
    return folder


def run_job(command: str, fake_bin: Path, tmp_path: Path, status: int,
            logger_status: int = 0) -> tuple[subprocess.CompletedProcess, str]:
    syslog = tmp_path / "syslog"
    syslog.write_text("")
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "FAKE_STATUS": str(status), "FAKE_SYSLOG": str(syslog),
           "FAKE_LOGGER_STATUS": str(logger_status)}
    variables, _ = cron_file()
    proc = subprocess.run([variables.get("SHELL", "/bin/sh"), "-c", command], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return proc, syslog.read_text()


def test_the_cron_file_agrees_with_the_install():
    variables, jobs = cron_file()
    assert [user for user, _ in jobs] == ["cas-mirror", "cas-mirror"]
    assert all(command.startswith("cas-mirror-log ") for _, command in jobs)
    assert "| logger" not in CRON_FILE.read_text()  # the pipe that lost the status
    # the program's venv (cas-sync) and where the wrapper is installed are on cron's PATH
    path = variables["PATH"].split(":")
    assert "/usr/local/lib/cas-mirror/bin" in path and "/usr/local/bin" in path
    assert os.access(WRAPPER, os.X_OK)


@pytest.mark.parametrize("status", [1, 2, 4])
def test_a_failing_run_reaches_syslog_cron_mail_and_the_exit_status(fake_bin, tmp_path,
                                                                   status):
    _, jobs = cron_file()
    for _, command in jobs:
        proc, syslog = run_job(command, fake_bin, tmp_path, status)
        tag = command.split()[1]
        assert proc.returncode == status, (command, proc)
        error = "cas-sync: error: upstream https://example.invalid unreachable"
        assert f"{tag}: {error}" in syslog.splitlines()  # syslog, under the job's tag
        assert error in proc.stderr.splitlines()  # cron mails what a job prints
        assert f"exited with status {status}" in proc.stderr
        assert f"exited with status {status}" in syslog


def test_a_good_run_is_logged_and_silent(fake_bin, tmp_path):
    _, jobs = cron_file()
    for _, command in jobs:
        proc, syslog = run_job(command, fake_bin, tmp_path, 0)
        assert proc.returncode == 0, proc
        assert proc.stdout == "" and proc.stderr == ""  # nothing for cron to mail
        assert "summary line on stdout" in syslog


def test_when_logging_fails_the_output_still_reaches_cron(fake_bin, tmp_path):
    _, jobs = cron_file()
    command = jobs[0][1]
    proc, _ = run_job(command, fake_bin, tmp_path, 0, logger_status=1)
    assert proc.returncode == 1
    assert "logger -t cas-sync failed" in proc.stderr and "summary line" in proc.stderr
    proc, _ = run_job(command, fake_bin, tmp_path, 3, logger_status=1)
    assert proc.returncode == 3 and "upstream https://example.invalid" in proc.stderr
