"""Pure parts of the service: credential checks, purge cutoffs, queue checks, loopback detection."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from tiering.errors import ConfigError
from tiering.service.api import parse_older_than
from tiering.service.security import (
    AuthError,
    Credentials,
    check_queue,
    cross_site_refusal,
    host_allowed,
    is_loopback,
    parse_allowed_hosts,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials() -> None:
    creds = Credentials(token="t0ken", basic_user="ops", basic_password="p:w")
    assert creds.check("Bearer t0ken", write=True) == "api-token"
    assert creds.check(basic("ops", "p:w"), write=True) == "ops"  # ':' allowed in the password
    for header, status in [
        (None, 401),
        ("Bearer", 401),
        ("Bearer t0ke", 403),
        ("bearer t0kenX", 403),
        (basic("ops", "p"), 403),
        (basic("opz", "p:w"), 403),
        ("Basic !!!", 401),
        ("Token t0ken", 401),
    ]:
        with pytest.raises(AuthError) as err:
            creds.check(header, write=False)
        assert err.value.http_status == status, header
    open_reads = Credentials(token="x", open_reads=True)
    assert open_reads.check(None, write=False) == "anonymous"
    with pytest.raises(AuthError):
        open_reads.check(None, write=True)
    assert Credentials().check(None, write=True) == "local" and not Credentials().configured
    assert not Credentials(basic_user="u").configured


def test_parse_older_than() -> None:
    assert parse_older_than("365", NOW) == NOW - timedelta(days=365)
    assert parse_older_than("0", NOW) == NOW
    assert parse_older_than("90d", NOW) == NOW - timedelta(days=90)
    assert parse_older_than("PT12H", NOW) == NOW - timedelta(hours=12)
    assert parse_older_than("2024-01-31", NOW) == datetime(2024, 1, 31, tzinfo=UTC)
    assert parse_older_than("2024-01-31T10:00:00+02:00", NOW) == datetime(2024, 1, 31, 8, tzinfo=UTC)
    for bad in ("forever", "2024-13-45", "-5d", "1e9y", "100000000y", "99999999999999999d"):
        with pytest.raises(ConfigError, match="older_than"):
            parse_older_than(bad, NOW)


def test_check_queue() -> None:
    assert check_queue("emails / eu=1 ü") == "emails / eu=1 ü"
    assert check_queue(None) is None
    for bad in ("", "a\x00b", "tab\there", "q" * 256):
        with pytest.raises(ConfigError):
            check_queue(bad)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")


# --- cross-site use (issue 12.4) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("127.0.0.1:8080", (), True),
        ("127.0.0.2", (), True),
        ("[::1]:8080", (), True),
        ("localhost:8080", (), True),
        ("LOCALHOST.", (), True),
        ("attacker.example", (), False),
        ("attacker.example:8080", (), False),
        ("127.0.0.1.nip.io", (), False),  # resolves to loopback: refused anyway (no DNS lookup)
        ("", (), False),
        ("archive.internal:443", ("archive.internal",), True),
        ("other.internal", ("archive.internal",), False),
        ("anything.example", ("*",), True),
    ],
)
def test_host_allow_list(host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert host_allowed(host, allowed) is ok


def test_allowed_hosts_from_settings_and_bind_address() -> None:
    assert parse_allowed_hosts("a.example, B.example:8080", "10.0.0.5") == ("a.example", "b.example", "10.0.0.5")
    assert parse_allowed_hosts(None, "0.0.0.0") == ()


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("GET", {b"origin": b"http://evil.test", b"sec-fetch-site": b"cross-site"}, False),  # reads: CSP/CORS
        ("POST", {}, False),  # not a browser: judged by its credential
        ("POST", {b"sec-fetch-site": b"same-origin", b"origin": b"http://127.0.0.1:8080"}, False),
        ("POST", {b"origin": b"http://127.0.0.1:8080"}, False),
        ("POST", {b"sec-fetch-site": b"cross-site"}, True),
        ("POST", {b"sec-fetch-site": b"same-site"}, True),  # another port of the same host
        ("DELETE", {b"origin": b"http://evil.test"}, True),
        ("PUT", {b"origin": b"null"}, True),
        ("POST", {b"origin": b"http://127.0.0.1:9999"}, True),
        ("POST", {b"origin": b"http://127.0.0.1:8080", b"sec-fetch-site": b"cross-site"}, True),
    ],
)
def test_unsafe_requests_need_same_origin(method: str, headers: dict[bytes, bytes], refused: bool) -> None:
    reason = cross_site_refusal(method, {b"host": b"127.0.0.1:8080", **headers})
    assert (reason is not None) is refused, reason
