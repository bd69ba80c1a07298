"""The /archive dashboard in headless Chromium (Debian's `chromium`, driven by Playwright; no browser download):
log in, filter the job list, restore a job and see it leave the list, screenshots in tests/artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_api import TOKEN, ApiServer, archive_queue, fresh_database, seed, start_api_server
from tests.helpers import count

CHROMIUM = os.environ.get("TIERING_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
        reason=f"no Chromium at {CHROMIUM}: run `bash .ci/browser-deps.sh` (or `apt-get install chromium`) "
        "to enable the dashboard browser test",
    ),
]


@pytest.fixture(scope="module")
def dash(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with fresh_database(pg_server_url) as url:
        with start_api_server(url, tmp_path_factory.mktemp("dash")) as srv:
            yield srv


@pytest.fixture(scope="module")
def page(dash: ApiServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        external: list[str] = []
        pg.on("request", lambda req: external.append(req.url) if not req.url.startswith(dash.base) else None)
        pg.set_default_timeout(15_000)
        yield pg
        context.close()
        browser.close()
        assert not [u for u in external if not u.startswith("data:")], f"the dashboard reached out: {external}"
        expected = ("status of 400", "status of 401", "status of 403")  # the tests provoke these on purpose
        assert not [e for e in errors if not any(x in e for x in expected)], errors


def test_login_filter_restore_and_screenshots(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    keep = seed(url, "browser-a", 4)
    target = seed(url, "browser-b", 3, payload={"invoice": {"id": "INV-7"}, "amount": 12.5})
    seed(url, "browser-b", 2, status="Failed")
    with dash.client() as api:
        archive_queue(api, "browser-a")
        archive_queue(api, "browser-b")
    assert keep

    page.goto(dash.base + "/archive")
    page.locator("#login-form").wait_for(state="visible")
    page.fill("#login-token", "wrong")
    page.click("#login-form button[type=submit]")
    page.locator("#login-error").filter(has_text="not valid").wait_for()
    page.fill("#login-token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.locator("#app").wait_for(state="visible")
    page.locator("#cards .stat").first.wait_for()
    page.locator("#chart-daily svg rect[fill='#2563eb']").first.wait_for()
    assert page.locator("#cards").inner_text().count("9") >= 1  # 9 archived jobs
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    page.click("#tabs button[data-tab=jobs]")
    rows = page.locator("#jobs-table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 9
    page.fill("#jobs-filter input[name=queue]", "browser-b")
    page.select_option("#jobs-filter select[name=status]", "Completed")
    page.click("#jobs-filter button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#jobs-table tbody tr').length === 3")
    shown = {rows.nth(i).get_attribute("data-id") for i in range(rows.count())}
    assert shown == {str(t) for t in target}
    assert "1–3 of 3" in page.inner_text("#jobs-range")

    victim = str(target[0])
    page.locator(f"#jobs-table tr[data-id='{victim}'] a").click()  # payload view
    page.locator("#job-dialog pre.json").filter(has_text="INV-7").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-payload.png"))
    page.click("#job-dialog-close")

    page.locator(f"#jobs-table tr[data-id='{victim}'] button[data-action=restore]").click()
    page.locator(f"#jobs-table tr[data-id='{victim}']").wait_for(state="detached")
    page.wait_for_function("document.querySelectorAll('#jobs-table tbody tr').length === 2")
    assert "of 2" in page.inner_text("#jobs-range")
    page.locator("#toast").filter(has_text="restored").wait_for()
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "id = %s AND status = 'Pending'", (target[0],)) == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"), full_page=True)


def test_bulk_restore_preview_purge_preview_policy_and_other_tabs(dash: ApiServer, page: Any) -> None:
    page.click("#tabs button[data-tab=restore]")
    page.fill("#restore-form input[name=queue]", "browser-b")
    page.select_option("#restore-form select[name=status]", "Failed")
    page.click("#restore-form button[type=submit]")
    go = page.locator("#restore-preview button.primary")
    go.filter(has_text="Restore 2 jobs").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-bulk-restore.png"), full_page=True)
    go.click()
    page.locator("#restore-preview .notice.good").filter(has_text="Restored 2 jobs").wait_for()

    page.click("#tabs button[data-tab=purge]")
    page.fill("#purge-form input[name=older_than]", "0")
    page.fill("#purge-form input[name=queue]", "browser-a")
    page.click("#purge-form button[type=submit]")
    button = page.locator("#purge-preview button.danger")
    button.filter(has_text="Purge 4 jobs").wait_for()
    assert button.is_disabled()
    page.fill("#purge-preview input", "purge")
    assert button.is_enabled()
    page.screenshot(path=str(ARTIFACTS / "dashboard-purge.png"), full_page=True)
    button.click()
    page.locator("#purge-preview .notice.good").filter(has_text="Purged 4 jobs").wait_for()

    page.click("#tabs button[data-tab=policy]")
    page.locator("#policy-source").filter(has_text="defaults").wait_for()
    page.fill("#policy-text", '{"batch_size": 0}')
    page.click("#policy-save")
    page.locator("#policy-msg .notice.err").filter(has_text="batch_size").wait_for()
    page.fill("#policy-text", '{"archive_completed_after": "3d", "schedules": {"archive": "0 2 * * *"}}')
    page.click("#policy-save")
    page.locator("#policy-msg .notice.good").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-policy.png"), full_page=True)

    page.click("#tabs button[data-tab=schedule]")
    page.locator("#schedule-out code").filter(has_text="0 2 * * *").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-schedule.png"), full_page=True)

    page.click("#tabs button[data-tab=lifecycle]")
    page.locator("#lc-out .notice").first.wait_for()  # local store: no lifecycle support, said clearly

    page.click("#tabs button[data-tab=audit]")
    page.locator("#audit-table tbody tr").first.wait_for()
    assert "purge" in page.inner_text("#audit-table")
    page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"), full_page=True)

    page.click("#tabs button[data-tab=search]")
    page.fill("#search-form input[name=key]", "invoice.id")
    page.fill("#search-form input[name=value]", "INV-7")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#search-table tbody tr').length === 2")

    page.click("#tabs button[data-tab=overview]")
    page.locator("#cards .stat").first.wait_for()
    with httpx.Client(base_url=dash.base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        stats = api.get("/api/archive/stats").json()["data"]
    assert stats["total"]["jobs_restored_to_date"] == 3 and stats["total"]["jobs_purged_to_date"] == 4
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview-after.png"), full_page=True)
