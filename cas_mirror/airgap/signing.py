"""Signing a bundle's manifest with OpenSSH (`ssh-keygen -Y sign`), a tool an offline site
already has, and checking the signature on import (`ssh-keygen -Y verify`).

The manifest names the sha256 of every volume and member, so its signature covers the
whole bundle. Signatures use the namespace `cas-mirror-bundle`, so a signature made for
something else (a git commit, a file) with the same key is not accepted. The verifying side
gives either an OpenSSH allowed-signers file (`--allowed-signers`: principals, keys,
optional `namespaces=` and validity) or one public key (`--verify-key KEY.pub`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import CasError
from ..text import safe
from .manifest import BundleRefused

log = logging.getLogger(__name__)

NAMESPACE = "cas-mirror-bundle"
_PRINCIPAL = "cas-mirror-bundle-signer"


def _ssh_keygen() -> str:
    tool = shutil.which("ssh-keygen")
    if tool is None:
        raise CasError("ssh-keygen not found on PATH (install OpenSSH's client tools) to "
                       "sign or verify a bundle")
    return tool


def _problem(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or b"").decode(errors="replace").strip()
    return safe(" ".join(text.split())) or f"exit status {result.returncode}"


def sign(manifest: Path, key: Path) -> Path:
    """Write `manifest`.sig with the private `key`; returns the signature's path."""
    if not key.is_file():
        raise CasError(f"--sign: {key}: no such key file")
    result = subprocess.run([_ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n",
                             NAMESPACE, str(manifest)], check=False, capture_output=True)
    signature = manifest.with_name(manifest.name + ".sig")
    if result.returncode != 0 or not signature.is_file():
        signature.unlink(missing_ok=True)
        raise CasError(f"--sign: ssh-keygen could not sign with {key}: {_problem(result)}")
    log.info("signed %s with %s", manifest, key)
    return signature


def verify(manifest: Path, signature: Path, *, allowed_signers: Path | None = None,
           public_key: Path | None = None) -> str:
    """Check `signature` of `manifest`; returns the principal that signed. Refuses the
    bundle when it is unsigned or the signature is not one the given keys made."""
    if not signature.is_file():
        raise BundleRefused(f"{manifest.parent}: the bundle is not signed (no "
                            f"{signature.name}), and a signature was asked for")
    with tempfile.TemporaryDirectory(prefix="cas-verify-") as scratch:
        if public_key is not None:
            allowed_signers = Path(scratch) / "allowed_signers"
            allowed_signers.write_text(_allowed_line(public_key))
            principals = [_PRINCIPAL]
            where = f"--verify-key {public_key}"
        else:
            assert allowed_signers is not None
            if not allowed_signers.is_file():
                raise CasError(f"--allowed-signers: {allowed_signers}: no such file")
            principals = _principals(signature, allowed_signers)
            where = f"--allowed-signers {allowed_signers}"
        for principal in principals:
            with open(manifest, "rb") as data:
                result = subprocess.run(
                    [_ssh_keygen(), "-Y", "verify", "-f", str(allowed_signers), "-I",
                     principal, "-n", NAMESPACE, "-s", str(signature)],
                    stdin=data, check=False, capture_output=True)
            if result.returncode == 0:
                log.info("%s: good signature by %s", signature, principal)
                return principal
        raise BundleRefused(f"{signature}: the signature of the manifest does not verify "
                            f"against {where} ({_problem(result)}); nothing was published")


def _allowed_line(public_key: Path) -> str:
    try:
        words = public_key.read_text().split()
    except OSError as exc:
        raise CasError(f"--verify-key: {public_key}: {exc.strerror or exc}") from None
    if len(words) < 2 or not words[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise CasError(f"--verify-key: {public_key}: not an OpenSSH public key "
                       "(expected a line such as 'ssh-ed25519 AAAA... comment')")
    return f'{_PRINCIPAL} namespaces="{NAMESPACE}" {words[0]} {words[1]}\n'


def _principals(signature: Path, allowed_signers: Path) -> list[str]:
    result = subprocess.run([_ssh_keygen(), "-Y", "find-principals", "-s", str(signature),
                             "-f", str(allowed_signers)], check=False, capture_output=True)
    principals = result.stdout.decode(errors="replace").split()
    if result.returncode != 0 or not principals:
        raise BundleRefused(f"{signature}: no key of --allowed-signers {allowed_signers} "
                            f"made this signature ({_problem(result)}); nothing was published")
    return principals
