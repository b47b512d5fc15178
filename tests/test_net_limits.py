"""More `workers` than the open-files limit allows (cas_mirror/net/limits.py): the download
raises its soft limit toward the hard one, then runs as many transfers as fit, instead of
failing files or ending in an internal error ("Too many open files"). Real syncs in a
process started under a low `ulimit -n`, against a loopback upstream."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.conda_packages import PkgSpec, build_channel

BIN = Path(sys.executable).parent
FILES = 80


def limited(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def upstream(tmp_path, isolated_config, http_server):
    root = tmp_path / "upstream"
    build_channel(root / "pkgs/main", [PkgSpec(f"p{i:02d}", subdir="linux-64")
                                       for i in range(FILES)])
    server = http_server(root)
    isolated_config.write_user(yaml.safe_dump({
        "remote_url": server.url, "mirror_dir": str(tmp_path / "mirror"),
        "platforms": ["linux-64"], "retries": 0, "timeout": 10, "minimum_free_space": 0}))
    return tmp_path / "mirror/pkgs/main/linux-64"


def test_a_sync_asking_more_workers_than_files_allow_mirrors_everything(upstream):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 64:
        pytest.skip("this machine's hard open-files limit is below 64")
    done = subprocess.run([str(BIN / "cas-sync"), "--workers", "300", "--json"],
                          capture_output=True, text=True, check=False, timeout=300,
                          preexec_fn=limited(64, 64))
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr and "Too many open files" not in done.stdout
    assert json.loads(done.stdout)["exit_status"] == 0
    assert len(list(upstream.glob("*.conda"))) == FILES


PROBE = ("import resource, sys\nfrom cas_mirror.net.limits import transfers_allowed\n"
         "got = transfers_allowed(int(sys.argv[1]))\n"
         "print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")


def probe(wanted: int, soft: int, hard: int) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(wanted)], capture_output=True,
                          text=True, check=True, timeout=60, preexec_fn=limited(soft, hard))
    got, now = map(int, done.stdout.split())
    return got, now


def test_the_soft_limit_is_raised_as_far_as_needed():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if ceiling < 300:
        pytest.skip("this machine's hard open-files limit is below 300")
    wanted = (ceiling - 200) // 3  # fits under the ceiling, far above a soft limit of 64
    got, soft = probe(wanted, 64, ceiling)
    assert got == wanted
    assert 3 * wanted < soft < ceiling  # what they need, not all the hard limit allows


def test_within_a_hard_limit_as_many_transfers_as_fit():
    got, soft = probe(500, 64, 64)
    assert soft == 64
    assert 1 <= got <= 10
    assert probe(2, 64, 64)[0] == 2  # a few fit: nothing is taken away
