"""`tiering archive purge | erase | stats` and `tiering audit`."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tiering import inputs
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
from tiering.errors import InvalidInputError, NotFoundError, SafetyAbort
from tiering.policy import parse_duration


def parse_cutoff(text: str, now: datetime | None = None, *, name: str = "--older-than") -> datetime:
    """The command line's cutoff: a date or an age with a unit (`365d`, `P1Y`); a bare number is refused."""
    return inputs.parse_cutoff(text, name=name, now=now, bare_number="refuse")


def _require_consent(what: str, yes: bool, dry_run: bool, show: Any) -> None:
    if yes or dry_run:
        return
    if not sys.stdin.isatty():
        raise SafetyAbort(f"{what} refuses to run without a terminal: pass --yes to confirm, or --dry-run to preview")
    show()
    confirm(f"Proceed with the {what}? This cannot be undone")


def _show_preview(preview: dict[str, Any]) -> None:
    rows = {k: v for k, v in preview.items() if k not in ("locked_objects", "unreadable_objects", "jobs_by_queue")}
    output.print_kv(rows, title="purge preview")
    if preview.get("locked_objects"):
        output.warn(f"{len(preview['locked_objects'])} objects are under S3 Object Lock and will be kept")
    if preview.get("unreadable_objects"):
        output.warn(f"{len(preview['unreadable_objects'])} objects cannot be rewritten now (see unreadable_objects)")


def purge(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help='An age with a unit ("365 days", 365d, P1Y) or a date (2024-01-31); default: the policy\'s '
            "purge_archived_after. A bare number is refused (write 365d).",
        ),
    ] = None,
    queue: QueueOption = None,
    status: Annotated[str | None, typer.Option("--status", "-s", help="Only jobs with this final status.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be purged; delete nothing.")] = False,
    yes: YesOption = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=0, help="Abort, deleting nothing, if more jobs would go.")
    ] = None,
    initiated_by: InitiatedByOption = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Permanently delete archived jobs (staging and cold objects) archived before a cutoff."""
    c = context(ctx)
    with run_signals("archive_purge", "purge", metrics_file, c.settings.pushgateway_url) as signals:
        if older_than is None:
            policy, _, _ = c.load_policy()
            if policy.purge_archived_after is None:
                raise InvalidInputError("no --older-than given and the policy sets no purge_archived_after")
            cutoff = datetime.now(UTC) - policy.purge_archived_after
        else:
            cutoff = parse_cutoff(older_than)  # a bad cutoff is refused before the engine is even imported
        from tiering.engine.purge import preview_purge_operation, purge_archived_jobs

        def show() -> None:
            _show_preview(preview_purge_operation(c, cutoff, queue=queue, status=status).to_dict())

        _require_consent("purge", yes, dry_run, show)
        result = purge_archived_jobs(
            c, cutoff, queue=queue, status=status, dry_run=dry_run, max_jobs=max_jobs,
            initiated_by=default_initiator(initiated_by),
        )  # fmt: skip
        data = result.to_dict()
        signals.done(data, ok=result.ok)
    if fmt is not Format.table:
        output.emit(data, fmt)
    elif dry_run and result.preview is not None:
        _show_preview(result.preview.to_dict())
    else:
        keys = ("jobs_purged", "staging_jobs_purged", "cold_jobs_purged", "objects_deleted", "objects_rewritten",
                "storage_freed", "delete_calls", "affected_queues", "prefixes_purged", "execution_time_s")  # fmt: skip
        output.print_kv({k: data[k] for k in keys}, title="purge")
    _report_problems(data)
    if result.errors:
        raise typer.Exit(7)


def _report_problems(data: dict[str, Any]) -> None:
    for lo in data.get("locked_objects") or []:
        output.warn(f"kept {lo['key']}: object lock {lo['mode'] or ''} until {lo['retain_until']}"
                    + (" (legal hold)" if lo["legal_hold"] else ""))  # fmt: skip
    for u in data.get("unreadable_objects") or []:
        output.warn(f"not rewritten {u['key']}: {u['reason']}")
    for e in data.get("errors") or []:
        output.warn(f"{e.get('stage', 'error')} {e['key']}: {e['code']}: {e['message']}")
    for job_id, places in sorted((data.get("remaining_jobs") or {}).items()):
        output.warn(f"still present after the final check: {job_id} in {', '.join(places)}")
    for u in data.get("unreadable_payload_jobs") or []:
        output.warn(f"payload unreadable, not matched: {u['job_id']} ({u['where']}): {u['reason']}; "
                    "check it and erase it with --job-id")  # fmt: skip


def erase(
    ctx: typer.Context,
    job_ids: Annotated[list[str] | None, typer.Option("--job-id", help="A job id to erase (repeatable).")] = None,
    match: Annotated[
        str | None, typer.Option("--match", help="KEY=VALUE on the payload, dotted keys: customer.id=42.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show where the jobs are; erase nothing.")] = False,
    yes: YesOption = False,
    request_ref: Annotated[
        str | None, typer.Option("--request-ref", help="The deletion request this fulfils (audit trail).")
    ] = None,
    initiated_by: InitiatedByOption = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Erase jobs from every tier (hot, staging, cold objects), for a right-to-deletion request."""
    if bool(job_ids) == (match is not None):
        raise InvalidInputError("give --job-id ID (repeatable) or --match KEY=VALUE, not both")
    key = value = None
    if match is not None:
        key, value = inputs.parse_match(match)
    from tiering.engine.erase import erase_jobs

    c = context(ctx)
    with run_signals("archive_erase", "erase", metrics_file, c.settings.pushgateway_url) as signals:
        who = default_initiator(initiated_by)

        def run(dry: bool) -> Any:
            return erase_jobs(c, ids=job_ids or None, key=key, value=value, dry_run=dry,
                              initiated_by=who, request_ref=request_ref)  # fmt: skip

        def show() -> None:
            found = run(True).to_dict()
            keys = ("jobs_found", "hot_erased", "staging_erased", "cold_erased", "objects_deleted", "objects_rewritten")
            output.print_kv({k: found[k] for k in keys}, title="erase preview")

        _require_consent("erase", yes, dry_run, show)
        result = run(dry_run)
        data = result.to_dict()
        signals.done(data, ok=result.complete or dry_run)
    if fmt is not Format.table:
        output.emit(data, fmt)
    else:
        keys = ("dry_run", "request_ref", "jobs_found", "jobs_erased", "hot_erased", "staging_erased", "cold_erased",
                "objects_scanned", "objects_deleted", "objects_rewritten", "complete")  # fmt: skip
        output.print_kv({k: data[k] for k in keys}, title="erase" + (" (dry run)" if dry_run else ""))
        rows = [{"job_id": j, "found_in": ", ".join(w)} for j, w in sorted(data["locations"].items())]
        if rows:
            output.print_table(rows, ["job_id", "found_in"])
    _report_problems(data)
    if job_ids:
        found = {str(j).lower() for j in data.get("locations", {})}
        missing = sorted({str(j).strip().lower() for j in job_ids} - found)
        if missing:
            raise NotFoundError(f"{len(missing)} job id(s) found in no tier: {', '.join(missing[:20])}")
    if not result.complete and not dry_run:
        raise typer.Exit(7)


def stats(
    ctx: typer.Context,
    queue: QueueOption = None,
    detailed: Annotated[bool, typer.Option("--detailed", help="Per-queue breakdown and last runs.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw every --interval until Ctrl-C.")] = False,
    interval: Annotated[str, typer.Option("--interval", help="Refresh interval with --watch (5s, 1m).")] = "5s",
    fmt: FormatOption = Format.table,
) -> None:
    """Archival statistics: jobs, bytes, compression, objects, last runs, estimated storage cost."""
    seconds = max(0.2, parse_duration(interval, field_name="--interval").total_seconds())
    from tiering.engine.stats import get_archival_stats

    c = context(ctx)
    if not watch:
        _render_stats(get_archival_stats(c, queue), fmt, detailed)
        return
    try:
        while True:
            data = get_archival_stats(c, queue)
            if fmt is Format.json:
                sys.stdout.write(json.dumps(data, default=str) + "\n")
                sys.stdout.flush()
            else:
                output.stdout.clear()
                _render_stats(data, fmt, detailed)
                output.info(f"refreshing every {interval}; Ctrl-C to stop")
            time.sleep(seconds)
    except KeyboardInterrupt:
        return


def _render_stats(data: dict[str, Any], fmt: Format, detailed: bool) -> None:
    if fmt is not Format.table:
        output.emit(data, fmt)
        return
    cols = ["tier", "jobs", "objects", "original_bytes", "stored_bytes", "compression_ratio", "oldest_archived_at",
            "newest_archived_at"]  # fmt: skip
    rows = [{"tier": "staging", **data["tiers"]["staging"]}]
    rows += [{"tier": f"cold {cls}", **s} for cls, s in data["tiers"]["cold_by_storage_class"].items()]
    rows.append({"tier": "total", **data["total"]})
    output.print_table(rows, cols, title="archive" + (f" (queue {data['queue']})" if data["queue"] else ""))
    cost = data["estimated_monthly_cost"]
    crow = [{"storage_class": k, **v} for k, v in cost["by_storage_class"].items()]
    if crow:
        output.print_table(
            crow,
            ["storage_class", "stored_gb", "usd_per_gb_month", "estimated_usd_per_month"],
            title=f"ESTIMATED monthly storage cost: ${cost['total_estimated_usd_per_month']:.4f}",
        )
        output.info(cost["label"])
    totals = data["total"]
    output.info(f"purged to date: {totals['jobs_purged_to_date']}, erased: {totals['jobs_erased_to_date']}, "
                f"restored: {totals['jobs_restored_to_date']}")  # fmt: skip
    if detailed:
        qrows = [
            {"queue": q, "staging_jobs": v["staging"]["jobs"], "cold_jobs": v["cold"]["jobs"],
             "objects": v["cold"]["objects"], "original_bytes": v["total"]["original_bytes"],
             "stored_bytes": v["total"]["stored_bytes"], "compression_ratio": v["total"]["compression_ratio"],
             "purged": v["jobs_purged_to_date"], "restored": v["jobs_restored_to_date"]}
            for q, v in data["queues"].items()
        ]  # fmt: skip
        output.print_table(qrows, list(qrows[0]) if qrows else ["queue"], title="by queue")
        runs = [{"operation": k, **v} for k, v in data["last_runs"].items()]
        if runs:
            output.print_table(runs, ["operation", "started_at", "duration_s", "outcome", "operation_id"],
                               title="last runs")  # fmt: skip


def audit(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="A date (2024-01-31) or a duration back from now (7d).")
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", help="archive, flush, restore, purge, erase, policy_set, ...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 100,
    fmt: FormatOption = Format.table,
) -> None:
    """The audit trail: every archive, flush, restore, purge, erase, policy change and lifecycle apply."""
    from dataclasses import asdict

    start = parse_cutoff(since, name="--since") if since else None
    from tiering.engine.audit import list_audit

    c = context(ctx)
    ops = list_audit(c, since=start, operation=operation, limit=limit)
    data = [asdict(o) for o in ops]
    if fmt is not Format.table:
        output.emit(data, fmt)
        return
    rows = []
    for o in data:
        duration = (o["finished_at"] - o["started_at"]).total_seconds() if o["finished_at"] else None
        counts = {k: v for k, v in o["counts"].items() if isinstance(v, int | float) and not isinstance(v, bool)}
        rows.append({**o, "duration_s": duration, "counts": dict(list(counts.items())[:6])})
    output.emit(
        data,
        fmt,
        rows=rows,
        columns=["id", "operation", "initiated_by", "started_at", "duration_s", "outcome", "counts", "error"],
    )


def register(app: typer.Typer, archive_app: typer.Typer) -> None:
    archive_app.command("purge")(purge)
    archive_app.command("erase")(erase)
    archive_app.command("stats")(stats)
    app.command("audit")(audit)
