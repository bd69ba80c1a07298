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


# Only a Bearer challenge: a `Basic` challenge makes browsers prompt for, and then cache and replay, the
# credential on every request to this origin (cross-site POSTs included). HTTP Basic still works for clients
# that send it (curl -u, the dashboard's login, which keeps it in sessionStorage and sends it itself).
CHALLENGE = 'Bearer realm="tiering"'

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
            extra = [(b"www-authenticate", CHALLENGE.encode())] if (
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


# --- cross-site use -------------------------------------------------------------------------------

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
UNSAFE_OK_SITES = (b"same-origin", b"none")  # Sec-Fetch-Site values a browser sends for this page's own requests
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def split_host(value: str) -> str:
    """`Host`/netloc -> the host name or address alone, lower-case (`[::1]:8080` -> `::1`)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.rsplit(":", 1)[0]
    return value.rstrip(".")


def parse_allowed_hosts(text: str | None, bind_host: str | None = None) -> tuple[str, ...]:
    """Host names answered besides loopback ones: the configured list, plus the address `serve` binds when it
    names one (not a wildcard)."""
    hosts = [split_host(h) for h in (text or "").split(",") if h.strip()]
    if bind_host and bind_host not in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        hosts.append(split_host(bind_host))
    return tuple(dict.fromkeys(hosts))


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Loopback names and addresses always; others only when listed ("*" = any). No DNS lookup: a rebinding
    attacker's name that resolves to 127.0.0.1 is still refused."""
    name = split_host(host)
    if not name:
        return False
    if "*" in allowed or name in allowed or name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cross_site_refusal(method: str, headers: dict[bytes, bytes]) -> str | None:
    """Why an unsafe request must be refused as cross-site, or None.

    Browsers send `Origin` with every cross-origin POST/PUT/DELETE and `Sec-Fetch-Site` with every request;
    either one naming another site refuses the request. Clients that are not browsers (curl, scripts) send
    neither and are judged by their credential alone. The dashboard also sends `X-Tiering-Request`, which a
    cross-origin page cannot add without a CORS preflight that this server never grants."""
    if method in READ_METHODS:
        return None
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.lower() not in UNSAFE_OK_SITES:
        return f"cross-site request refused (Sec-Fetch-Site: {site.decode('latin-1')})"
    origin = headers.get(b"origin")
    if origin is not None:
        text = origin.decode("latin-1").strip()
        host = headers.get(b"host", b"").decode("latin-1")
        netloc = text.split("://", 1)[1] if "://" in text else ""
        if text == "null" or not netloc or netloc.lower().rstrip("/") != host.lower():
            return f"cross-origin request refused (Origin: {text})"
    return None


class CrossSiteGuard:
    """Outermost middleware: a Host allow-list for every request (DNS rebinding), same-origin evidence for
    unsafe methods (CSRF), and the browser security headers (CSP, frame, referrer, sniffing) on every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = _error_body(status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + SECURITY_HEADERS,
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_allowed(host, self.allowed_hosts):
            await self._refuse(
                send, 421, f"host {host!r} is not served here (add it to TIERING_ALLOWED_HOSTS to allow it)"
            )
            return
        refusal = cross_site_refusal(scope.get("method", "GET"), headers)
        if refusal is not None:
            await self._refuse(send, 403, refusal)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in present],
                }
            await send(message)

        await self.app(scope, receive, with_headers)
