"""cas-installer's build side: a channel served by cas-server (repodata read by rattler,
packages fetched by the shared downloader, verified), packages that do not match their
repodata record, and where placeholders are found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cas_mirror.installer import cli
from cas_mirror.installer.prefix import apply_patch, binary_regions, find_patch, text_offsets
from tests.support import installer_packages as ip
from tests.support.cas_server import CasServer
from tests.support.installer_target import minimal_bin, run_installer


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    ip.build_channel(root / "internal-pkgs", [ip.python(), ip.tool(), ip.pyapp()])
    return root


def spec_for(folder: Path, channel: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(f"name: served\nversion: '2.0'\nchannels: [{channel}]\n"
                    "specs: [tool, pyapp]\nplatforms: [linux-64]\n"
                    "default_prefix: ~/served-env\n")
    return spec


def test_installer_from_a_channel_served_by_cas_server(mirror, tmp_path, run_cli):
    server = CasServer(mirror, tmp_path / "server")
    try:
        channel = f"{server.url}/internal-pkgs"
        spec = spec_for(tmp_path / "spec", channel)
        result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir",
                                    tmp_path / "cache"])
        assert result.code == 0, result.err
        installer = tmp_path / "out/served-2.0-linux-64.sh"
        assert f"{installer}: linux-64, 3 packages" in result.out
        log = server.wait_for_log("GET /internal-pkgs/noarch/pyapp-0.5-py_0.conda")
        assert "GET /internal-pkgs/linux-64/tool-1.0-0.conda" in log
        assert "GET /internal-pkgs/linux-64/repodata.json" in log
        # built again: the packages in the cache still match their records, none is fetched
        again = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir",
                                   tmp_path / "cache"])
        assert again.code == 0, again.err
        assert server.log().count("GET /internal-pkgs/linux-64/tool-1.0-0.conda") == 1
    finally:
        server.stop()
    # the target: no network (the server is gone), only sh, tar and coreutils
    home = tmp_path / "home"
    home.mkdir()
    installed = run_installer(minimal_bin(tmp_path / "bin"), installer, "-b", home=home)
    assert installed.returncode == 0, installed.stderr
    prefix = home / "served-env"  # default_prefix ~/served-env
    assert (prefix / ".condarc").read_text() == f"channels:\n  - {channel}\n"
    record = (prefix / "conda-meta/tool-1.0-0.json").read_text()
    assert f'"url": "{channel}/linux-64/tool-1.0-0.conda"' in record
    assert (prefix / "etc/tool.conf").read_text().startswith(f"prefix={prefix}\n")


def test_served_package_not_matching_its_record_writes_no_installer(mirror, tmp_path, run_cli,
                                                                     http_server):
    server = http_server(mirror)
    server.add_fault("*/tool-1.0-0.conda", body=b"not the package")
    spec = spec_for(tmp_path / "spec", f"{server.url}/internal-pkgs")
    result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c"])
    assert result.code == 1
    assert result.err.startswith("cas-installer: error: 1 package could not be fetched or "
                                 "verified, no installer written: ")
    assert "/internal-pkgs/linux-64/tool-1.0-0.conda" in result.err
    assert list((tmp_path / "out").iterdir()) == []


def test_local_package_not_matching_its_record_writes_no_installer(mirror, tmp_path, run_cli):
    channel = tmp_path / "copy"
    shutil.copytree(mirror / "internal-pkgs", channel)
    package = channel / "linux-64/tool-1.0-0.conda"
    data = bytearray(package.read_bytes())
    data[10] ^= 0xFF
    package.write_bytes(bytes(data))
    spec = spec_for(tmp_path / "spec", str(channel))
    result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c"])
    assert result.code == 1
    assert f"tool-1.0-0.conda: {package}: sha256 " in result.err
    assert list((tmp_path / "out").iterdir()) == []


def test_one_installer_per_platform(tmp_path, run_cli):
    data = ip.Package("data", subdir="noarch", files=[ip.File("share/data.txt", b"d\n")])
    ip.build_channel(tmp_path / "chan", [data])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: multi\nversion: '3'\nchannels: [{tmp_path / 'chan'}]\n"
                    "specs: [data]\nplatforms: [linux-64, osx-arm64]\n")
    result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c"])
    assert result.code == 0, result.err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["multi-3-linux-64.sh", "multi-3-osx-arm64.sh"]
    assert b"\nPLATFORM='osx-arm64'\n" in (tmp_path / "out/multi-3-osx-arm64.sh").read_bytes()


def test_disk_full_while_writing_leaves_no_installer(mirror, tmp_path, run_cli):
    from tests.support.mounts import Mounts

    mounts = Mounts()
    try:
        out = mounts.tmpfs(tmp_path / "small", 16 * 4096)
        spec = spec_for(tmp_path / "spec", str(mirror / "internal-pkgs"))
        result = run_cli(cli.main, [spec, "-o", out, "--cache-dir", tmp_path / "c"])
        assert result.code == 4, result.err
        assert "no space left while writing the installer; nothing written" in result.err
        assert os.listdir(out) == []
    finally:
        mounts.unmount_all()


def test_post_link_scripts_are_reported_not_run(tmp_path, run_cli):
    linked = ip.Package("linked", files=[ip.File("bin/.linked-post-link.sh", b"echo hi\n")])
    ip.build_channel(tmp_path / "chan", [linked])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: x\nversion: '1'\nchannels: [{tmp_path / 'chan'}]\n"
                    "specs: [linked]\nplatforms: [linux-64]\n")
    result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c"])
    assert result.code == 0, result.err
    assert ("linked-1.0-0.conda has bin/.linked-post-link.sh, which the installer does not "
            "run") in result.err


def test_reference_spec_documents_every_key_and_reads():
    from cas_mirror.installer.spec import KEYS, read_spec

    example = Path(__file__).parent.parent / "etc/installer-example.yaml"
    text = example.read_text()
    for key in KEYS:
        assert f"\n{key}:" in text or f"\n# {key}:" in text, key
    spec = read_spec(example, "linux-64")
    assert spec.installer_name("linux-64") == "my-installer-1.0-linux-64.sh"
    assert spec.specs == ("python 3.11.*", "conda")


# ---------------------------------------------------------------- placeholders


def test_text_offsets_are_every_occurrence():
    assert text_offsets(b"/ph/a /ph/b/ph", b"/ph") == [0, 6, 11]
    patch = find_patch("f", b"x=/ph/a\n", "/ph", "text")
    assert patch.line() == "t 3 2 f"
    assert apply_patch(b"x=/ph/a\n", patch, "/longer/prefix") == b"x=/longer/prefix/a\n"
    assert find_patch("f", b"nothing here", "/ph", "text") is None


def test_binary_regions_are_nul_terminated_strings_padded_to_their_length():
    data = b"\0A/ph/x:/ph/y\0B/ph\0/ph-no-nul"
    assert binary_regions(data, b"/ph") == [([2, 8], 13), ([15], 18)]
    patch = find_patch("lib/f", data, "/ph", "binary")
    assert patch.line() == "b 3 2+8:13,15:18 lib/f"
    out = apply_patch(data, patch, "/q")
    assert len(out) == len(data)
    assert out == b"\0A/q/x:/q/y\0\0\0B/q\0\0/ph-no-nul"
