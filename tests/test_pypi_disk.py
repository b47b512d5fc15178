"""cas-sync pypi on a real small disk and real unwritable folders (the suite runs as root,
which ignores permission bits, so the faults are mounts: a tmpfs of a few pages that
really fills up, a read-only bind mount, a file where a folder should be)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from tests.support.http_server import Response
from tests.support.mounts import Mounts, fill, free_bytes, pages_of
from tests.support.pypi_mirror import PypiMirror, make_upstream, saved_state
from tests.support.trees import no_hidden_leftovers

MB = 1 << 20


@pytest.fixture
def upstream(tmp_path, http_server):
    return make_upstream(tmp_path, http_server)


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.unmount_all()


@pytest.fixture
def mirror(tmp_path, isolated_config, upstream, run_cli):
    return PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)


def _write_config(mirror: PypiMirror, **top) -> None:
    settings = yaml.safe_load(mirror.config_path.read_text())
    settings.update(top)
    mirror.config_path.write_text(yaml.safe_dump(settings))


# --------------------------------------------------------------------------- free space


def test_free_space_is_checked_again_during_the_run(mirror, upstream, mounts):
    """The pre-check passes; then something else fills the disk while the first file
    downloads: the next file is not started (exit 4), and what was published stays."""
    mounts.tmpfs(mirror.dir, 16 * MB)
    big = [upstream.add("big", version, kinds=("wheel",), payload=1_600_000, seed=n,
                        metadata=False)[0] for n, version in enumerate(("1.0", "2.0", "3.0"))]
    largest = max(f.size for f in big)
    total = sum(f.size for f in big)
    free = free_bytes(mirror.dir)
    minimum = free - total - 5 * largest  # room for all three, and then some
    filled = []

    def fill_then_serve(request):
        if not filled:  # another writer takes 7 files' worth while the first one arrives
            filled.append(fill(mirror.dir, free - pages_of(7 * largest)))
        path = request.path.split("?")[0]
        return Response(200, (upstream.root / path.lstrip("/")).read_bytes())

    for f in big:
        upstream.server.route(f"/packages/{f.relpath}", fill_then_serve)
    mirror.configure(workers=1, whitelist=["big"])
    _write_config(mirror, minimum_free_space=minimum)
    result = mirror.sync("--json")
    assert result.code == 4, result
    summary = json.loads(result.out)
    assert "not enough free space" in summary["stopped"]
    downloaded = sum(p["downloaded"] for p in summary["projects"])
    assert downloaded == 1 and len(filled) == 1
    assert no_hidden_leftovers(mirror.dir)


# --------------------------------------------------------------------------- a full disk


def test_the_disk_filling_while_pages_are_written_exits_4(mirror, upstream, mounts):
    mounts.tmpfs(mirror.dir, 2 * MB)
    assert mirror.sync().code == 0
    pages_before = mirror.files_of("beta")
    root_before = mirror.files_of("")
    sdist = upstream.add("beta", "0.6", kinds=("sdist",))[0]
    # Room for the pending-downloads note (state.py) and the new file; none for a page.
    filler = fill(mirror.dir, pages_of(1) + pages_of(sdist.size))
    result = mirror.sync()
    assert result.code == 4, result
    assert "cas-sync pypi summary" in result.out
    assert "stopped early: the disk is full: cannot write" in result.out
    assert "no space left on device" in result.out
    assert mirror.files_of("beta") == pages_before  # the published pages are intact
    assert mirror.files_of("") == root_before
    assert no_hidden_leftovers(mirror.dir)  # no temporary file left behind
    filler.unlink()
    result = mirror.sync()
    assert result.code == 0, result
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz", "beta-0.6.tar.gz"}


def test_the_disk_filling_while_the_project_list_is_written_exits_4(mirror, upstream,
                                                                    mounts):
    mounts.tmpfs(mirror.dir, 2 * MB)
    assert mirror.sync().code == 0
    root_before = mirror.files_of("")
    gamma_before = mirror.files_of("gamma")
    files_before = mirror.package_files()
    upstream.remove_project("gamma")
    filler = fill(mirror.dir, 0)
    result = mirror.sync("--json")
    assert result.code == 4, result
    assert "the disk is full: cannot write" in json.loads(result.out)["stopped"]
    assert mirror.files_of("") == root_before
    assert mirror.files_of("gamma") == gamma_before  # not removed before the list drops it
    assert mirror.package_files() == files_before
    assert no_hidden_leftovers(mirror.dir)
    filler.unlink()
    assert mirror.sync().code == 0
    assert not (mirror.web / "simple" / "gamma").exists()


# --------------------------------------------------------------------------- unwritable


def test_a_read_only_project_folder_fails_that_project_alone(mirror, upstream, mounts):
    assert mirror.sync().code == 0
    beta = mirror.web / "simple" / "beta"
    pages_before = mirror.files_of("beta")
    mounts.read_only(beta)
    upstream.add("beta", "0.6", kinds=("sdist",))
    upstream.add("gamma", "2.0", kinds=("sdist",))
    result = mirror.sync()
    assert result.code == 1, result
    assert f"error: beta: cannot write {beta}/" in result.err
    assert "read-only file system" in result.err
    assert "cas-sync pypi summary" in result.out and "exit status 1" in result.out
    assert "gamma-2.0.tar.gz" in mirror.filenames("gamma")  # the others went on
    assert mirror.files_of("beta") == pages_before
    state = saved_state(mirror)
    assert state["projects"]["beta"]["serial"] < upstream.projects["beta"].serial
    mounts.unmount_all()
    assert mirror.sync().code == 0  # tried again, and the file it got is kept
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz", "beta-0.6.tar.gz"}


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
@pytest.mark.parametrize("where", ["mirror_dir", "web"])
def test_a_file_where_the_tree_goes_is_a_config_error(mirror, where, dry_run):
    mirror.dir.mkdir()
    target = mirror.dir if where == "mirror_dir" else mirror.web
    if where == "mirror_dir":
        mirror.dir.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not a folder")
    result = mirror.sync(*(["--dry-run"] if dry_run else []))
    assert result.code == 2, result
    line = next(n for n, text in enumerate(mirror.config_path.read_text().splitlines(), 1)
            if text.startswith("mirror_dir:"))
    assert result.err.strip() == (f"cas-sync: error: {mirror.config_path}, line {line}: key "
                                  f"'mirror_dir': {target} is a file, not a folder")


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
def test_a_read_only_mirror_dir_is_a_config_error(mirror, mounts, dry_run):
    mirror.dir.mkdir()
    mounts.read_only(mirror.dir)
    result = mirror.sync(*(["--dry-run"] if dry_run else []))
    assert result.code == 2, result
    assert "key 'mirror_dir': cannot write in" in result.err
    assert "read-only file system" in result.err
    assert list(mirror.dir.iterdir()) == []
    assert len(result.err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- a killed run


class _StallingServer:
    """Answers every request with the first half of `body`, then holds the connection
    until closed: a download that is in progress for as long as the test wants."""

    def __init__(self, body: bytes):
        self.body = body
        self.release = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.release.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body)
                             + self.body[: len(self.body) // 2])
                self.release.wait(60)

    def close(self) -> None:
        self.release.set()
        self.sock.close()


def test_the_part_file_of_a_killed_run_goes_when_the_file_is_no_longer_wanted(
        mirror, upstream, tmp_path):
    assert mirror.sync().code == 0
    sdist = upstream.add("gamma", "2.0", kinds=("sdist",))[0]
    stalling = _StallingServer((upstream.root / "packages" / sdist.relpath).read_bytes())
    page = json.loads(upstream.project_json("gamma"))
    for entry in page["files"]:
        if entry["filename"] == sdist.filename:
            entry["url"] = f"http://127.0.0.1:{stalling.port}/packages/{sdist.relpath}"
    upstream.server.add_fault("/simple/gamma/", body=json.dumps(page).encode())
    target = mirror.web / "packages" / sdist.relpath
    part = target.with_name(f".{target.name}.part")
    run = subprocess.Popen([sys.executable, "-m", "cas_mirror", "pypi"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 0):
            assert run.poll() is None and time.monotonic() < deadline, "no .part appeared"
            time.sleep(0.02)
    finally:
        run.kill()
        run.wait()
        stalling.close()
    assert part.exists()  # what a killed run leaves
    upstream.server.clear_faults()
    upstream.remove_file(sdist.filename)  # and then upstream takes the file back
    result = mirror.sync("--json")
    assert result.code == 0, result
    assert json.loads(result.out)["stale_parts_removed"] == 1
    assert not part.exists() and not target.parent.exists()
    assert no_hidden_leftovers(mirror.dir)


def test_a_read_only_packages_folder_fails_the_projects_that_download(mirror, upstream,
                                                                      mounts):
    assert mirror.sync().code == 0
    mounts.read_only(mirror.web / "packages")
    upstream.add("beta", "0.6", kinds=("sdist",))
    upstream.add("epsilon", "1.0", kinds=("sdist",))  # a new project
    result = mirror.sync()
    assert result.code == 1, result
    assert "read-only file system" in result.out + result.err
    assert "internal error" not in result.err
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz"}  # previous page kept
    assert not (mirror.web / "simple" / "epsilon").exists()
    assert "epsilon" not in {p["name"] for p in mirror.root()["projects"]}
    mounts.unmount_all()
    assert mirror.sync().code == 0
    assert mirror.filenames("beta") == {"beta-0.5.tar.gz", "beta-0.6.tar.gz"}
    assert mirror.filenames("epsilon") == {"epsilon-1.0.tar.gz"}


def test_a_new_project_whose_folder_cannot_be_made_stays_off_the_project_list(mirror,
                                                                               upstream):
    assert mirror.sync().code == 0
    upstream.add("epsilon", "1.0", kinds=("sdist",))
    blocker = mirror.web / "simple" / "epsilon"
    blocker.write_text("a file where the project's folder goes")
    result = mirror.sync()
    assert result.code == 1, result
    assert f"error: epsilon: cannot write {blocker}: already exists" in result.err
    assert "epsilon" not in {p["name"] for p in mirror.root()["projects"]}
    assert "epsilon" not in saved_state(mirror)["projects"]
    blocker.unlink()
    assert mirror.sync().code == 0
    assert mirror.filenames("epsilon") == {"epsilon-1.0.tar.gz"}
