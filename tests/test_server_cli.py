"""The cas-server command: where the root comes from, one-line errors with exit 2, and
stopping without leaving a worker behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests

from cas_mirror.server.cli import main
from tests.support.cas_server import free_port, server_env


def test_missing_root_is_one_line_and_exit_2(run_cli, tmp_path):
    result = run_cli(main, ["--root", tmp_path / "nope", "--port", "18999"])
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert result.err.startswith("cas-server: error: --root: ")
    assert "does not exist" in result.err and "Traceback" not in result.err


def test_root_that_is_a_file(run_cli, tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli(main, ["--root", tmp_path / "file"])
    assert result.code == 2 and "is not a folder" in result.err


def test_default_root_is_mirror_dir_and_the_error_names_its_origin(run_cli, isolated_config,
                                                                   tmp_path):
    user = isolated_config.write_user(f"mirror_dir: {tmp_path / 'absent-mirror'}\n")
    result = run_cli(main, ["--port", "18999"])
    assert result.code == 2
    assert f"mirror_dir ({user})" in result.err and "does not exist" in result.err


def test_bad_options_exit_2(run_cli, tmp_path):
    for args in (["--port", "0"], ["--port", "http"], ["--workers", "0"], ["--bogus"],
                 ["--root", tmp_path, "--host", "no such host.invalid"]):
        result = run_cli(main, args)
        assert result.code == 2, args
        assert "Traceback" not in result.err
        assert result.err.strip(), args


def test_bad_config_file_exit_2(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mirror_dir: [1, 2\n")
    result = run_cli(main, ["-f", bad])
    assert result.code == 2 and "malformed YAML" in result.err


def test_busy_port_is_one_line_and_exit_2(run_cli, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(main, ["--root", tmp_path, "--host", "127.0.0.1", "--port", port])
    assert result.code == 2
    assert result.err.startswith(f"cas-server: error: cannot listen on 127.0.0.1:{port}: ")
    assert "choose another --port" in result.err


def test_root_from_config_file_and_quiet(tmp_path):
    """`-f FILE` supplies mirror_dir and pypi.user; --quiet turns the access log off."""
    root = tmp_path / "mirror"
    (root / "internal" / "noarch").mkdir(parents=True)
    (root / "internal" / "noarch" / "repodata.json").write_text("{}")
    (root / "mypypi" / "web" / "simple").mkdir(parents=True)
    (root / "mypypi" / "web" / "simple" / "index.html").write_text("<html>mine</html>")
    config = tmp_path / "server.yaml"
    config.write_text(f"mirror_dir: {root}\npypi:\n  user: mypypi\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cas_mirror.server", "-f", str(config), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=server_env(tmp_path))
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url, process)
        assert requests.get(url + "/internal/noarch/repodata.json").text == "{}"
        assert requests.get(url + "/mypypi/simple/").text == "<html>mine</html>"
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=15)
    text = out.decode()
    assert f"serving {root} at {url}/" in text and f"{url}/mypypi/simple/" in text
    assert "GET /internal" not in text  # --quiet: no access log
    assert process.returncode == 0


def _wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        try:
            requests.head(url + "/", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError("cas-server did not start")


def test_start_up_line_advertises_pip_only_with_a_pypi_tree(tmp_path):
    from tests.support.cas_server import CasServer

    root = tmp_path / "mirror"
    (root / "internal" / "noarch").mkdir(parents=True)
    (root / "internal" / "noarch" / "repodata.json").write_text("{}")
    (root / "pypi").mkdir()  # a folder of that name is not a PyPI tree yet
    server = CasServer(root, tmp_path / "conda-only", workers=1)
    try:
        first = server.log().splitlines()[0]
    finally:
        server.stop()
    assert first == (f"cas-server: serving {root} at {server.url}/ with 1 worker; "
                     "Ctrl-C stops")

    (root / "pypi" / "web" / "simple").mkdir(parents=True)
    server = CasServer(root, tmp_path / "with-pypi", workers=1)
    try:
        first = server.log().splitlines()[0]
    finally:
        server.stop()
    assert first == (f"cas-server: serving {root} at {server.url}/ with 1 worker "
                     f"(pip index: {server.url}/pypi/simple/); Ctrl-C stops")


def test_warns_when_its_own_venv_is_inside_the_root(run_cli, tmp_path, monkeypatch):
    # the old layout: mirror_dir /opt/cas-mirror holding the program in /opt/cas-mirror/venv
    # (serve() is replaced: this is about the start-up lines; tests/test_server_http.py
    # checks through the real server that a venv under the root is never served)
    from cas_mirror.server import cli as server_cli

    root = tmp_path / "opt-cas-mirror"
    (root / "venv").mkdir(parents=True)
    served = []
    monkeypatch.setattr(server_cli, "serve", lambda *args: served.append(args))
    monkeypatch.setattr(sys, "prefix", str(root / "venv"))
    result = run_cli(main, ["--root", root, "--host", "127.0.0.1", "--port", str(free_port())])
    assert result.code == 0 and len(served) == 1
    assert result.err.splitlines()[1] == (
        f"cas-server: warning: the program's virtual environment {root / 'venv'} is inside "
        "the served folder; it is not served, but move it out (README, \"Production install\")")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    result = run_cli(main, ["--root", root, "--host", "127.0.0.1", "--port", str(free_port())])
    assert "warning" not in result.err


def _children(pid: int) -> list[int]:
    from pathlib import Path

    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_worker_that_does_not_stop_is_killed_and_no_worker_outlives_the_server(tmp_path):
    """A stopped server leaves no worker behind: one that does not stop after SIGTERM (here
    frozen with SIGSTOP; in the wild, one told to stop while still starting) is killed
    after the grace period, and the server exits. Before, the server waited for it for
    ever, and a supervisor that then killed the server left the worker holding the port."""
    import os
    import signal

    from tests.support.cas_server import CasServer

    (tmp_path / "root").mkdir()
    server = CasServer(tmp_path / "root", tmp_path / "logs", "--quiet")
    deadline = time.monotonic() + 30
    while len(workers := _children(server.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval, bounded by the deadline
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGSTOP)
    server.process.send_signal(signal.SIGTERM)
    try:
        status = server.process.wait(timeout=60)  # a bound on a hang, not a speed test
    except subprocess.TimeoutExpired:
        status = None
    finally:
        for pid in (*workers, server.process.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()
    assert status is not None, "cas-server did not exit after SIGTERM: it waits on the worker"
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval, bounded by the deadline
    assert not any(map(_alive, workers))
