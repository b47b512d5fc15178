"""A real client: pip downloads from the mirrored tree, served on 127.0.0.1 by a static
server with PEP 691 content negotiation (index.v1_json / index.v1_html / index.html)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import yaml

from cas_mirror.cli import main
from tests.support.pypi_packages import JSON_TYPE, SimpleUpstream, serve_mirror


@pytest.mark.parametrize("simple_format, served_type", [
    ("ALL", JSON_TYPE),  # pip asks for JSON first and gets it
    ("HTML", "application/vnd.pypi.simple.v1+html"),  # no JSON pages: negotiation picks HTML
])
def test_pip_downloads_the_right_file(tmp_path, http_server, isolated_config, run_cli,
                                      simple_format, served_type):
    up = SimpleUpstream(tmp_path / "upstream").serve(http_server(tmp_path / "upstream"))
    up.add("alpha", "1.0")
    up.add("alpha", "2.0")
    up.add("alpha", "3.0", requires_python=">=99")  # no Python here can install it
    up.add("alpha", "2.5")
    up.yank("alpha-2.5-py3-none-any.whl", "broken")
    up.yank("alpha-2.5.tar.gz", "broken")
    isolated_config.write_user(yaml.safe_dump({
        "mirror_dir": str(tmp_path / "mirror"), "minimum_free_space": 0,
        "pypi": {"remote_url": up.url, "simple_format": simple_format, "retries": 1}}))
    assert run_cli(main, ["pypi"]).code == 0

    server = http_server(tmp_path / "empty")
    served = serve_mirror(server, tmp_path / "mirror" / "pypi" / "web", "/pypi/")
    dest = tmp_path / "downloaded"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
         "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
         "--index-url", f"{server.url}/pypi/simple/", "alpha", "-d", str(dest)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    wheel = up.find("alpha-2.0-py3-none-any.whl")[1]  # 3.0 needs Python 99, 2.5 is yanked
    assert [p.name for p in dest.iterdir()] == [wheel.filename]
    assert hashlib.sha256((dest / wheel.filename).read_bytes()).hexdigest() == wheel.sha256
    assert served and set(served) == {served_type}
