"""The benchmarks' measuring of one run (scripts/benchlib.py): a child's peak memory is
its own, not the peak of the bench script that started it (Linux starts a forked
child's ru_maxrss at its parent's)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from benchlib import measure


def test_a_small_child_of_a_big_bench_process_reports_its_own_peak(tmp_path):
    held = bytearray(200 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # resident, not just reserved
    small = measure(["/bin/true"], tmp_path / "small")
    grows = "x = bytearray(120 * 2**20); x[::4096] = b'1' * len(x[::4096]); raise SystemExit(3)"
    big = measure([sys.executable, "-c", grows], tmp_path / "big")
    assert small.returncode == 0 and small.peak_mb < 50, small
    assert big.returncode == 3 and 120 < big.peak_mb < 200, big
    assert big.cpu > 0 and big.wall > 0 and held


def test_a_killed_child_reports_its_signal(tmp_path):
    assert measure(["sh", "-c", "kill -9 $$"], tmp_path / "killed").returncode == -9
