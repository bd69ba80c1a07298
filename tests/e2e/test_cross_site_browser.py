"""The service resists cross-site use (issue 12.4), in headless Chromium.

`tiering serve` on loopback WITHOUT a credential (allowed there) and a page on another origin (a second loopback
server on 127.0.0.2): the page's auto-submitting form and its fetches (no-cors, credentials included) cannot
restore, run, erase or purge; a Host that is not loopback (DNS rebinding) is refused; the dashboard sends a
strict CSP, X-Frame-Options DENY, Referrer-Policy and nosniff, cannot be framed by the other origin, and still
restores a job through its own same-origin requests.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_api import ApiServer, archive_queue, fresh_database, seed, start_api_server
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM
from tests.helpers import count

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (.ci/browser-deps.sh)"),
]
NO_CREDENTIAL = {"TIERING_API_TOKEN": "", "TIERING_BASIC_AUTH_USER": "", "TIERING_BASIC_AUTH_PASSWORD": ""}


@pytest.fixture(scope="module")
def open_server(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with fresh_database(pg_server_url) as url:
        with start_api_server(url, tmp_path_factory.mktemp("xsite"), NO_CREDENTIAL) as srv:
            yield srv


def _attacker(html: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A page on another origin (127.0.0.2, its own port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.2:{server.server_address[1]}/"


def _state(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            "hot": count(conn, "hammerwork_jobs"),
            "index_live": count(conn, "tiering_job_index", "restored_at IS NULL"),
            "changes": count(conn, "tiering_operations", "operation IN ('restore', 'purge', 'erase', 'archive')"),
        }


def test_another_origin_cannot_restore_run_erase_or_purge(open_server: ApiServer) -> None:
    url, base = open_server.env["TIERING_DATABASE_URL"], open_server.base
    victims = seed(url, "xsite", 3)
    with open_server.client(auth=False) as api:  # no credential configured: a plain client is let in
        archive_queue(api, "xsite")
    before = _state(url)
    assert before["index_live"] == 3
    victim = str(victims[0])
    html = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{base}/api/archive/jobs/{victim}/restore"></form>
<script>
const done = [];
async function hit(method, path, body) {{
  try {{
    await fetch("{base}" + path, {{method, mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body}});
    done.push(path + ":sent");
  }} catch (e) {{ done.push(path + ":blocked"); }}
}}
(async () => {{
  await hit("POST", "/api/archive/jobs/{victim}/restore", "{{}}");
  await hit("POST", "/api/archive/restore", '{{"queue": "xsite"}}');
  await hit("POST", "/api/archive/run", '{{"queue": "xsite"}}');
  await hit("POST", "/api/archive/erase", '{{"ids": ["{victim}"], "confirm": true}}');
  await hit("DELETE", "/api/archive/purge", '{{"older_than": "1s", "confirm": true}}');
  try {{  // a CORS request (custom header, JSON): the preflight is never granted
    await fetch("{base}/api/archive/restore", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json", "X-Tiering-Request": "1"}}, body: '{{"queue": "xsite"}}'}});
    done.push("cors:sent");
  }} catch (e) {{ done.push("cors:blocked"); }}
  document.title = "fetched";
  window.results = done;
  document.getElementById("f").submit();
}})();
</script></body></html>"""
    attacker, attacker_url = _attacker(html)
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            responses: list[tuple[str, int]] = []
            page.on("response", lambda r: responses.append((r.url, r.status)) if r.url.startswith(base) else None)
            page.goto(attacker_url)
            page.wait_for_url(f"{base}/**", timeout=20_000)  # the form navigated to the API...
            page.wait_for_load_state()
            text = page.inner_text("body")
            browser.close()
    finally:
        attacker.shutdown()
    assert "cross-site request refused" in text or "cross-origin request refused" in text, text  # ...and was refused
    form = [s for u, s in responses if u.endswith(f"/jobs/{victim}/restore")]
    assert form and all(s == 403 for s in form), responses
    assert _state(url) == before  # nothing restored, run, erased or purged

    # the same-origin client still acts (non-browser requests carry no Origin)
    with open_server.client(auth=False) as api:
        r = api.post(f"/api/archive/jobs/{victim}/restore", json={})
        assert r.status_code == 200, r.text
        spoof = api.post("/api/archive/restore", json={"queue": "xsite"}, headers={"Origin": "http://evil.test"})
        assert spoof.status_code == 403 and "cross-origin" in spoof.json()["error"]
        site = api.post("/api/archive/restore", json={"queue": "xsite"}, headers={"Sec-Fetch-Site": "same-site"})
        assert site.status_code == 403
    assert _state(url)["hot"] == before["hot"] + 1


def test_rebound_host_is_refused_and_dashboard_headers_are_strict(open_server: ApiServer) -> None:
    base = open_server.base
    port = base.rsplit(":", 1)[1]
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
        r = httpx.get(base + "/api/archive/jobs", headers={"Host": host})
        assert r.status_code == 421, (host, r.status_code)
        assert "TIERING_ALLOWED_HOSTS" in r.json()["error"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(base + "/healthz", headers={"Host": host}).status_code == 200, host
    page = httpx.get(base + "/archive")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    unauthorized = httpx.get(base + "/api/archive/jobs", headers={"Authorization": "Bearer nope"})
    assert "basic" not in unauthorized.headers.get("www-authenticate", "").lower()


def test_dashboard_cannot_be_framed_and_still_restores(open_server: ApiServer) -> None:
    url, base = open_server.env["TIERING_DATABASE_URL"], open_server.base
    jobs = seed(url, "xframe", 2)
    with open_server.client(auth=False) as api:
        archive_queue(api, "xframe")
    victim = str(jobs[0])
    attacker, attacker_url = _attacker(f'<!doctype html><iframe id="x" src="{base}/archive"></iframe>')
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            framed = browser.new_page()
            framed.goto(attacker_url)
            framed.wait_for_timeout(1500)
            frame = next((f for f in framed.frames if f.url.startswith(base)), None)
            blocked = frame is None or frame.evaluate("() => document.querySelector('#app') === null")
            assert blocked, "the dashboard rendered inside another origin's frame"

            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(base + "/archive")
            page.locator("#app").wait_for(state="visible", timeout=20_000)
            page.click("#tabs button[data-tab=jobs]")
            page.locator(f"#jobs-table tr[data-id='{victim}'] button[data-action=restore]").click()
            page.click("#confirm-dialog[open] #confirm-ok")
            page.locator(f"#jobs-table tr[data-id='{victim}']").wait_for(state="detached", timeout=20_000)
            browser.close()
    finally:
        attacker.shutdown()
    assert not [e for e in errors if "Content Security Policy" in e], errors
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "id = %s", (victim,)) == 1  # restored by the dashboard itself
