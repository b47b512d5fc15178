"""cas-installer end to end: real packages (text and binary placeholders, paths.json and
has_prefix, a symlink, a read-only file, noarch: python with an entry point) solved with
rattler, built into an installer, and installed with PATH holding only sh, tar and
coreutils; py-rattler then reads the prefix's conda-meta records."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cas_mirror.installer import cli
from cas_mirror.installer.prefix import apply_patch, find_patch
from tests.support import installer_packages as ip
from tests.support.installer_target import NOBODY, minimal_bin, no_stray_files, run_installer

PACKAGES = {"python-3.11.4-0", "tool-1.0-0", "legacy-2.0-0", "pyapp-0.5-py_0"}


def build_installer(spec_dir: Path, channels: list[str], out: Path, *, specs="tool, legacy, pyapp",
                    version: str = "1.0", license_text: str | None = None) -> Path:
    spec_dir.mkdir(parents=True, exist_ok=True)
    lines = [(f"name: demo\nversion: {version}\nchannels: [{', '.join(channels)}]\n"
              f"specs: [{specs}]\nplatforms: [linux-64]\n")]
    if license_text is not None:
        (spec_dir / "LICENSE.txt").write_text(license_text)
        lines.append("license_file: LICENSE.txt\n")
    spec = spec_dir / "spec.yaml"
    spec.write_text("".join(lines))
    code = cli.main([str(spec), "-o", str(out), "--cache-dir", str(spec_dir / "cache"), "-q"])
    assert code == 0
    return out / f"demo-{version}-linux-64.sh"


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory) -> Path:
    return minimal_bin(tmp_path_factory.mktemp("target") / "bin")


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("channels") / "chan"
    ip.build_channel(root, [ip.python(), ip.tool(), ip.legacy(), ip.pyapp()])
    return root


@pytest.fixture(scope="module")
def installer(channel: Path, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("build")
    return build_installer(work / "spec", [str(channel)], work / "out",
                           license_text="Be nice to the mirror.\n")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def posix_dd_bin(target_bin: Path, tmp_path_factory) -> Path:
    """The target's tools, with a dd that takes no byte offsets (iflag=skip_bytes is
    GNU's; busybox and BSD dd lack it): the installer must fall back to tail | head."""
    folder = tmp_path_factory.mktemp("posix-dd") / "bin"
    shutil.copytree(target_bin, folder, symlinks=True)
    (folder / "dd").unlink()
    (folder / "dd").write_text(f"#!{target_bin}/sh\ncase \"$*\" in *iflag*) exit 1 ;; esac\n"
                               f"exec {target_bin}/dd \"$@\"\n")
    (folder / "dd").chmod(0o755)
    return folder


@pytest.mark.parametrize("tools", ["coreutils", "posix-dd"])
def test_installs_with_only_sh_tar_and_coreutils(installer: Path, target_bin: Path,
                                                 posix_dd_bin: Path, home: Path, tools: str):
    import rattler

    prefix = home / "envs" / "demo"
    bin_dir = target_bin if tools == "coreutils" else posix_dd_bin
    result = run_installer(bin_dir, installer, "-b", "-p", str(prefix), home=home)
    assert result.returncode == 0, result.stderr
    assert f"installed demo 1.0 into {prefix}" in result.stdout
    new = str(prefix)
    ph = ip.LONG_PLACEHOLDER

    # text mode: every occurrence replaced, the file's length changes
    assert (prefix / "etc/tool.conf").read_text() == \
        f"prefix={new}\nlib={new}/lib\n# \ndata={new}/share/tool\n"
    assert (prefix / "bin/tool").read_text().startswith(f"#!{new}/bin/python\n")
    assert os.access(prefix / "bin/tool", os.X_OK)
    assert (prefix / "etc/readonly.conf").read_text() == f"root={new}\n"
    assert (prefix / "etc/readonly.conf").stat().st_mode & 0o777 == 0o444
    # binary mode: NUL-padded strings, same length, the string without NUL untouched
    blob = ip.binary_blob(ph)
    patched = (prefix / "lib/libtool.so").read_bytes()
    assert len(patched) == len(blob)
    assert patched == apply_patch(blob, find_patch("x", blob, ph, "binary"), new)
    assert (new + "/lib\0").encode() in patched
    assert f"RPATH={new}/lib:{new}/lib64\0".encode() in patched
    assert patched.endswith(ph.encode())  # no NUL after it: left alone, as conda does
    assert os.readlink(prefix / "lib/libtool.so.1") == "libtool.so"
    # an old package: info/has_prefix, the default placeholder in text mode, and binary
    assert (prefix / "etc/legacy.cfg").read_text() == f"home={new}/legacy\n"
    legacy = (prefix / "lib/liblegacy.so").read_bytes()
    assert len(legacy) == len(blob) and (new + "/lib\0").encode() in legacy
    # noarch: python relocated for the solved python, entry point with the prefix
    site = prefix / "lib/python3.11/site-packages/pyapp"
    assert (site / "cli.py").read_text() == "def main():\n    return 0\n"
    assert (prefix / "bin/pyapp-helper").exists() and not (prefix / "site-packages").exists()
    entry = (prefix / "bin/pyapp").read_text()
    assert entry.startswith(f"#!{new}/bin/python\n") and "from pyapp.cli import main" in entry
    # byte-compiled with the environment's own python (here a stand-in that records)
    called = (prefix / "python-called").read_text().splitlines()
    assert called[0] == "-m compileall -q -i -"
    assert set(called[1:]) == {"lib/python3.11/site-packages/pyapp/__init__.py",
                               "lib/python3.11/site-packages/pyapp/cli.py"}
    # conda-meta: one record per package that py-rattler reads as installed
    records = {p.stem: rattler.PrefixRecord.from_path(p)
               for p in (prefix / "conda-meta").glob("*.json")}
    assert set(records) == PACKAGES
    tool = records["tool-1.0-0"]
    assert tool.requested_spec == "tool"
    assert sorted(map(str, tool.files)) == sorted([
        "etc/tool.conf", "bin/tool", "etc/readonly.conf", "lib/libtool.so",
        "lib/libtool.so.1", "share/tool/1.0.txt"])
    modes = {str(e.relative_path): str(e.file_mode) for e in tool.paths_data.paths}
    assert "binary" in modes["lib/libtool.so"] and "text" in modes["etc/tool.conf"]
    assert "bin/pyapp" in map(str, records["pyapp-0.5-py_0"].files)
    history = (prefix / "conda-meta/history").read_text()
    assert history.startswith("==> ") and "::tool-1.0-0\n" in history
    # nothing left beside the prefix, no control files inside it
    assert no_stray_files(prefix.parent, {"demo"}) == []
    assert not (prefix / "control").exists() and not (prefix / ".cas-installer-patch").exists()


def test_rattler_takes_the_prefix_as_installed(installer, channel, target_bin, home,
                                               tmp_path):
    """rattler, given the prefix's records as what is installed, changes none of them and
    adds only the package that is new, as in any conda environment."""
    import asyncio

    import rattler

    prefix = home / "env"
    assert run_installer(target_bin, installer, "-b", "-p", str(prefix),
                         home=home).returncode == 0
    installed = [rattler.PrefixRecord.from_path(p) for p in (prefix / "conda-meta").glob("*.json")]
    before = {p.name: p.stat().st_mtime_ns for p in (prefix / "conda-meta").glob("*.json")}
    extra_channel = tmp_path / "extra"
    ip.build_channel(extra_channel, [ip.Package("extra", files=[ip.File("share/extra", b"e")])])

    async def add_extra() -> None:
        gateway = rattler.Gateway(cache_dir=tmp_path / "rattler")
        records = await rattler.solve([str(channel), str(extra_channel)],
                                      ["tool", "legacy", "pyapp", "extra"], gateway=gateway,
                                      platforms=["linux-64", "noarch"], virtual_packages=[],
                                      locked_packages=installed)
        await rattler.install(records, prefix, cache_dir=tmp_path / "rattler-pkgs",
                              installed_packages=installed, show_progress=False)

    asyncio.run(add_extra())
    after = {p.name: p.stat().st_mtime_ns for p in (prefix / "conda-meta").glob("*.json")}
    assert set(after) == set(before) | {"extra-1.0-0.json"}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert (prefix / "share/extra").read_bytes() == b"e"
    assert (prefix / "etc/tool.conf").read_text().startswith(f"prefix={prefix}\n")


def test_read_only_files_are_patched_by_an_unprivileged_user(installer):
    """Without root, a read-only file with a placeholder (0444 in the package) must be
    made writable to patch it, then read-only again."""
    base = Path(tempfile.mkdtemp(prefix="cas-installer-nobody-"))
    try:
        base.chmod(0o755)
        copy = base / installer.name
        shutil.copy(installer, copy)
        home = base / "home"
        home.mkdir()
        if os.geteuid() == 0:
            os.chown(home, NOBODY, NOBODY)
        result = run_installer(minimal_bin(base / "bin"), copy, "-b", "-p", str(home / "env"),
                               home=home, as_nobody=True)
        assert result.returncode == 0, result.stderr
        conf = home / "env/etc/readonly.conf"
        assert conf.read_text() == f"root={home}/env\n"
        assert conf.stat().st_mode & 0o777 == 0o444
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base)


def test_prefix_longer_than_binary_placeholders_is_refused(installer, target_bin, home):
    prefix = home / ("p" * 300)
    result = run_installer(target_bin, installer, "-b", "-p", str(prefix), home=home)
    assert result.returncode == 2
    assert "is too long" in result.stderr and "at most 255" in result.stderr
    assert no_stray_files(home, set()) == []


def test_corrupt_or_truncated_installer_installs_nothing(installer, target_bin, home):
    data = bytearray(installer.read_bytes())
    data[-100] ^= 0xFF
    corrupt = home.parent / "corrupt.sh"
    corrupt.write_bytes(bytes(data))
    truncated = home.parent / "truncated.sh"
    truncated.write_bytes(installer.read_bytes()[:-5000])
    for bad in (corrupt, truncated):
        result = run_installer(target_bin, bad, "-b", "-p", str(home / "env"), home=home)
        assert result.returncode == 1, result.stderr
        assert "corrupt or truncated" in result.stderr and "nothing installed" in result.stderr
        assert no_stray_files(home, set()) == []


def test_checksum_with_shasum_where_there_is_no_sha256sum(installer, target_bin, home,
                                                         tmp_path):
    """macOS has shasum, not coreutils' sha256sum: the check uses it, and still refuses a
    corrupt file."""
    mac = tmp_path / "mac-bin"
    shutil.copytree(target_bin, mac, symlinks=True)
    (mac / "sha256sum").unlink()
    (mac / "shasum").symlink_to(shutil.which("shasum"))
    data = bytearray(installer.read_bytes())
    data[-100] ^= 0xFF
    corrupt = tmp_path / "corrupt.sh"
    corrupt.write_bytes(bytes(data))
    result = run_installer(mac, corrupt, "-b", "-p", str(home / "env"), home=home)
    assert result.returncode == 1 and "corrupt or truncated" in result.stderr
    result = run_installer(mac, installer, "-b", "-p", str(home / "env"), home=home)
    assert result.returncode == 0, result.stderr
    (mac / "shasum").unlink()
    result = run_installer(mac, installer, "-b", "-p", str(home / "env2"), home=home)
    assert result.returncode == 2 and "neither sha256sum (coreutils) nor shasum" in result.stderr


def test_killed_while_patching_leaves_nothing(installer, target_bin, home, tmp_path):
    """SIGTERM in the middle of the placeholder rewrite (from a dd that kills the
    installer's shell): the temporary folder is removed, no prefix appears."""
    killing = tmp_path / "killing-bin"
    shutil.copytree(target_bin, killing, symlinks=True)
    (killing / "dd").unlink()
    (killing / "dd").write_text(f"#!{target_bin}/sh\nkill -TERM $PPID\nexit 1\n")
    (killing / "dd").chmod(0o755)
    result = run_installer(killing, installer, "-b", "-p", str(home / "env"), home=home)
    assert result.returncode == 143, result.stderr
    assert no_stray_files(home, set()) == []


def test_existing_prefix_without_u_is_refused(installer, target_bin, home):
    prefix = home / "env"
    prefix.mkdir()
    (prefix / "mine.txt").write_text("keep")
    result = run_installer(target_bin, installer, "-b", "-p", str(prefix), home=home)
    assert result.returncode == 2
    assert "already exists; use -u" in result.stderr
    assert os.listdir(prefix) == ["mine.txt"] and no_stray_files(home, {"env"}) == []


def test_license_refused_installs_nothing(installer, target_bin, home):
    result = run_installer(target_bin, installer, answers="no\n", home=home)
    assert "Be nice to the mirror." in result.stdout
    assert result.returncode == 1 and "license was not accepted" in result.stderr
    assert no_stray_files(home, set()) == []


def test_license_accepted_then_default_prefix(installer, target_bin, home):
    result = run_installer(target_bin, installer, answers="yes\n\n", home=home)
    assert result.returncode == 0, result.stderr
    assert f"will be installed into: {home}/demo" in result.stdout
    assert (home / "demo/conda-meta/tool-1.0-0.json").is_file()
    result = run_installer(target_bin, installer, answers="YES\n~/chosen\n", home=home)
    assert result.returncode == 0, result.stderr
    assert (home / "chosen/etc/tool.conf").read_text().startswith(f"prefix={home}/chosen\n")


def test_relative_prefix_is_made_absolute_and_plain(installer, target_bin, home):
    (home / "real").mkdir()
    (home / "link").symlink_to("real")
    result = run_installer(target_bin, installer, "-b", "-p", "link/sub/../env/", home=home)
    assert result.returncode == 0, result.stderr
    prefix = home / "real/env"
    assert f"installed demo 1.0 into {prefix}\n" in result.stdout
    assert (prefix / "etc/tool.conf").read_text().startswith(f"prefix={prefix}\n")


def test_help_and_bad_option(installer, target_bin, home):
    result = run_installer(target_bin, installer, "-h", home=home)
    assert result.returncode == 0 and "-u " in result.stdout and "-p PREFIX" in result.stdout
    result = run_installer(target_bin, installer, "-x", home=home)
    assert result.returncode == 2 and "usage:" in result.stderr
    assert no_stray_files(home, set()) == []


def test_failure_while_unpacking_leaves_prefix_untouched(installer, target_bin, home, tmp_path):
    """tar unpacks everything, then fails: nothing appears, no temporary folder stays."""
    broken = tmp_path / "broken-bin"
    shutil.copytree(target_bin, broken, symlinks=True)
    (broken / "tar").unlink()
    (broken / "tar").write_text(f"#!{target_bin}/sh\n{shutil.which('tar')} \"$@\"\nexit 1\n")
    (broken / "tar").chmod(0o755)
    result = run_installer(broken, installer, "-b", "-p", str(home / "env"), home=home)
    assert result.returncode == 3 and "nothing installed" in result.stderr
    assert no_stray_files(home, set()) == []


@pytest.fixture(scope="module")
def update_installer(tmp_path_factory) -> Path:
    """tool 2.0 (a file of 1.0 gone, another added), for -u."""
    work = tmp_path_factory.mktemp("update")
    root = work / "chan2"
    ip.build_channel(root, [ip.python(), ip.tool("2.0", extra="two")])
    return build_installer(work / "spec", [str(root)], work / "out", specs="tool",
                           version="2.0")


def test_update_replaces_the_packages_it_holds(installer, update_installer, target_bin, home):
    prefix = home / "env"
    assert run_installer(target_bin, installer, "-b", "-p", str(prefix),
                         home=home).returncode == 0
    (prefix / "mine.txt").write_text("kept")
    result = run_installer(target_bin, update_installer, "-b", "-u", "-p", str(prefix),
                           home=home)
    assert result.returncode == 0, result.stderr
    records = {p.stem for p in (prefix / "conda-meta").glob("*.json")}
    assert records == PACKAGES - {"tool-1.0-0"} | {"tool-2.0-0"}
    assert not (prefix / "share/tool/1.0.txt").exists()  # listed by the old record
    assert (prefix / "share/tool/2.0.txt").read_text() == "tool 2.0\n"
    assert (prefix / "etc/tool.conf").read_text().startswith(f"prefix={prefix}\n")
    assert "# two" in (prefix / "etc/tool.conf").read_text()
    assert (prefix / "mine.txt").read_text() == "kept"  # not a package file: stays
    assert (prefix / "etc/legacy.cfg").is_file()  # another package: stays
    assert (prefix / "conda-meta/history").read_text().count("==> ") == 2
    assert no_stray_files(home, {"env"}) == []


def test_update_killed_between_renames_is_repaired(installer, update_installer, target_bin,
                                                   home):
    """A run killed after setting the old prefix aside: the next run puts it back first."""
    prefix = home / "env"
    assert run_installer(target_bin, installer, "-b", "-p", str(prefix),
                         home=home).returncode == 0
    prefix.rename(home / ".env.cas-installer-old")
    result = run_installer(target_bin, update_installer, "-b", "-u", "-p", str(prefix),
                           home=home)
    assert result.returncode == 0, result.stderr
    assert "interrupted update" in result.stderr
    assert (prefix / "conda-meta/tool-2.0-0.json").is_file()
    assert (prefix / "conda-meta/legacy-2.0-0.json").is_file()
    assert no_stray_files(home, {"env"}) == []
