"""The /archive dashboard in headless Chromium (Debian's `chromium`, driven by Playwright; no browser download):
log in, filter the job list, restore a job (after a confirmation) and see it leave the list; per-day counts equal
the audit log's; every action that changes data asks first; the URL holds the tab, the filters and the selected
job; the CSV export equals the API's list; screenshots (1400x1000 and 420x900) in tests/artifacts/."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

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
    page.select_option("#jobs-filter select[name=queue]", "browser-b")
    page.select_option("#jobs-filter select[name=status]", "Completed")
    page.click("#jobs-filter button[type=submit]")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    shown = {rows.nth(i).get_attribute("data-id") for i in range(rows.count())}
    assert shown == {str(t) for t in target}
    assert "1–3 of 3" in page.inner_text("#jobs-range")

    victim = str(target[0])
    page.locator(f"#jobs-table tr[data-id='{victim}'] a").click()  # payload view
    page.locator("#job-dialog pre.json").filter(has_text="INV-7").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-payload.png"))
    page.click("#job-dialog-close")

    # a restore asks first: cancelling changes nothing
    page.locator(f"#jobs-table tr[data-id='{victim}'] button[data-action=restore]").click()
    page.locator("#confirm-dialog[open]").filter(has_text=victim).wait_for()
    page.click("#confirm-cancel")
    page.locator("#confirm-dialog").wait_for(state="hidden")
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "id = %s", (target[0],)) == 0
    assert rows.count() == 3
    page.locator(f"#jobs-table tr[data-id='{victim}'] button[data-action=restore]").click()
    page.click("#confirm-dialog[open] #confirm-ok")
    page.locator(f"#jobs-table tr[data-id='{victim}']").wait_for(state="detached")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    assert "of 2" in page.inner_text("#jobs-range")
    page.locator("#toast").filter(has_text="restored").wait_for()
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "id = %s AND status = 'Pending'", (target[0],)) == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"), full_page=True)


def test_bulk_restore_preview_purge_preview_policy_and_other_tabs(dash: ApiServer, page: Any) -> None:
    page.click("#tabs button[data-tab=restore]")
    page.select_option("#restore-form select[name=queue]", "browser-b")
    page.select_option("#restore-form select[name=status]", "Failed")
    page.click("#restore-form button[type=submit]")
    go = page.locator("#restore-preview button.primary")
    go.filter(has_text="Restore 2 jobs").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-bulk-restore.png"), full_page=True)
    go.click()
    page.locator("#confirm-dialog[open]").filter(has_text="Restore 2 jobs").wait_for()
    page.click("#confirm-ok")
    page.locator("#restore-preview .notice.good").filter(has_text="Restored 2 jobs").wait_for()

    page.click("#tabs button[data-tab=purge]")
    page.fill("#purge-form input[name=older_than]", "0")
    page.select_option("#purge-form select[name=queue]", "browser-a")
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
    page.click("#confirm-dialog[open] #confirm-ok")
    page.locator("#policy-msg .notice.err").filter(has_text="batch_size").wait_for()
    page.fill("#policy-text", '{"archive_completed_after": "3d", "schedules": {"archive": "0 2 * * *"}}')
    page.click("#policy-save")
    page.click("#confirm-dialog[open] #confirm-cancel")  # declined: nothing stored
    page.locator("#policy-source").filter(has_text="defaults").wait_for()
    page.click("#policy-save")
    page.click("#confirm-dialog[open] #confirm-ok")
    page.locator("#policy-msg .notice.good").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-policy.png"), full_page=True)

    page.click("#tabs button[data-tab=schedule]")
    page.locator("#schedule-out code").filter(has_text="0 2 * * *").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-schedule.png"), full_page=True)

    page.click("#tabs button[data-tab=lifecycle]")
    page.locator("#lc-out .notice").first.wait_for()  # local store: no lifecycle support, said clearly
    lifecycle = page.inner_text("#lc-out")
    assert page.locator("#lc-out .notice.err").count() == 1, lifecycle  # said once
    assert "null" not in lifecycle, lifecycle

    page.click("#tabs button[data-tab=audit]")
    page.locator("#audit-table tbody tr").first.wait_for()
    assert "purge" in page.inner_text("#audit-table")
    page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"), full_page=True)

    page.click("#tabs button[data-tab=search]")
    page.fill("#search-form input[name=key]", "invoice.id")
    page.fill("#search-form input[name=value]", "INV-7")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#search-table tbody tr")).to_have_count(2)
    _assert_hash(page, "#search?key=invoice.id&value=INV-7&limit=100")

    page.click("#tabs button[data-tab=overview]")
    page.locator("#cards .stat").first.wait_for()
    with httpx.Client(base_url=dash.base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        stats = api.get("/api/archive/stats").json()["data"]
    assert stats["total"]["jobs_restored_to_date"] == 3 and stats["total"]["jobs_purged_to_date"] == 4
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview-after.png"), full_page=True)


SHOTS = Path(os.environ.get("TIERING_SCREENSHOTS", str(ARTIFACTS)))


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _open(page: Any, dash: ApiServer, hash_: str) -> None:
    """Load /archive#<hash_> signed in (the credential lives in this tab's sessionStorage, as after a login)."""
    page.goto(dash.base + "/archive#" + hash_)
    page.evaluate("t => sessionStorage.setItem('tiering.credential', 'Bearer ' + t)", TOKEN)
    page.reload()


def _audit_per_day(url: str) -> dict[tuple[str, str], int]:
    """(day, series) -> jobs, summed from the audit log the way an auditor would (dry runs excluded)."""
    out: dict[tuple[str, str], int] = {}
    with psycopg.connect(url) as conn:
        for op, day, counts in conn.execute(
            "SELECT operation, (started_at AT TIME ZONE 'UTC')::date::text, counts FROM tiering_operations "
            "WHERE operation IN ('archive', 'flush') AND started_at > now() - interval '30 days'"
        ):
            if not counts or counts.get("dry_run"):
                continue
            n = counts.get("jobs_archived" if op == "archive" else "jobs_flushed")
            if isinstance(n, int) and n:
                out[(day, op)] = out.get((day, op), 0) + n
    return out


def test_per_day_chart_equals_the_audit_log_at_both_widths(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    seed(url, "chart-q", 5)
    with dash.client() as api:
        archive_queue(api, "chart-q")
        # a dry run is no archived job
        dry = api.post("/api/archive/run", json={"queue": "chart-q", "dry_run": True, "wait_seconds": 30})
        assert dry.status_code == 200
    expected = _audit_per_day(url)
    today = datetime.now(UTC).date().isoformat()
    assert expected.get((today, "archive"), 0) >= 5 and expected.get((today, "flush"), 0) >= 5

    for width, height, name in ((1400, 1000, "overview-1400x1000.png"), (420, 900, "overview-420x900.png")):
        page.set_viewport_size({"width": width, "height": height})
        _open(page, dash, "overview")
        page.locator("#chart-daily svg rect[data-series]").first.wait_for()
        shown = page.eval_on_selector_all(
            "#chart-daily rect[data-series]", "rs => rs.map(r => [r.dataset.day, r.dataset.series, +r.dataset.value])"
        )
        assert {(d, s): v for d, s, v in shown} == expected
        assert len(shown) == len(expected)  # one bar per (day, series): side by side, never a stack
        # y-axis labels fit left of the plot: none starts before x=0 in the drawn SVG
        boxes = page.eval_on_selector_all("#chart-daily text.axis", "ts => ts.map(t => t.getBBox().x)")
        assert boxes and min(boxes) >= 0
        chart_w = page.eval_on_selector("#chart-daily svg", "s => s.getBoundingClientRect().width")
        card_w = page.eval_on_selector("#chart-daily", "c => c.clientWidth")
        assert abs(chart_w - card_w) <= 2, (chart_w, card_w)  # drawn at the card's width: 11px labels at any width
        # every stat card shows its whole value (the "Newest archived" date was cut off)
        clipped = page.eval_on_selector_all(
            "#cards .stat .value", "vs => vs.filter(v => v.scrollWidth > v.clientWidth + 1).map(v => v.textContent)"
        )
        assert clipped == []
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
        _shot(page, name)
    page.set_viewport_size({"width": 1440, "height": 900})


def test_axis_labels_are_compact_for_large_counts(dash: ApiServer, page: Any) -> None:
    _open(page, dash, "overview")
    page.locator("#cards .stat").first.wait_for()
    labels = page.evaluate(
        """() => { lastTrends = [{day: '2026-01-01', archive: 200000, flush: 199000},
                                 {day: '2026-01-02', archive: 0, flush: 1000}];
                   drawDaily();
                   return Array.from(document.querySelectorAll('#chart-daily text.axis')).map(t => t.textContent); }"""
    )
    assert "200k" in labels and "0" in labels, labels
    boxes = page.eval_on_selector_all("#chart-daily text.axis", "ts => ts.map(t => t.getBBox().x)")
    assert min(boxes) >= 0


def test_url_state_round_trips(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    ids = seed(url, "url-q", 3, status="Failed")
    seed(url, "url-q", 2)
    with dash.client() as api:
        archive_queue(api, "url-q")
    # a shared link opens the tab with its filters applied
    _open(page, dash, "jobs?queue=url-q&status=Failed")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    assert page.input_value("#jobs-filter select[name=queue]") == "url-q"
    assert page.input_value("#jobs-filter select[name=status]") == "Failed"
    assert {page.locator("#jobs-table tbody tr").nth(i).get_attribute("data-id") for i in range(3)} == {
        str(i) for i in ids
    }
    # the selected job goes into the URL, and a reload opens it again
    page.locator(f"#jobs-table tr[data-id='{ids[0]}'] a").click()
    page.locator("#job-dialog[open]").wait_for()
    _assert_hash(page, f"#jobs?queue=url-q&status=Failed&job={ids[0]}")
    page.reload()
    page.locator("#job-dialog[open]").filter(has_text=str(ids[0])).wait_for()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    page.click("#job-dialog-close")
    _assert_hash(page, "#jobs?queue=url-q&status=Failed")
    # filters typed in the form go into the URL; back returns to the previous filters
    page.select_option("#jobs-filter select[name=status]", "Completed")
    page.click("#jobs-filter button[type=submit]")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    _assert_hash(page, "#jobs?queue=url-q&status=Completed&limit=50")
    page.go_back()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    assert page.input_value("#jobs-filter select[name=status]") == "Failed"
    # #search opens the search tab on load; with key and value it runs the search
    _open(page, dash, "search")
    page.locator("section[data-panel=search].active").wait_for()
    assert page.locator("#tabs button.active").inner_text() == "Search"
    _open(page, dash, "search?key=n&value=1&queue=url-q")  # n=1: one Failed and one Completed job
    expect(page.locator("#search-table tbody tr")).to_have_count(2)
    assert page.input_value("#search-form input[name=key]") == "n"
    # the audit tab keeps its filter in the URL too
    _open(page, dash, "audit?operation=flush")
    page.locator("#audit-table tbody tr").first.wait_for()
    ops = page.eval_on_selector_all("#audit-table tbody tr td:nth-child(2)", "ts => ts.map(t => t.textContent)")
    assert set(ops) == {"flush"}


def test_csv_export_equals_the_api_list(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    seed(url, "csv-q", 3, payload={"k": 'quote " and, comma'})
    failed = seed(url, "csv-q", 1, status="Failed")
    with psycopg.connect(url) as conn:
        error = 'boom, "quoted"\nline 2'
        conn.execute("UPDATE hammerwork_jobs SET error_message = %s WHERE id = %s", (error, failed[0]))
        conn.commit()
    with dash.client() as api:
        archive_queue(api, "csv-q")
        listed = api.get("/api/archive/jobs", params={"queue": "csv-q", "limit": 1000}).json()["data"]["items"]
    assert len(listed) == 4 and any(i["error_message"] for i in listed)
    _open(page, dash, "jobs?queue=csv-q&limit=25")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(4)
    assert "boom" in page.inner_text("#jobs-table")  # the error column
    with page.expect_download() as info:
        page.click("#jobs-export")
    text = Path(info.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(listed)
    for row, item in zip(rows, listed, strict=True):
        assert row == {k: ("" if item.get(k) is None else str(item[k])) for k in row}
        assert set(item) <= set(row)


def test_multi_select_bulk_restore_with_preview(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    ids = seed(url, "multi-q", 4)
    with dash.client() as api:
        archive_queue(api, "multi-q")
    page.set_viewport_size({"width": 1400, "height": 1000})
    _open(page, dash, "jobs?queue=multi-q")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(4)
    chosen = [str(ids[0]), str(ids[2])]
    for job in chosen:
        page.check(f"#jobs-table input[data-select='{job}']")
    assert page.inner_text("#jobs-restore-selected") == "Restore selected (2)"
    _shot(page, "jobs-1400x1000.png")
    page.click("#jobs-restore-selected")
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    preview = dialog.locator("tbody tr")
    assert preview.count() == 2 and {preview.nth(i).get_attribute("data-id") for i in range(2)} <= set(chosen) | {None}
    assert all(j in dialog.inner_text() or j[:8] in dialog.inner_text() for j in chosen)
    _shot(page, "bulk-restore-preview-1400x1000.png")
    page.click("#confirm-cancel")
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "queue_name = 'multi-q'") == 0  # declined: nothing restored
    page.click("#jobs-restore-selected")
    page.click("#confirm-dialog[open] #confirm-ok")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    with psycopg.connect(url) as conn:
        restored = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs WHERE queue_name = 'multi-q'")}
    assert restored == set(chosen)
    assert page.inner_text("#jobs-restore-selected") == "Restore selected (0)"
    page.set_viewport_size({"width": 420, "height": 900})
    page.reload()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    _shot(page, "jobs-420x900.png")
    page.set_viewport_size({"width": 1440, "height": 900})


def test_run_now_asks_first_and_the_page_follows_the_operation(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    seed(url, "run-q", 3)
    _open(page, dash, "overview")
    page.locator("#cards .stat").first.wait_for()
    page.click("#run-now")
    page.locator("#confirm-dialog[open]").filter(has_text="Run archival now?").wait_for()
    page.click("#confirm-cancel")
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "queue_name = 'run-q'") == 3  # declined: nothing moved
    page.click("#run-now")
    page.click("#confirm-dialog[open] #confirm-ok")
    page.locator("#run-status").filter(has_text="archived").wait_for()
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "queue_name = 'run-q'") == 0
    # purge's "Older than" has a unit
    page.goto(dash.base + "/archive#purge")
    assert page.locator("#purge-form select[name=older_than_unit] option").all_inner_texts()[:2] == ["days", "weeks"]
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.fill("#purge-form input[name=older_than]", "2")
    page.select_option("#purge-form select[name=older_than_unit]", "365")
    page.click("#purge-form button[type=submit]")
    page.locator("#purge-preview dl").filter(has_text="730 days ago").wait_for()
    assert "older_than_unit=365" in page.evaluate("location.hash")
    _shot(page, "purge-1400x1000.png")
    page.click("#tabs button[data-tab=lifecycle]")
    page.locator("#lc-out .notice").first.wait_for()
    _shot(page, "lifecycle-1400x1000.png")
    page.set_viewport_size({"width": 1440, "height": 900})


def test_the_job_list_follows_an_operation_without_a_click(dash: ApiServer, page: Any) -> None:
    url = dash.env["TIERING_DATABASE_URL"]
    ids = seed(url, "auto-q", 3)
    _open(page, dash, "jobs?queue=auto-q")
    page.locator("#jobs-table .empty").wait_for()
    with dash.client() as api:  # started elsewhere (another tab, a script): the page notices by itself
        started = api.post("/api/archive/run", json={"queue": "auto-q", "wait_seconds": 0})
        assert started.status_code in (200, 202), started.text
    from playwright.sync_api import expect

    expect(page.locator("#jobs-table tbody tr")).to_have_count(3, timeout=30_000)
    shown = {page.locator("#jobs-table tbody tr").nth(i).get_attribute("data-id") for i in range(3)}
    assert shown == {str(i) for i in ids}
    page.locator("#toast").filter(has_text="Operation finished").wait_for(timeout=30_000)


def _assert_hash(page: Any, want: str) -> None:
    """The URL's fragment becomes `want`: the dashboard sets it from events (a dialog's "close" is dispatched as
    a task after close() returns), so it is waited for up to 5 s before the check, not read at once."""
    try:
        page.wait_for_function("want => location.hash === want", arg=want, timeout=5000)
    except PlaywrightTimeoutError:
        pass  # the assertion below says what the fragment was
    assert page.evaluate("location.hash") == want
