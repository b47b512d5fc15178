"""cas-installer's spec file: each mistake is one line naming the file, the line and the
key, exit status 2, nothing built; the seed's spec reads as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas_mirror.installer import cli
from cas_mirror.installer.spec import read_spec
from tests.support import installer_packages as ip


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spec-channel") / "chan"
    ip.build_channel(root, [ip.python()])
    return root


def write_spec(folder: Path, text: str) -> Path:
    spec = folder / "my-installer.yaml"
    spec.write_text(text)
    return spec


def test_seed_spec_reads_as_written(tmp_path: Path):
    (tmp_path / "my-license.txt").write_text("terms\n")
    spec = read_spec(write_spec(tmp_path, (
        "name: my-installer\nversion: 1.10\n"
        "channels: [ http://repo.example.invalid/pkgs/free/ ]\n"
        "specs: [python, conda]\nlicense_file: my-license.txt\n")), "linux-64")
    assert spec.version == "1.10"  # as written, not YAML's float 1.1
    assert spec.installer_name("linux-64") == "my-installer-1.10-linux-64.sh"
    assert [c.url for c in spec.channels] == ["http://repo.example.invalid/pkgs/free"]
    assert spec.platforms == ("linux-64",) and spec.default_prefix == "$HOME/my-installer"
    assert spec.license_text == "terms\n"


def test_the_license_is_read_once(tmp_path: Path, monkeypatch):
    # it was read to check it, then again for the spec: a file replaced in between
    # gave an installer whose license was not the one checked (or, gone, a traceback)
    from cas_mirror.installer import spec as spec_module

    license_file = tmp_path / "my-license.txt"
    license_file.write_text("terms\n")
    reads = []
    real = spec_module.read_text

    def counted(path, *args, **kwargs):
        if Path(path) == license_file:
            reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(spec_module, "read_text", counted)
    spec = read_spec(write_spec(tmp_path, (
        "name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\nlicense_file: my-license.txt\n"
    ).replace("CHAN", "http://repo.example.invalid/c")), "linux-64")
    assert spec.license_text == "terms\n" and spec.license_file == license_file
    assert len(reads) == 1


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nversion: 1\nchanels: [a]\nspecs: [p]\n",
     "line 3: unknown key 'chanels' (did you mean 'channels'?)"),
    ("name: x\nversion: 1\nchannels: [CHAN]\n", "missing key 'specs'"),
    ("name: x\nversion: [1]\nchannels: [CHAN]\nspecs: [p]\n",
     "line 2: key 'version': expected a version such as 1.0"),
    ("name: my installer\nversion: 1\nchannels: [CHAN]\nspecs: [p]\n",
     "line 1: key 'name': expected a name of letters"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: ['python >=<3']\n",
     "line 4: key 'specs': item 1: 'python >=<3' is not a conda match spec"),
    ("name: x\nversion: 1\nchannels: [CHAN, no-such-folder]\nspecs: [p]\n",
     "line 3: key 'channels': item 2: 'no-such-folder' is neither an http(s) URL nor"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\nplatforms: [win-64]\n",
     "line 5: key 'platforms': item 1: platform 'win-64' not allowed (a .sh installer runs"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\nplatforms: [linux64]\n",
     "item 1: platform 'linux64' not allowed (did you mean 'linux-64'?)"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\nlicense_file: nope.txt\n",
     "line 5: key 'license_file': license file"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\ninstaller_type: pkg\n",
     "line 5: key 'installer_type': expected one of sh, got 'pkg'"),
    ("name: x\nversion: 1\nchannels: [CHAN]\nspecs: [p]\ndefault_prefix: opt/x\n",
     "line 5: key 'default_prefix': expected an absolute folder path"),
    ("name: x\nname: y\n", "line 2, column 1: malformed YAML: duplicate key 'name'"),
    ("- name\n", "line 1: the file is a list"),
])
def test_mistakes_name_file_line_and_key(tmp_path, channel, run_cli, text, message):
    spec = write_spec(tmp_path, text.replace("CHAN", str(channel)))
    result = run_cli(cli.main, [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c"])
    assert result.code == 2, result.err
    assert result.err.startswith(f"cas-installer: error: {spec}")
    assert message in result.err
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


def test_missing_spec_file(tmp_path, run_cli):
    result = run_cli(cli.main, [tmp_path / "nope.yaml"])
    assert result.code == 2
    assert result.err == (f"cas-installer: error: {tmp_path / 'nope.yaml'}: spec file not "
                          "found (see etc/installer-example.yaml)\n")


def test_unsolvable_specs_name_the_spec(tmp_path, channel):
    """Run as its own process: a failed solve in py-rattler 0.28 can crash the interpreter
    at exit, which in this process would be pytest's."""
    import subprocess
    import sys

    spec = write_spec(tmp_path, f"name: x\nversion: 1\nchannels: [{channel}]\n"
                                "specs: [python, no-such-package]\nplatforms: [linux-64]\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cas-installer"), str(spec), "-o",
         str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")],
        check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cannot solve specs python, no-such-package for linux-64" in result.stderr
    assert "no-such-package" in result.stderr.split("linux-64:", 1)[1]
    assert list((tmp_path / "out").glob("*.sh")) == []


def test_target_glibc_is_assumed_old_unless_overridden(tmp_path, run_cli, monkeypatch):
    """The solve assumes __glibc 2.17 on linux (old targets still install); conda's
    CONDA_OVERRIDE_GLIBC raises it."""
    new = ip.Package("newlibc", depends=["__glibc >=2.28"])
    ip.build_channel(tmp_path / "chan", [new])
    spec = write_spec(tmp_path, f"name: x\nversion: 1\nchannels: [{tmp_path / 'chan'}]\n"
                                "specs: [newlibc]\nplatforms: [linux-64]\n")
    args = [spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c", "-q"]
    result = run_cli(cli.main, args)
    assert result.code == 2 and "__glibc" in result.err
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "2.28")
    result = run_cli(cli.main, args)
    assert result.code == 0, result.err
    assert (tmp_path / "out/x-1-linux-64.sh").is_file()
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "two")
    result = run_cli(cli.main, args)
    assert result.code == 2
    assert result.err == ("cas-installer: error: environment variable CONDA_OVERRIDE_GLIBC: "
                          "'two' is not a version such as 2.28\n")


@pytest.mark.slow
def test_failed_solves_exit_2_every_time(tmp_path, channel):
    """py-rattler 0.28 can crash at interpreter exit after a failed solve (SIGSEGV or
    abort, about one run in three here): the command must end with status 2 each time,
    for a spec without solution and for a channel that refuses connections."""
    import subprocess
    import sys

    from tests.support.cas_server import server_env
    from tests.support.http_server import free_port

    unsolvable = write_spec(tmp_path, f"name: x\nversion: 1\nchannels: [{channel}]\n"
                                      "specs: [python, nothing-like-it]\n")
    refused = tmp_path / "refused.yaml"
    refused.write_text(f"name: x\nversion: 1\nchannels: [http://127.0.0.1:{free_port()}/c]\n"
                       "specs: [python]\n")
    runs = [subprocess.Popen(
        [str(Path(sys.executable).parent / "cas-installer"), str(spec), "-q", "-o",
         str(tmp_path / "out"), "--cache-dir", str(tmp_path / f"cache{index}")],
        env=server_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index, spec in enumerate([unsolvable, refused] * 6)]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2, err
        assert err.startswith("cas-installer: error: ") and "cannot solve specs" in err


def test_platform_option_is_checked_like_the_key(tmp_path, channel, run_cli):
    spec = write_spec(tmp_path, f"name: x\nversion: 1\nchannels: [{channel}]\nspecs: [python]\n")
    result = run_cli(cli.main, [spec, "--platform", "win-64", "--cache-dir", tmp_path / "c"])
    assert result.code == 2
    assert result.err.startswith("cas-installer: error: command line: --platform: item 1: "
                                 "platform 'win-64' not allowed")
