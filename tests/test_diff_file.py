"""diff_append_epoch never replaces an earlier list: two runs in the same second get
NAME-<epoch> and NAME-<epoch>-2, through both syncs' real call paths."""

from __future__ import annotations

import pytest
import yaml

from cas_mirror import diff_file
from cas_mirror.cli import main
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.pypi_packages import SimpleUpstream

EPOCH = 1_700_000_000


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(diff_file.time, "time", lambda: EPOCH + 0.25)


def _conda_config(tmp_path, http_server, diffs):
    root = tmp_path / "upstream"
    build_channel(root / "pkgs/main", [PkgSpec("alpha", "1.0", subdir="linux-64")])
    server = http_server(root)
    return {"remote_url": server.url, "mirror_dir": str(tmp_path / "mirror"),
            "platforms": ["linux-64"], "minimum_free_space": 0, "retries": 0,
            "diff_file": str(diffs / "changed"), "diff_append_epoch": True}


def _pypi_config(tmp_path, http_server, diffs):
    up = SimpleUpstream(tmp_path / "upstream").serve(http_server(tmp_path / "upstream"))
    up.add("alpha", "1.0")
    return {"mirror_dir": str(tmp_path / "mirror"), "minimum_free_space": 0,
            "pypi": {"remote_url": up.url, "retries": 0, "diff_file": str(diffs / "changed"),
                     "diff_append_epoch": True}}


@pytest.mark.parametrize("command, make_config", [([], _conda_config),
                                                   (["pypi"], _pypi_config)],
                         ids=["conda", "pypi"])
def test_two_runs_in_one_second_keep_both_lists(tmp_path, http_server, isolated_config,
                                                run_cli, frozen_clock, command, make_config):
    diffs = tmp_path / "diffs"
    isolated_config.write_user(yaml.safe_dump(make_config(tmp_path, http_server, diffs)))
    first = run_cli(main, [*command, "--json"])
    assert first.code == 0, first
    written = sorted(p.name for p in diffs.iterdir())
    assert written == [f"changed-{EPOCH}"]
    first_list = (diffs / written[0]).read_text()
    assert first_list.count("\n") >= 2  # the files of the first run
    second = run_cli(main, [*command, "--json"])
    assert second.code == 0, second
    assert sorted(p.name for p in diffs.iterdir()) == [f"changed-{EPOCH}", f"changed-{EPOCH}-2"]
    assert (diffs / f"changed-{EPOCH}").read_text() == first_list  # not overwritten
    assert (diffs / f"changed-{EPOCH}-2").read_text() == ""  # nothing changed the second time
    third = run_cli(main, [*command, "--json"])
    assert third.code == 0, third
    assert (diffs / f"changed-{EPOCH}-3").exists()
    assert not [p for p in diffs.iterdir() if p.name.startswith(".")]  # no temporary left


def test_without_hard_links_a_name_is_claimed_with_o_excl(tmp_path, monkeypatch, frozen_clock):
    """Filesystems without hard links (some network and FUSE mounts) use O_EXCL."""
    import errno
    import os

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "changed"
    first = diff_file.write_diff_file(str(target), True, [tmp_path / "a"])
    second = diff_file.write_diff_file(str(target), True, [tmp_path / "b"])
    assert (first.name, second.name) == (f"changed-{EPOCH}", f"changed-{EPOCH}-2")
    assert first.read_text() == f"{tmp_path / 'a'}\n"
    assert second.read_text() == f"{tmp_path / 'b'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]
