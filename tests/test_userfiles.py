"""Files the user names are read with a bound (cas_mirror/userfiles.py): a path to
something that never ends (`/dev/zero`) or a file far past any real one is one line and
exit status 2, never a run that reads until memory runs out; a pipe still works. Also:
bandersnatch's requirements file that is not UTF-8 is one line, not an internal error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cas_mirror.cli import main
from cas_mirror.installer import cli as installer_cli
from cas_mirror.userfiles import read_text
from tests.support.conda_packages import PkgSpec, build_channel

ENDLESS = "/dev/zero"
pytestmark = pytest.mark.skipif(not Path(ENDLESS).exists(), reason="no /dev/zero")


def one_line_error(result, prog: str, *fragments: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    assert result.err.startswith(f"{prog}: error: ")
    assert len(result.err.strip().splitlines()) == 1, result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


def test_an_endless_configuration_file_is_refused(run_cli, isolated_config):
    one_line_error(run_cli(main, ["-f", ENDLESS, "--show"]), "cas-sync", ENDLESS,
                   "larger than 8 MiB")


def test_a_configuration_far_too_large_is_refused(run_cli, isolated_config, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (8 << 20) + "\nworkers: 3\n")
    one_line_error(run_cli(main, ["-f", big, "--show"]), "cas-sync", str(big),
                   "larger than 8 MiB")


def test_a_configuration_from_a_pipe_is_read(run_cli, isolated_config):
    reader, writer = os.pipe()
    os.write(writer, b"workers: 3\n")
    os.close(writer)
    try:
        result = run_cli(main, ["-f", f"/dev/fd/{reader}", "--show"])
    finally:
        os.close(reader)
    assert result.code == 0, result
    assert any(line.startswith("workers: 3") for line in result.out.splitlines()), result.out


@pytest.mark.parametrize("content, fragment", [
    (ENDLESS, "cannot read it (larger than 64 MiB: not a file of this kind; refusing it)"),
    (None, "cannot read it (no such file or directory)"),
    (b"\xff\xfeversion: 6\n", "not UTF-8 text (byte 0)"),
], ids=["endless", "missing", "not-utf8"])
def test_a_lockfile_that_cannot_be_read_is_one_line(run_cli, isolated_config, tmp_path,
                                                    content, fragment):
    isolated_config.write_user(f"mirror_dir: {tmp_path / 'mirror'}\nremote_url: "
                               "http://127.0.0.1:9\nplatforms: [linux-64]\n")
    path = ENDLESS if content == ENDLESS else tmp_path / "pixi.lock"
    if isinstance(content, bytes):
        path.write_bytes(content)
    one_line_error(run_cli(main, ["--from-lock", path, "--dry-run"]), "cas-sync",
                   f"lockfile {path}: {fragment}")


def test_an_endless_bandersnatch_configuration_is_refused(run_cli, isolated_config):
    one_line_error(run_cli(main, ["pypi", "--show", "--bandersnatch-config", ENDLESS]),
                   "cas-sync", ENDLESS, "larger than 8 MiB")


@pytest.mark.parametrize("content, fragment", [
    (None, "larger than 8 MiB"),
    (b"flask==3.0\n\xff\xfe\n", "is not UTF-8 text (byte 11)"),
], ids=["endless", "not-utf8"])
def test_bandersnatch_requirements_files_are_read_with_care(run_cli, isolated_config,
                                                            tmp_path, content, fragment):
    folder = tmp_path / "reqs"
    folder.mkdir()
    if content is None:
        (folder / "requirements.txt").symlink_to(ENDLESS)
    else:
        (folder / "requirements.txt").write_bytes(content)
    conf = tmp_path / "bandersnatch.conf"
    conf.write_text(f"[mirror]\ndirectory = {tmp_path / 'srv'}\nmaster = "
                    "https://pypi.example.invalid\nworkers = 3\n\n[plugins]\nenabled =\n"
                    f"    allowlist_project\n\n[allowlist]\nrequirements_path = {folder}\n"
                    "requirements =\n    requirements.txt\n")
    one_line_error(run_cli(main, ["pypi", "--show", "--bandersnatch-config", conf]),
                   "cas-sync", "requirements.txt", fragment)


def test_an_endless_installer_license_is_refused(run_cli, tmp_path):
    channel = tmp_path / "chan"
    build_channel(channel, [PkgSpec("p", subdir="linux-64")])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: x\nversion: 1\nchannels: [{channel}]\nspecs: [p]\n"
                    f"license_file: {ENDLESS}\n")
    result = run_cli(installer_cli.main, [spec, "-o", tmp_path / "out", "--cache-dir",
                                          tmp_path / "cache"])
    one_line_error(result, "cas-installer", "license_file", "larger than 8 MiB")


def test_the_bound_counts_characters_and_keeps_newlines_as_open_reads_them(tmp_path):
    path = tmp_path / "f"
    path.write_bytes("é\r\nb".encode())
    assert read_text(path, limit=4) == "é\nb"
    with pytest.raises(OSError, match="larger than 0 MiB"):
        read_text(path, limit=2)
