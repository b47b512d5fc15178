"""`pypi: include_dependencies`, and lockfiles on the PyPI side.

The closure follows Requires-Dist (PEP 658 metadata, else the wheel or the sdist),
evaluates markers for the configured python_versions and platforms, honours extras and
the blacklist, transitively; pip then resolves and downloads from the mirror alone (and
cannot without the closure). pylock.toml, uv.lock and a hash-pinned requirements.txt make
mirrors of exactly the locked files; pip downloads exactly the locked version; a wrong
hash is an error naming the lockfile and line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.support.pypi_mirror import PypiMirror
from tests.support.pypi_packages import SimpleUpstream, serve_mirror

APP_NEEDS = ("libx>=2", "winonly; sys_platform == 'win32'", "oldpy; python_version < '3.9'",
             "extra-dep; extra == 'full'", "plugin[fancy]>=1", "blocked; os_name == 'nt'")


@pytest.fixture
def upstream(tmp_path, http_server):
    up = SimpleUpstream(tmp_path / "upstream")
    up.server = http_server(tmp_path / "upstream")
    up.serve(up.server)
    up.add("app", "1.0", kinds=("wheel",), requires_dist=APP_NEEDS)
    up.add("libx", "1.0", kinds=("wheel",))
    # no PEP 658 metadata: read from the wheel itself
    up.add("libx", "2.0", kinds=("wheel",), metadata=False, requires_dist=("deep",))
    up.add("deep", "1.0", kinds=("wheel",))
    for name in ("winonly", "oldpy", "extra-dep", "blocked", "fancydep", "unrelated"):
        up.add(name, "1.0", kinds=("wheel",))
    up.add("plugin", "1.0", kinds=("wheel",), requires_dist=("fancydep; extra == 'fancy'",))
    # an sdist-only project: its PKG-INFO is read
    up.add("sdonly", "1.0", kinds=("sdist",), requires_dist=("deep",))
    return up


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def pip_download(http_server, mirror, tmp_path, *requirements: str):
    server = http_server(tmp_path / "empty")
    serve_mirror(server, mirror.web, "/pypi/")
    dest = tmp_path / "downloaded"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
         "download", "--no-cache-dir", "--only-binary", ":all:",
         "--index-url", f"{server.url}/pypi/simple/", *requirements, "-d", str(dest)],
        capture_output=True, text=True, timeout=120, check=False)
    return proc, sorted(p.name for p in dest.iterdir()) if dest.exists() else []


EXPECTED = ["app-1.0-py3-none-any.whl", "deep-1.0-py3-none-any.whl",
            "fancydep-1.0-py3-none-any.whl", "libx-2.0-py3-none-any.whl",
            "plugin-1.0-py3-none-any.whl"]


def test_closure_follows_requires_dist_with_markers_and_pip_resolves_from_the_mirror(
        mirror, http_server, tmp_path):
    mirror.configure(whitelist=["app"], blacklist=["blocked"], include_dependencies=True,
                     python_versions=["3.11"], platforms=["linux"])
    result = mirror.sync()
    assert result.code == 0, result
    assert sorted(mirror.package_files() - {f"{n}.metadata" for n in EXPECTED}) == EXPECTED
    proc, got = pip_download(http_server, mirror, tmp_path, "app")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # (the test metadata declares no Provides-Extra, so pip does not ask for fancydep)
    assert got == [f for f in EXPECTED if not f.startswith("fancydep")], proc.stdout
    # a second run keeps the dependencies (nothing to do)
    again = mirror.sync()
    assert again.code == 0, again
    assert sorted(mirror.package_files() - {f"{n}.metadata" for n in EXPECTED}) == EXPECTED


def test_without_closure_pip_cannot_resolve(mirror, http_server, tmp_path):
    mirror.configure(whitelist=["app"])
    assert mirror.sync().code == 0
    proc, _ = pip_download(http_server, mirror, tmp_path, "app")
    assert proc.returncode != 0
    assert "libx" in proc.stderr + proc.stdout


def test_markers_follow_the_configured_python_versions_and_platforms(mirror):
    mirror.configure(whitelist=["app"], blacklist=["blocked"], include_dependencies=True,
                     python_versions=["3.8"], platforms=["windows"])
    assert mirror.sync().code == 0
    names = {f.split("-")[0] for f in mirror.package_files()}
    assert {"winonly", "oldpy"} <= names
    assert "extra_dep" not in names and "extra-dep" not in names and "blocked" not in names


def test_an_sdists_pkg_info_is_followed(mirror):
    mirror.configure(whitelist=["sdonly"], include_dependencies=True)
    assert mirror.sync().code == 0
    assert {"sdonly-1.0.tar.gz", "deep-1.0-py3-none-any.whl"} <= mirror.package_files()


# ------------------------------------------------------------------------ lockfiles

def pylock(upstream, files: dict[str, str]) -> str:
    """A pylock.toml (PEP 751) naming `files` (file name -> sha256)."""
    lines = ['lock-version = "1.0"', 'created-by = "tests"', ""]
    for filename, sha256 in files.items():
        name, version = filename.split("-")[:2]
        f = upstream.find(filename)[1]
        url = f"{upstream.url}/packages/{f.relpath}"
        hashes = f'{{ sha256 = "{sha256}" }}'
        lines += ["[[packages]]", f'name = "{name}"', f'version = "{version}"', "wheels = [",
                  f'  {{ name = "{filename}", url = "{url}", hashes = {hashes} }},', "]", ""]
    return "\n".join(lines)


def test_a_pylock_mirrors_exactly_its_files_and_pip_gets_the_locked_version(
        mirror, upstream, http_server, tmp_path):
    locked = {fn: upstream.find(fn)[1].sha256 for fn in
              ("app-1.0-py3-none-any.whl", "libx-1.0-py3-none-any.whl")}
    path = tmp_path / "pylock.toml"
    path.write_text(pylock(upstream, locked))
    result = mirror.sync("--from-lock", path)
    assert result.code == 0, result
    files = mirror.package_files()
    assert {f for f in files if not f.endswith(".metadata")} == set(locked)
    proc, got = pip_download(http_server, mirror, tmp_path, "libx")
    assert proc.returncode == 0, proc.stderr
    assert got == ["libx-1.0-py3-none-any.whl"]  # the locked one, not the newest (2.0)


def test_a_wrong_hash_in_a_pylock_names_the_file_and_line(mirror, upstream, tmp_path):
    path = tmp_path / "pylock.toml"
    path.write_text(pylock(upstream, {"libx-1.0-py3-none-any.whl": "ab" * 32}))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if "libx-1.0-py3-none-any.whl" in text)
    result = mirror.sync("--from-lock", path)
    assert result.code == 2, result
    assert f"{path}:{line}: sha256 of libx-1.0-py3-none-any.whl is {'ab' * 32}" in result.err
    assert not mirror.package_files()


def test_uv_lock_and_hash_pinned_requirements(mirror, upstream, tmp_path):
    app = upstream.find("app-1.0-py3-none-any.whl")[1]
    libx = upstream.find("libx-1.0-py3-none-any.whl")[1]
    uv_lock = tmp_path / "uv.lock"
    uv_lock.write_text("\n".join([
        "version = 1", "", "[[package]]", 'name = "app"', 'version = "1.0"',
        f'source = {{ registry = "{upstream.url}/simple" }}',
        (f'wheels = [{{ url = "{upstream.url}/packages/{app.relpath}", '
         f'hash = "sha256:{app.sha256}" }}]'), "",
        "[[package]]", 'name = "myproject"', 'version = "0.1"', 'source = { editable = "." }',
        ""]))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# pinned\nlibx==1.0 \\\n    --hash=sha256:{libx.sha256}\n")
    mirror.configure()
    config = yaml.safe_load(mirror.config_path.read_text())
    mirror.config_path.write_text(yaml.safe_dump(
        {**config, "lockfiles": [str(uv_lock), str(requirements)]}))
    result = mirror.sync()
    assert result.code == 0, result
    assert {f for f in mirror.package_files() if not f.endswith(".metadata")} == {
        app.filename, libx.filename}
    requirements.write_text(f"libx==1.0 \\\n    --hash=sha256:{'0' * 64}\n")
    bad = mirror.sync()
    assert bad.code == 2, bad
    assert f"{requirements}:1: no file of libx==1.0 upstream has a listed hash" in bad.err


def test_the_pypi_entries_of_a_pixi_lock_feed_the_pypi_mirror(mirror, upstream, tmp_path):
    import rattler

    libx = upstream.find("libx-1.0-py3-none-any.whl")[1]
    platform = rattler.LockPlatform("linux-64")
    lock = rattler.LockFile([platform])
    lock.add_pypi_package("default", platform, "libx", "1.0",
                          f"{upstream.url}/packages/{libx.relpath}")
    path = tmp_path / "pixi.lock"
    lock.to_path(str(path))
    result = mirror.sync("--from-lock", path)
    assert result.code == 0, result
    assert {f for f in mirror.package_files() if not f.endswith(".metadata")} == {
        libx.filename}
