"""Upload tokens: creating, listing, revoking and checking them.

Owns the token file, `<state folder>/tokens.json` (mode 0600, replaced atomically), and
the token format. A token is `cas_<id>_<secret>`: `id` (12 hex digits) names the entry to
check, so a request costs one scrypt computation whatever the number of tokens; `secret`
(32 random bytes, URL-safe base64) is never stored, only its salted scrypt hash.

scrypt parameters: N=2**14, r=8, p=1 (16 MiB, a few tens of milliseconds per check). The
secrets are 256-bit random values, not passwords, so nothing can be guessed whatever the
cost; the hash only keeps a leaked token file from being usable as is, and a worker
remembers the tokens it has verified until the file changes, so the cost is paid once per
token per worker, and a revocation (the file changes) takes effect on the next request.

Scopes: `pypi:upload`, `conda:<channel>` (upload to and delete from that channel) and
`read:<path>` (read a tree listed in `private_paths`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

TOKENS_FILE = "tokens.json"
PREFIX = "cas_"
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
_TOKEN = re.compile(r"^cas_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Token:
    """A stored token (without its secret)."""

    name: str
    id: str
    scopes: tuple[str, ...]
    created: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def check_scope(scope: str) -> str:
    """`scope` when it is well-formed; ConfigError saying what is allowed otherwise."""
    kind, _, target = scope.partition(":")
    if kind == "pypi" and target == "upload":
        return scope
    if kind in ("conda", "read") and target and all(
            _PATH_SEGMENT.match(s) for s in target.strip("/").split("/")):
        return f"{kind}:{target.strip('/')}"
    raise ConfigError(f"--scope {scope!r}: expected pypi:upload, conda:<channel> or "
                      "read:<path> (a folder of the served tree, e.g. read:internal-pkgs)")


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT["n"], r=SCRYPT["r"],
                          p=SCRYPT["p"], maxmem=64 << 20, dklen=32).hex()


class TokenStore:
    """The tokens of one state folder. Reads the file again whenever it changed."""

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / TOKENS_FILE
        self._stamp: tuple | None = None
        self._entries: dict[str, dict] = {}
        self._verified: dict[str, str] = {}  # sha256 of a presented token -> id

    # ---------------------------------------------------------------- reading
    def _load(self) -> dict[str, dict]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._entries, self._verified = None, {}, {}
            return self._entries
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_bytes())
                entries = {e["id"]: e for e in data["tokens"]}
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}: not a token file of cas-server ({exc})"
                                  ) from None
            self._stamp, self._entries, self._verified = stamp, entries, {}
        return self._entries

    def tokens(self) -> list[Token]:
        return [Token(e["name"], e["id"], tuple(e["scopes"]), e["created"])
                for e in sorted(self._load().values(), key=lambda e: e["name"])]

    def verify(self, presented: str) -> Token | None:
        """The token `presented` is, or None when it is unknown, malformed or revoked."""
        match = _TOKEN.match(presented)
        entries = self._load()
        if match is None:
            return None
        token_id, secret = match.groups()
        entry = entries.get(token_id)
        if entry is None:
            return None
        key = hashlib.sha256(presented.encode()).hexdigest()
        if self._verified.get(key) != token_id:
            expected = _hash(secret, bytes.fromhex(entry["salt"]))
            if not hmac.compare_digest(expected, entry["hash"]):
                return None
            self._verified[key] = token_id
        return Token(entry["name"], token_id, tuple(entry["scopes"]), entry["created"])

    # ---------------------------------------------------------------- changing
    def add(self, name: str, scopes: list[str]) -> tuple[Token, str]:
        """A new token: (its entry, the token text, shown once)."""
        if not _NAME.match(name):
            raise ConfigError(f"token name {name!r}: use letters, digits and . _ @ - "
                              "(up to 64 characters, starting with a letter or digit)")
        if not scopes:
            raise ConfigError("token add: give at least one --scope (pypi:upload, "
                              "conda:<channel>, read:<path>)")
        checked = tuple(dict.fromkeys(check_scope(s) for s in scopes))
        entries = dict(self._load())
        if any(e["name"] == name for e in entries.values()):
            raise ConfigError(f"a token named {name!r} exists already in {self.path}: "
                              "revoke it first or choose another name")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries[token_id] = {"name": name, "id": token_id, "scopes": list(checked),
                             "created": created, "salt": salt.hex(),
                             "hash": _hash(secret, salt), "scrypt": SCRYPT}
        self._save(entries)
        return Token(name, token_id, checked, created), f"{PREFIX}{token_id}_{secret}"

    def revoke(self, name: str) -> Token:
        entries = dict(self._load())
        for token_id, entry in entries.items():
            if entry["name"] == name:
                del entries[token_id]
                self._save(entries)
                return Token(name, token_id, tuple(entry["scopes"]), entry["created"])
        raise ConfigError(f"no token named {name!r} in {self.path} (cas-server token list "
                          "shows them)")

    def _save(self, entries: dict[str, dict]) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600, which is what the token file keeps
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{TOKENS_FILE}.", dir=self.state_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps({"version": 1, "tokens": sorted(
                    entries.values(), key=lambda e: e["name"])}, indent=1).encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None
