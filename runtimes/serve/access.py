"""Who may talk to ``edgelstm serve``: bearer tokens, and no open port without them.

Tokens come from ``--token-file`` (one per line, so each client's token can be revoked on
its own) or the ``EDGELSTM_SERVE_TOKEN`` environment variable. Every request except
``GET /healthz`` (and ``/metrics`` with ``--metrics-public``) must carry
``Authorization: Bearer <token>``; a WebSocket sends it with its handshake. A request
without a valid token is answered 401 before any route runs, so it never creates a stream.

The check is constant time: the presented token's SHA-256 digest is compared with every
known digest by :func:`hmac.compare_digest`, matched or not, so neither the position of a
wrong byte nor which token matched shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError

__all__ = [
    "MIN_TOKEN_CHARS",
    "OWNER_SCOPE_KEY",
    "TOKEN_ENV",
    "BearerTokenGate",
    "ServeAccess",
    "check_exposure",
    "read_tokens",
]

#: The environment variable holding one token (a token file holds several).
TOKEN_ENV = "EDGELSTM_SERVE_TOKEN"
#: Shorter tokens are refused: a guessable token is no authentication.
MIN_TOKEN_CHARS = 16
#: How to make a token, for the messages that ask for one.
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
#: Paths open without a token: a supervisor's liveness probe has no secret to send.
OPEN_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class ServeAccess:
    """The tokens a client may present (as SHA-256 digests) and what is open without one.

    No digests means no authentication (loopback, or ``--insecure-no-auth``).
    """

    token_digests: tuple[bytes, ...] = ()
    metrics_public: bool = False

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], *, metrics_public: bool = False) -> ServeAccess:
        digests = tuple(dict.fromkeys(_digest(token) for token in tokens))
        return cls(token_digests=digests, metrics_public=metrics_public)

    @property
    def required(self) -> bool:
        return bool(self.token_digests)

    @property
    def owners(self) -> tuple[str, ...]:
        """Every token's fingerprint, as :meth:`owner` names it, in a fixed order."""
        return tuple(_fingerprint(digest) for digest in self.token_digests)

    def is_open(self, path: str) -> bool:
        """Whether ``path`` is served without a token."""
        return path in OPEN_PATHS or (self.metrics_public and path == "/metrics")

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries a known bearer token."""
        return self.owner(authorization) is not None

    def owner(self, authorization: str | None) -> str | None:
        """Who presents ``authorization``: a short fingerprint of the matching token (the
        owner of the streams it opens), "" when no token is required, None when refused."""
        if not self.required:
            return ""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        digest = _digest(presented.strip())
        matched: bytes | None = None
        for known in self.token_digests:  # every digest, so timing does not show which
            if hmac.compare_digest(digest, known):
                matched = known
        return None if matched is None else _fingerprint(matched)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _fingerprint(digest: bytes) -> str:
    """A token's short public name: what its streams are keyed by, never the token."""
    return digest[:8].hex()


def read_tokens(token_file: Path | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The tokens of ``token_file`` (one per line; blank lines are skipped) and of
    :data:`TOKEN_ENV`; empty when neither is given. A short or unreadable token is refused
    with the file and line."""
    environ = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"--token-file {token_file}: cannot read it ({exc}); give a UTF-8 text file "
                "with one token per line"
            ) from None
        found += [
            (f"{token_file}, line {number}", line.strip())
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
        if not found:
            raise InvalidInputError(
                f"--token-file {token_file} holds no token; write one per line (make one "
                f"with {MAKE_TOKEN})"
            )
    if environ.get(TOKEN_ENV, "").strip():
        found.append((TOKEN_ENV, environ[TOKEN_ENV].strip()))
    for where, token in found:
        if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
            raise InvalidInputError(
                f"{where}: a token must be at least {MIN_TOKEN_CHARS} characters without "
                f"spaces; make one with {MAKE_TOKEN}"
            )
    return [token for _, token in found]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(host: str, access: ServeAccess, *, insecure_no_auth: bool) -> str | None:
    """Refuse to listen beyond this machine without tokens; with ``insecure_no_auth`` the
    warning to print instead (None when there is nothing to warn about)."""
    if access.required or _is_loopback(host):
        return None
    if not insecure_no_auth:
        raise InvalidInputError(
            f"--host {host} listens beyond this machine, and no token is set: anyone who can "
            f"reach the port could open streams. Give --token-file FILE or {TOKEN_ENV} "
            f"(make a token with {MAKE_TOKEN}), listen on 127.0.0.1 behind a proxy that "
            "authenticates, or pass --insecure-no-auth to accept the risk"
        )
    return (
        f"--host {host} with --insecure-no-auth: anyone who can reach this port can open "
        "streams, read the model's description and fill --max-streams"
    )


UNAUTHORIZED = json.dumps(
    {"error": "a valid token is required: send the header 'Authorization: Bearer <token>'"}
).encode()


#: The scope key where :class:`BearerTokenGate` leaves the owner of the request's streams.
OWNER_SCOPE_KEY = "edgelstm.owner"


class BearerTokenGate:
    """ASGI middleware answering 401 to any request (HTTP or WebSocket handshake) without a
    known token, before the routes see it; ``on_refused`` counts the refusal. An admitted
    request carries its token's fingerprint in ``scope[OWNER_SCOPE_KEY]``, so streams of
    different tokens never meet even under the same id."""

    def __init__(
        self, app: Any, access: ServeAccess, on_refused: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.access = access
        self.on_refused = on_refused

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or self.access.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        owner = self.access.owner(_header(scope, b"authorization"))
        if owner is not None:
            await self.app({**scope, OWNER_SCOPE_KEY: owner}, receive, send)
            return
        if self.on_refused is not None:
            self.on_refused()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(UNAUTHORIZED)).encode()),
            (b"www-authenticate", b'Bearer realm="edgelstm"'),
        ]
        if kind == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": UNAUTHORIZED})
            return
        await receive()  # the handshake's websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            start = {"type": "websocket.http.response.start", "status": 401, "headers": headers}
            await send(start)
            await send({"type": "websocket.http.response.body", "body": UNAUTHORIZED})
        else:  # the server cannot send a body: it refuses the handshake with 403
            await send({"type": "websocket.close", "code": 1008})


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
