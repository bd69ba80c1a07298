"""`tiering archive list | search | show | restore`: find archived jobs and bring them back."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from tiering.cli import output
from tiering.cli.common import (
    FormatOption,
    InitiatedByOption,
    QueueOption,
    YesOption,
    confirm,
    context,
    default_initiator,
)
from tiering.cli.output import Format
from tiering.cli.signals import MetricsFileOption, run_signals
from tiering.errors import InvalidInputError, SafetyAbort
from tiering.inputs import (
    MAX_LIMIT,
    MAX_OFFSET,
    parse_job_id,
    parse_key_path,
    parse_match,
    parse_moment,
    parse_statuses,
)

StatusOption = Annotated[
    str | None,
    typer.Option("--status", "-s", help="Completed, Failed, Dead or TimedOut (comma-separated for several)."),
]
AfterOption = Annotated[
    str | None,
    typer.Option(
        "--archived-after",
        help="A date (2024-01-31, UTC midnight), a date-time, or an age back from now (7d, 12h); inclusive. "
        "The same forms as --since and --older-than.",
    ),
]
BeforeOption = Annotated[
    str | None,
    typer.Option("--archived-before", help="A date, a date-time, or an age back from now (7d); exclusive."),
]

PAYLOAD_CHARS = 80  # a search table shows this much of each payload
LIST_COLUMNS = ["job_id", "queue_name", "status", "created_at", "archived_at", "tier", "storage_class",
                "payload_bytes", "object_key"]  # fmt: skip


def parse_when(value: str | None, *, name: str) -> datetime | None:
    """--archived-after/--archived-before take what --since takes (and the API's archived_after)."""
    return parse_moment(value, name=name)


def _dates(after: str | None, before: str | None) -> tuple[datetime | None, datetime | None]:
    return parse_when(after, name="--archived-after"), parse_when(before, name="--archived-before")


def list_cmd(
    ctx: typer.Context,
    queue: QueueOption = None,
    status: StatusOption = None,
    archived_after: AfterOption = None,
    archived_before: BeforeOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=MAX_LIMIT)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, max=MAX_OFFSET)] = 0,
    exact_total: Annotated[
        bool,
        typer.Option(
            "--exact-total",
            help="Count every matching job (past 10,000 per tier the total is otherwise PostgreSQL's estimate, "
            "marked as such).",
        ),
    ] = False,
    after: Annotated[
        str | None,
        typer.Option("--after", help="A previous page's next_cursor (--format json): the page starts after it."),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Archived jobs (staging and cold), newest archived first, with the total (estimated past 10,000 a tier)."""
    after_at, before_at = _dates(archived_after, archived_before)
    parse_statuses(status)
    from tiering.engine.query import list_archived_jobs

    c = context(ctx)
    page = list_archived_jobs(c, queue=queue, status=status, archived_after=after_at, archived_before=before_at,
                              limit=limit, offset=offset, exact_total=exact_total, after=after)  # fmt: skip
    rows = [i.to_dict() for i in page.items]
    if fmt is Format.table:
        total = f"about {page.total:,} (estimated; --exact-total counts)" if page.total_is_estimate else str(page.total)
        output.print_table(rows, LIST_COLUMNS[:-1], title=f"archived jobs {offset + 1}-{offset + len(rows)} of {total}")
        return
    output.emit(page.to_dict(), fmt, rows=rows, columns=LIST_COLUMNS)


def search_cmd(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Payload key; dotted path for nested keys (customer.id).")],
    value: Annotated[str, typer.Argument(help="Value as typed: 12345 matches the number 12345 and the string.")],
    queue: QueueOption = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT)] = None,
    archived_after: AfterOption = None,
    archived_before: BeforeOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Archived jobs whose payload has KEY equal to VALUE (staging and cold objects)."""
    parse_key_path(key)
    after_at, before_at = _dates(archived_after, archived_before)
    from tiering.engine.query import search_archived_jobs

    c = context(ctx)
    result = search_archived_jobs(c, key, value, queue=queue, limit=limit,
                                  archived_after=after_at, archived_before=before_at)  # fmt: skip
    if result.objects_skipped:
        output.warn(f"{len(result.objects_skipped)} object(s) in GLACIER/DEEP_ARCHIVE were not searched")
    rows = [i.to_dict() for i in result.items]
    if fmt is Format.table:
        shown = [r | {"payload": output.shorten(r.get("payload"), PAYLOAD_CHARS)} for r in rows]
        output.print_table(shown, ["job_id", "queue_name", "status", "archived_at", "tier", "payload"],
                           title=f"{len(rows)} match(es) for {key} = {value}")  # fmt: skip
        if any(len(output.to_json(r.get("payload"))) > PAYLOAD_CHARS for r in rows):
            output.info(f"payloads cut at {PAYLOAD_CHARS} characters: `archive show JOB_ID --payload` or --format json")
        if result.truncated:
            output.info(f"showing the newest {limit}; more jobs match")
        return
    output.emit(result.to_dict(), fmt, rows=rows, columns=LIST_COLUMNS)


def show_cmd(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's UUID.")],
    payload: Annotated[
        bool, typer.Option("--payload", help="Read the payload and every column (cold: 2 reads).")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """One archived job: where it lies, and with --payload its payload and columns."""
    parse_job_id(job_id)
    from tiering.engine.query import get_archived_job

    c = context(ctx)
    job = get_archived_job(c, job_id, with_payload=payload)
    data = job.to_dict()
    if fmt is not Format.table:
        output.emit(data, fmt)
        return
    record = data.pop("record", None)
    output.print_kv({k: v for k, v in data.items() if k != "payload"}, title=f"job {job.job_id}")
    if record:
        output.print_kv({k: v for k, v in record.items() if k != "payload"}, title="archived columns")
    if "payload" in data:
        output.stdout.print_json(output.to_json(data["payload"]))


def restore_cmd(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="Restore this job; or select jobs with the options.")] = None,
    queue: QueueOption = None,
    status: StatusOption = None,
    archived_after: AfterOption = None,
    archived_before: BeforeOption = None,
    match: Annotated[str | None, typer.Option("--match", help="KEY=VALUE: only jobs whose payload matches.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="At most this many (newest archived first).")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", min=1, hidden=True, help="Deprecated: --limit.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be restored; change nothing.")] = False,
    yes: YesOption = False,
    initiated_by: InitiatedByOption = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Put archived jobs back into hammerwork_jobs as Pending (Hammerwork's restore semantics)."""
    from tiering.engine.restore import restore_archived_job, restore_archived_jobs

    if count is not None:
        if limit is not None and limit != count:
            raise InvalidInputError("--count is the old name of --limit: give one of them")
        output.warn("--count is deprecated: use --limit (the same name as `archive list`)")
        limit = count
    count = limit
    bulk = any(v is not None for v in (queue, status, archived_after, archived_before, match, count))
    if job_id is not None and bulk:
        raise InvalidInputError("give either a JOB_ID or selection options (--queue/--status/...), not both")
    if job_id is None and not bulk:
        raise InvalidInputError(
            "give a JOB_ID, or at least one of --queue, --status, --archived-after, --archived-before, --match, "
            "--limit to restore in bulk"
        )
    who = default_initiator(initiated_by)
    if job_id is not None:
        parse_job_id(job_id)
        c = context(ctx)
        with run_signals("archive_restore", "restore", metrics_file, c.settings.pushgateway_url) as signals:
            result = restore_archived_job(
                c, job_id, dry_run=dry_run, initiated_by=who
            )
            signals.done(result.to_dict())
        if fmt is Format.table:
            output.print_kv(result.to_dict(), title="restore" + (" (dry run)" if dry_run else ""))
        else:
            output.print_json(result.to_dict())
        return
    after_at, before_at = _dates(archived_after, archived_before)
    parse_statuses(status)
    pair: tuple[str, str] | None = None
    if match is not None:
        pair = parse_match(match)
    c = context(ctx)
    if not dry_run and not yes:
        # a bulk restore re-enqueues jobs that Hammerwork then runs: show which, and ask
        if not sys.stdin.isatty():
            raise SafetyAbort("a bulk restore needs --yes when not run from a terminal (--dry-run lists the jobs)")
        preview = restore_archived_jobs(
            c, queue=queue, status=status, archived_after=after_at,
            archived_before=before_at, match=pair, count=count, dry_run=True, initiated_by=who,
        )  # fmt: skip
        _print_jobs(preview.jobs, f"{len(preview.jobs)} job(s) would be restored")
        if not preview.jobs:
            return
        confirm(f"Restore these {len(preview.jobs)} job(s) to hammerwork_jobs as Pending? Hammerwork runs them again")
    with run_signals("archive_restore", "restore", metrics_file, c.settings.pushgateway_url) as signals:
        with output.progress_bar("restoring", count) as advance:
            bulk_result = restore_archived_jobs(
                c, queue=queue, status=status, archived_after=after_at,
                archived_before=before_at, match=pair, count=count, dry_run=dry_run, initiated_by=who,
                progress=advance,
            )  # fmt: skip
        data = bulk_result.to_dict()
        signals.done(data)
    for p in bulk_result.pending:
        output.warn(f"{p['object_key']} ({p['storage_class']}): {p['jobs']} job(s) wait for an object restore"
                    + (f", expected ~{p['expected_wait']}" if p.get("expected_wait") else ""))  # fmt: skip
    if fmt is not Format.table:
        output.emit(data, fmt)
        return
    summary: dict[str, Any] = {k: data[k] for k in ("dry_run", "selected") if k in data}
    summary["would_restore" if dry_run else "restored"] = data.get("would_restore", data.get("restored"))
    summary.update(skipped=len(bulk_result.skipped), pending_objects=len(bulk_result.pending),
                   objects_read=data["objects_read"], execution_time_s=data["execution_time_s"])  # fmt: skip
    output.print_kv(summary, title="bulk restore" + (" (dry run)" if dry_run else ""))
    _print_jobs(bulk_result.jobs, "jobs that would be restored" if dry_run else "jobs restored")


def _print_jobs(jobs: list[Any], title: str, shown: int = 200) -> None:
    rows = [j.to_dict() for j in jobs[:shown]]
    if rows:
        output.print_table(rows, ["job_id", "queue_name", "status", "archived_at", "tier"], title=title)
    if len(jobs) > shown:
        output.info(f"... and {len(jobs) - shown} more (--format csv lists them all)")


def register(app: typer.Typer, archive_app: typer.Typer) -> None:
    archive_app.command("list")(list_cmd)
    archive_app.command("search")(search_cmd)
    archive_app.command("show")(show_cmd)
    archive_app.command("restore")(restore_cmd)
