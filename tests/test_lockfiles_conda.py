"""`cas-sync --from-lock` / `lockfiles:` on the conda side: a pixi.lock written by
py-rattler makes a mirror holding exactly its files, from which py-rattler installs
exactly the locked versions; @EXPLICIT, conda-lock.yml and environment.yml are read too;
a wrong hash is an error naming the lockfile and line, and nothing is mirrored."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest
import yaml

from tests.support.clients import rattler_install
from tests.support.conda_mirror import Mirror
from tests.support.conda_packages import build_channel
from tests.test_conda_depends import SPECS

# app -> libfoo >=2 -> zlib 1.2.*: the lock holds zlib 1.2.13 although 1.3.1 is newest
LOCKED = {"app-1.0-0.conda", "libfoo-2.1-0.conda", "zlib-1.2.13-0.conda",
          "pyish-3.1-h1_cp.conda", "helper-1.0-0.conda"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lockfiles") / "upstream"
    build_channel(root / "pkgs/main", SPECS)
    return root


@pytest.fixture
def mirror(tmp_path, isolated_config, built, http_server, run_cli):
    from types import SimpleNamespace

    server = http_server(built)
    m = Mirror(tmp_path / "mirror", isolated_config.user, run_cli,
               SimpleNamespace(root=built, server=server, url=server.url))
    return m


def solve(channel: str, specs: list[str]):
    import rattler

    return asyncio.run(rattler.solve([channel], specs, platforms=["linux-64", "noarch"],
                                     virtual_packages=[]))


@pytest.fixture
def pixi_lock(mirror, tmp_path):
    """A pixi.lock for `app` and `zlib`, written by py-rattler from a solve upstream."""
    import rattler

    channel = mirror.upstream.url + "/pkgs/main"
    records = solve(channel, ["app", "zlib"])
    platform = rattler.LockPlatform("linux-64")
    lock = rattler.LockFile([platform])
    lock.set_channels("default", [rattler.LockChannel(channel)])
    for record in records:
        lock.add_conda_package("default", platform, record)
    path = tmp_path / "pixi.lock"
    lock.to_path(str(path))
    assert {r.file_name for r in records} == LOCKED
    return path


def test_a_pixi_lock_mirrors_exactly_its_files_and_rattler_installs_them(
        mirror, pixi_lock, http_server, tmp_path):
    result = mirror.sync("--from-lock", pixi_lock)
    assert result.code == 0, result
    assert mirror.files("linux-64") | mirror.files("noarch") == LOCKED
    served = http_server(mirror.dir).url + "/pkgs/main"
    installed = rattler_install([served], ["app", "zlib"], tmp_path / "env")
    assert set(installed) == LOCKED
    explain = mirror.sync("--from-lock", pixi_lock, "--explain", "zlib")
    assert re.search(r"zlib-1\.2\.13-0\.conda\s+kept\s+lockfile\s+named by \S*pixi\.lock:\d+",
                     explain.out), explain.out


def test_a_wrong_hash_names_the_lockfile_and_line_and_nothing_is_mirrored(
        mirror, pixi_lock):
    text = pixi_lock.read_text()
    lines = text.splitlines()
    url_line = max(i for i, line in enumerate(lines) if "zlib-1.2.13-0.conda" in line)
    hash_line = next(i for i in range(url_line, len(lines)) if "sha256:" in lines[i])
    good = lines[hash_line].split("sha256:")[1].strip()
    lines[hash_line] = lines[hash_line].replace(good, "0" * 64)
    pixi_lock.write_text("\n".join(lines) + "\n")
    result = mirror.sync("--from-lock", pixi_lock)
    assert result.code == 2, result
    assert f"{pixi_lock}:{hash_line + 1}: sha256 of zlib-1.2.13-0.conda is {'0' * 64}" \
        in result.err
    assert "Traceback" not in result.err
    assert not mirror.folder("linux-64").exists() or not mirror.files("linux-64")


def test_explicit_conda_lock_and_environment_files(mirror, built, tmp_path):
    channel = mirror.upstream.url + "/pkgs/main"
    records = solve(channel, ["app", "zlib"])
    explicit = tmp_path / "explicit.txt"
    explicit.write_text("# platform: linux-64\n@EXPLICIT\n" + "".join(
        f"{r.url}#{r.sha256.hex()}\n" for r in records))
    conda_lock = tmp_path / "conda-lock.yml"
    conda_lock.write_text(yaml.safe_dump({"version": 1, "metadata": {"platforms": ["linux-64"]},
        "package": [{"name": r.name.normalized, "version": str(r.version), "manager": "conda",
                     "platform": r.subdir, "url": r.url,
                     "hash": {"md5": r.md5.hex(), "sha256": r.sha256.hex()}}
                    for r in records]}))
    environment = tmp_path / "environment.yml"
    environment.write_text(yaml.safe_dump({"name": "analysis", "channels": ["pkgs/main"],
                                           "dependencies": ["app", "zlib"]}))
    for lockfile in (explicit, conda_lock, environment):
        shutil.rmtree(mirror.dir, ignore_errors=True)
        mirror.configure(lockfiles=[str(lockfile)])
        result = mirror.sync()
        assert result.code == 0, (lockfile, result)
        assert mirror.files("linux-64") | mirror.files("noarch") == LOCKED, lockfile
    # a bad line of an @EXPLICIT file is named
    explicit.write_text("@EXPLICIT\n" + f"{records[0].url}#nothex\n")
    mirror.configure(lockfiles=[str(explicit)])
    result = mirror.sync()
    assert result.code == 2 and f"{explicit}:2: 'nothex' is not an md5 or sha256 hash" \
        in result.err, result


def test_a_locked_file_upstream_lacks_is_an_error_naming_the_line(mirror, tmp_path):
    explicit = tmp_path / "explicit.txt"
    explicit.write_text(f"@EXPLICIT\n{mirror.upstream.url}/pkgs/main/linux-64/gone-1-0.conda\n")
    result = mirror.sync("--from-lock", explicit)
    assert result.code == 2, result
    assert f"{explicit}:2: gone-1-0.conda is not in upstream pkgs/main/linux-64" in result.err


def test_pypi_only_lockfiles_leave_the_conda_selection_alone(mirror, tmp_path):
    pylock = tmp_path / "pylock.toml"
    pylock.write_text('lock-version = "1.0"\ncreated-by = "tests"\n')
    mirror.configure(whitelist=["unrelated"], blacklist=["app*"], lockfiles=[str(pylock)])
    result = mirror.sync()
    assert result.code == 0, result
    assert "unrelated-1.0-0.conda" in mirror.files("linux-64")
    assert "zlib-1.3.1-0.conda" in mirror.files("linux-64")  # not blacklisted: kept


def test_a_locked_file_of_a_platform_not_mirrored_is_refused(mirror, tmp_path):
    explicit = tmp_path / "explicit.txt"
    explicit.write_text(f"@EXPLICIT\n{mirror.upstream.url}/pkgs/main/osx-64/x-1-0.conda\n")
    result = mirror.sync("--from-lock", explicit)
    assert result.code == 2, result
    assert f"{explicit}:2: x-1-0.conda is for platform osx-64, which is not in" in result.err
