"""Tokens: stored only as salted scrypt hashes in a 0600 file, checked, revoked; the
`cas-server token` commands; the Authorization forms clients send; HTTPS with
--certfile/--keyfile."""

from __future__ import annotations

import base64
import json
import stat
import time

import pytest
import requests

from cas_mirror.errors import ConfigError
from cas_mirror.server.auth import Refusal, authorize, presented
from cas_mirror.server.cli import main as cas_server
from cas_mirror.server.tokens import TokenStore
from tests.support.cas_server import CasServer


def test_a_token_is_stored_as_a_salted_hash_in_a_private_file(tmp_path):
    store = TokenStore(tmp_path / "state")
    token, text = store.add("ci", ["pypi:upload", "conda:internal"])
    raw = store.path.read_text()
    secret = text.split("_", 2)[2]  # the secret itself may hold "_" (urlsafe base64)
    assert secret not in raw and text not in raw
    entry = json.loads(raw)["tokens"][0]
    assert entry["salt"] and len(entry["hash"]) == 64 and entry["scrypt"]["n"] >= 2 ** 14
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700
    assert TokenStore(tmp_path / "state").verify(text) == token
    assert store.verify(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
    assert store.verify("cas_000000000000_" + secret) is None
    assert store.verify("not a token") is None
    # two tokens of the same secret would still differ: each has its own salt
    _, again = store.add("ci2", ["pypi:upload"])
    salts = {e["salt"] for e in json.loads(store.path.read_text())["tokens"]}
    assert len(salts) == 2 and again != text


def test_a_revoked_token_no_longer_verifies_in_a_store_that_checked_it_before(tmp_path):
    store = TokenStore(tmp_path)
    _, text = store.add("ci", ["pypi:upload"])
    server_side = TokenStore(tmp_path)  # another worker, which remembers what it verified
    assert server_side.verify(text) is not None
    TokenStore(tmp_path).revoke("ci")
    assert server_side.verify(text) is None
    with pytest.raises(ConfigError, match="no token named 'ci'"):
        store.revoke("ci")


@pytest.mark.parametrize("scope", ["pypi:download", "conda:", "conda:../etc", "read:.hidden",
                                   "admin"])
def test_bad_scopes_are_refused(tmp_path, scope):
    with pytest.raises(ConfigError, match="expected pypi:upload, conda:<channel> or read:"):
        TokenStore(tmp_path).add("ci", [scope])
    assert not (tmp_path / "tokens.json").exists()


def test_a_damaged_token_file_lets_nobody_in_and_says_why(tmp_path):
    store = TokenStore(tmp_path)
    _, text = store.add("ci", ["pypi:upload"])
    store.path.write_text("{ not json")
    with pytest.raises(Refusal) as refused:
        authorize(store, {"authorization": f"Bearer {text}"}, "pypi:upload")
    assert refused.value.status == 500
    assert f"{store.path}: not a token file" in refused.value.reason


def test_names_are_unique_and_plain(tmp_path):
    store = TokenStore(tmp_path)
    store.add("ci", ["pypi:upload"])
    with pytest.raises(ConfigError, match="exists already"):
        store.add("ci", ["pypi:upload"])
    with pytest.raises(ConfigError, match="token name"):
        store.add("../x", ["pypi:upload"])


def test_authorization_forms(tmp_path):
    store = TokenStore(tmp_path)
    _, text = store.add("ci", ["pypi:upload"])
    basic = "Basic " + base64.b64encode(f"__token__:{text}".encode()).decode()
    assert presented({"authorization": basic}) == text
    assert presented({"authorization": f"Bearer {text}"}) == text
    assert presented({"authorization": "Basic !!!"}) is None
    assert presented({}) is None
    assert authorize(store, {"authorization": basic}, "pypi:upload").name == "ci"
    with pytest.raises(Refusal) as missing:
        authorize(store, {}, "pypi:upload")
    assert missing.value.status == 401
    with pytest.raises(Refusal) as scope:
        authorize(store, {"authorization": basic}, "conda:internal")
    assert scope.value.status == 403


def cli(run_cli, root, config, *args: str):
    return run_cli(cas_server, ["--root", root, "-f", config, *args])


def test_the_token_commands(tmp_path, run_cli):
    root = tmp_path / "mirror"
    root.mkdir()
    config = tmp_path / "cas-mirror.yaml"
    config.write_text(f"server_state_dir: {tmp_path / 'state'}\n")
    added = cli(run_cli, root, config, "token", "add", "ci", "--scope", "pypi:upload",
                "--scope", "conda:internal")
    token = added.out.strip()
    assert added.code == 0 and token.startswith("cas_") and "\n" not in token
    assert "shown only now" in added.err
    assert (tmp_path / "state" / "tokens.json").is_file()
    listed = cli(run_cli, root, config, "token", "list").out
    assert listed.startswith("ci\tpypi:upload conda:internal\t") and token not in listed
    bad = cli(run_cli, root, config, "token", "add", "x", "--scope", "nope")
    assert bad.code == 2 and "Traceback" not in bad.err
    assert bad.err.count("\n") == 1 and "--scope 'nope'" in bad.err
    assert cli(run_cli, root, config, "token", "revoke", "ci").code == 0
    gone = cli(run_cli, root, config, "token", "revoke", "ci")
    assert gone.code == 2 and "no token named 'ci'" in gone.err
    audit = [json.loads(line)["action"] for line in
             (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert audit == ["token-add", "token-revoke"]
    assert stat.S_IMODE((tmp_path / "state" / "audit.log").stat().st_mode) == 0o600


def test_an_audit_line_written_only_in_part_is_reported(tmp_path):
    # a disk filling up can take part of a line (write(2) returns the count): that is
    # logged as a failure, not passed over. A file size limit (SIGXFSZ ignored) makes the
    # kernel do just that; in a child, where the limit binds nothing else.
    import subprocess
    import sys

    state = tmp_path / "state"
    state.mkdir()
    (state / "audit.log").write_text("x" * 100 + "\n")
    code = f"""
import logging, resource, signal
from cas_mirror.server.audit import record
logging.basicConfig(format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (111, resource.RLIM_INFINITY))
record({str(state)!r}, token="ci", action="upload", path="p/x-1.0.tar.gz")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot write the audit log" in proc.stderr
    assert "only 10 of the" in proc.stderr and "upload line" in proc.stderr


class TlsServer(CasServer):
    ca_bundle = ""

    def _wait_ready(self) -> None:
        self.url = self.url.replace("http://", "https://")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cas-server exited: {self.log()}")
            try:
                requests.head(self.url + "/", timeout=2, verify=self.ca_bundle)
                return
            except requests.ConnectionError:
                time.sleep(0.05)  # poll interval, bounded by the deadline
        self.stop()
        raise RuntimeError(f"cas-server not ready: {self.log()}")


def test_https_with_certfile_and_keyfile(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, bundle = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(bundle))
    root = tmp_path / "mirror"
    (root / "pkgs").mkdir(parents=True)
    (root / "pkgs" / "hello.txt").write_text("hello\n")
    TlsServer.ca_bundle = str(bundle)
    server = TlsServer(root, tmp_path / "logs", "--certfile", str(certfile), "--keyfile",
                       str(keyfile), workers=1)
    try:
        response = requests.get(f"{server.url}/pkgs/hello.txt", verify=str(bundle), timeout=10)
        assert response.status_code == 200 and response.text == "hello\n"
        assert "serving" in server.log() and "https://127.0.0.1" in server.log()
    finally:
        server.stop()


def test_certfile_without_keyfile_or_unreadable_is_one_line(tmp_path, run_cli):
    root = tmp_path / "mirror"
    root.mkdir()
    config = tmp_path / "cas-mirror.yaml"
    config.write_text("{}\n")
    alone = cli(run_cli, root, config, "--certfile", tmp_path / "c.pem")
    assert alone.code == 2 and "--certfile and --keyfile go together" in alone.err
    missing = cli(run_cli, root, config, "--certfile", tmp_path / "c.pem", "--keyfile",
                  tmp_path / "k.pem")
    assert missing.code == 2 and f"--certfile {tmp_path / 'c.pem'}: no such file" in missing.err
    (tmp_path / "c.pem").write_text("not a certificate\n")
    broken = cli(run_cli, root, config, "--certfile", tmp_path / "c.pem", "--keyfile",
                 tmp_path / "c.pem")
    assert broken.code == 2 and "not a usable PEM" in broken.err
    assert "Traceback" not in alone.err + broken.err


def test_an_upload_channel_that_is_mirrored_is_a_configuration_error(tmp_path, run_cli):
    root = tmp_path / "mirror"
    root.mkdir()
    config = tmp_path / "cas-mirror.yaml"
    config.write_text("channels: [pkgs/main]\nupload_channels: [pkgs/main]\n")
    proc = cli(run_cli, root, config)
    assert proc.code == 2 and "Traceback" not in proc.err
    assert f"{config}, line 2: key 'upload_channels'" in proc.err
    assert "'pkgs/main' is a mirrored channel" in proc.err


def test_the_private_index_cannot_share_the_mirror_folder(tmp_path, run_cli):
    root = tmp_path / "mirror"
    root.mkdir()
    config = tmp_path / "cas-mirror.yaml"
    config.write_text("pypi_private_folder: pypi\n")
    proc = cli(run_cli, root, config, "token", "list")
    assert proc.code == 2 and "the PyPI mirror's folder" in proc.err
