"""Who is asking: the token a request presents, and whether it may do what it asks.

Owns reading `Authorization` (HTTP Basic with the token as the password, the way twine
sends `__token__:<token>`, or `Bearer <token>`), the answers when it may not (401 with a
`WWW-Authenticate` challenge when there is no valid token, 403 when the token lacks the
scope), and the one-line text replies every upload handler sends.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ..errors import ConfigError
from ..text import safe
from .app import Handled
from .tokens import Token, TokenStore

CHALLENGE = ("www-authenticate", 'Basic realm="cas-server", charset="UTF-8"')


@dataclass(frozen=True)
class Refusal(Exception):
    """A request answered with `status` and the one-line `reason`."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def presented(headers: dict[str, str]) -> str | None:
    """The token in the Authorization header, or None when there is none."""
    value = headers.get("authorization", "").strip()
    scheme, _, credentials = value.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, _, password = decoded.partition(":")
        return password or None
    return None


def authorize(store: TokenStore, headers: dict[str, str], scope: str) -> Token:
    """The token of the request when it holds `scope`; Refusal (401 or 403) otherwise."""
    text = presented(headers)
    if text is None:
        raise Refusal(401, f"a token with scope {scope} is needed (HTTP Basic "
                      "__token__:<token>, or Authorization: Bearer <token>)", (CHALLENGE,))
    try:
        token = store.verify(text)
    except ConfigError as exc:  # a damaged token file: nobody is let in, and it says why
        raise Refusal(500, f"cannot check tokens: {exc}") from None
    if token is None:
        raise Refusal(401, "the token is unknown or was revoked", (CHALLENGE,))
    if not token.allows(scope):
        raise Refusal(403, f"token {token.name!r} does not have scope {scope}")
    return token


def client_address(scope) -> str:
    return scope.client.rpartition(":")[0].strip("[]") or "-"


def reply(protocol, status: int, message: str,
          headers: tuple[tuple[str, str], ...] = ()) -> Handled:
    """Send a one-line plain-text answer."""
    body = (safe(message) + "\n").encode("utf-8", "backslashreplace")
    protocol.response_bytes(status, [("content-type", "text/plain; charset=utf-8"),
                                     *headers], body)
    return Handled(status, len(body))
