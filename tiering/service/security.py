"""Credentials (bearer token or HTTP Basic, constant-time compare), request size limits, input checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiering.errors import ConfigError, TieringError
from tiering.settings import Settings

MAX_BODY_BYTES = 1024 * 1024
MAX_QUEUE_LENGTH = 255
# Queue names may hold anything Hammerwork accepts (spaces, '/', '=', unicode: the object layout slugs them),
# but never control characters, and they are bounded in length.
QUEUE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_QUEUE_RE = re.compile(QUEUE_PATTERN)


class AuthError(TieringError):
    """401: no credential; 403: a credential that does not match."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


class PayloadTooLarge(TieringError):
    http_status = 413


def check_queue(value: str | None, field: str = "queue") -> str | None:
    """The same rule the request models apply, for values that do not come through them."""
    if value is None:
        return None
    if not value or len(value) > MAX_QUEUE_LENGTH or not _QUEUE_RE.match(value):
        raise ConfigError(f"{field}: a queue name is 1..{MAX_QUEUE_LENGTH} characters without control characters")
    return value


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None
    open_reads: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        return cls(
            token=settings.api_token or None,
            basic_user=settings.basic_auth_user or None,
            basic_password=settings.basic_auth_password or None,
            open_reads=settings.api_open_reads,
        )

    @property
    def configured(self) -> bool:
        return bool(self.token) or bool(self.basic_user and self.basic_password)

    def describe(self) -> str:
        kinds = [k for k, on in (("bearer token", self.token), ("HTTP Basic", self.basic_user)) if on]
        text = " and ".join(kinds) if kinds else "none"
        return text + ("; reads open" if self.open_reads else "")

    def check(self, authorization: str | None, *, write: bool) -> str:
        """The principal (for the audit trail); AuthError unless the header carries a configured credential."""
        if not self.configured:
            return "local"  # only possible on a loopback address (serve refuses otherwise)
        if not authorization:
            if self.open_reads and not write:
                return "anonymous"
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>' or HTTP Basic")
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            if self.token and hmac.compare_digest(value.encode(), self.token.encode()):
                return "api-token"
            raise AuthError(403, "the bearer token is not valid")
        if scheme == "basic" and value:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise AuthError(401, "malformed HTTP Basic credentials") from None
            if sep and self.basic_user and self.basic_password:
                user_ok = hmac.compare_digest(user.encode(), self.basic_user.encode())
                password_ok = hmac.compare_digest(password.encode(), self.basic_password.encode())
                if user_ok and password_ok:
                    return user
            raise AuthError(403, "the HTTP Basic user name or password is not valid")
        raise AuthError(401, "unsupported Authorization scheme: use 'Bearer <token>' or HTTP Basic")


def _error_body(status: int, message: str) -> bytes:
    return json.dumps(
        {"success": False, "data": None, "error": message, "timestamp": datetime.now(UTC).isoformat()}
    ).encode()


class BodySizeLimit:
    """Refuse request bodies above `max_bytes` with 413 (by Content-Length, or while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = _error_body(413, f"request body too large (limit {self.max_bytes} bytes)")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send)
                return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") and length is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def redact(value: Any) -> Any:
    """Settings as JSON for /api/archive responses and logs: secrets replaced."""
    secret = re.compile(r"(token|password|secret|key_id)", re.I)
    if isinstance(value, dict):
        return {k: ("***" if secret.search(str(k)) and v else redact(v)) for k, v in value.items()}
    return value


OPEN_PATHS = ("/healthz", "/archive", "/archive/")
OPEN_PREFIXES = ("/archive/static/",)
READ_METHODS = ("GET", "HEAD", "OPTIONS")


class AuthGate:
    """Every route but /healthz and the dashboard's static shell (no data in it) needs a credential.

    Checked before routing and body parsing, so an unauthenticated request learns nothing (401/403 first).
    The principal (token holder or Basic user) is left in scope['state']['principal'] for the audit trail.
    """

    def __init__(self, app: ASGIApp, credentials: Credentials, open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.credentials = credentials
        self.open_paths = OPEN_PATHS + tuple(open_paths)  # e.g. /metrics when TIERING_METRICS_OPEN is set

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.open_paths or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        authorization = raw.decode("latin-1") if raw is not None else None
        try:
            who = self.credentials.check(authorization, write=scope.get("method") not in READ_METHODS)
        except AuthError as exc:
            body = _error_body(exc.http_status, str(exc))
            extra = [(b"www-authenticate", b'Bearer realm="tiering", Basic realm="tiering"')] if (
                exc.http_status == 401
            ) else []  # fmt: skip
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.http_status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    + extra,
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)
