"""`tiering archive run | flush | get-policy | set-policy | remove-policy`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
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
from tiering.errors import ConfigError, SafetyAbort
from tiering.policy import MAX_BATCH_SIZE, load_policy_file, policy_from_dict, policy_to_dict

app = typer.Typer(help="Archive, flush, restore, search, purge and inspect archived jobs.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    queue: QueueOption = None,
    policy_file: Annotated[
        str | None, typer.Option("--policy", envvar="TIERING_POLICY", help="Policy JSON file (else the stored one).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", envvar="TIERING_DRY_RUN", help="Count what would move; change nothing.")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            envvar="TIERING_BATCH_SIZE",
            min=1,
            max=MAX_BATCH_SIZE,
            help="Jobs moved per transaction (default: the policy's).",
        ),
    ] = None,
    compression_level: Annotated[
        int | None,
        typer.Option(
            envvar="TIERING_COMPRESSION_LEVEL", min=0, max=22, help="zstd level of the Parquet objects (0-22)."
        ),
    ] = None,
    reason: Annotated[
        str, typer.Option(envvar="TIERING_REASON", help="automatic | manual | compliance | maintenance")
    ] = "manual",
    initiated_by: InitiatedByOption = None,
    no_flush: Annotated[
        bool, typer.Option("--no-flush", envvar="TIERING_NO_FLUSH", help="Stop after the staging step.")
    ] = False,
    no_purge: Annotated[
        bool, typer.Option("--no-purge", envvar="TIERING_NO_PURGE", help="Skip the automatic purge.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="TIERING_WORKERS", min=1, max=32, help="Parallel flush workers (default: settings.workers)."
        ),
    ] = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Move eligible jobs hot -> staging, then flush staging to the object store."""
    from tiering.engine.pipeline import run_archival

    c = context(ctx)
    with run_signals("archive_run", "archive", metrics_file, c.settings.pushgateway_url) as signals:
        policy, config, source = c.load_policy(policy_file)
        if dry_run:
            policy = replace(policy, dry_run=True)
        if batch_size is not None:
            policy = policy.with_batch_size(batch_size)
        if compression_level is not None:
            config = config.with_compression_level(compression_level)
        who = default_initiator(initiated_by)
        url = c.database_url
        output.info(f"policy: {source}; database: {_safe_url(url)}")
        if workers is not None:
            c.settings = c.settings.with_overrides(workers=workers)
        staged = None
        if sys.stderr.isatty() and not policy.dry_run and not no_flush:
            from tiering.engine.flush import count_staged_jobs

            staged = count_staged_jobs(c, queue)  # the flush bar's: staged before the run, then this run's
        with output.phase_progress() as (advance, phase, set_total):

            def total(name: str, n: int) -> None:  # the run's own count of what it moves (no scan of ours)
                set_total(name, n)
                if name == "archived" and staged is not None:
                    set_total("flushed", n + staged)

            result = run_archival(
                c, queue=queue, policy=policy, config=config, reason=reason, initiated_by=who,
                flush=not no_flush, purge=not no_purge, progress=advance, phase=phase, crash_hook=fault_hook(),
                total=total,
            )  # fmt: skip
        signals.done(result)
    if result.get("skipped_reason"):
        output.warn(result["skipped_reason"])
    if fmt is not Format.table:
        output.emit(result, fmt)
        return
    _print_run_table(result)


def fault_hook() -> Any:
    """Fault injection for crash tests: TIERING_FAULT_INJECT=<point> SIGKILLs this process at that point
    of a flush (claimed, uploading, uploaded, committed)."""
    import os
    import signal

    point = os.environ.get("TIERING_FAULT_INJECT")
    if not point:
        return None

    def hook(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _print_run_table(result: dict[str, Any]) -> None:
    dry = result["dry_run"]
    headline = {
        ("jobs_that_would_be_archived" if dry else "jobs_archived"): result.get(
            "jobs_that_would_be_archived" if dry else "jobs_archived"
        ),
        "hot_copies_settled" + (" (would be)" if dry else ""): result["hot_copies_settled"],
    }
    if not dry:
        headline.update(
            bytes_original=result["bytes_original"],
            bytes_staged=result["bytes_stored"],
            compression_ratio=result["compression_ratio"],  # cold bytes / original, as `stats` computes it
        )
    headline["execution_time_s"] = result["execution_time_s"]
    output.print_kv(headline, title="archive run" + (" (dry run)" if dry else ""))
    rows = [
        {"queue": q, **statuses, "total": sum(statuses.values())} for q, statuses in result["by_queue_status"].items()
    ]
    if rows:
        output.print_table(rows, ["queue", "Completed", "Failed", "Dead", "TimedOut", "total"], title="by queue")
    behind = [{"status": s, **v} for s, v in (result.get("left_behind") or {}).items()]
    if behind:
        title = "finished jobs that stay in hammerwork_jobs" + (" (before this dry run)" if dry else "")
        output.print_table(behind, ["status", "jobs", "reason"], title=title)
    if "flush" in result:
        f = result["flush"]
        output.print_kv(
            {
                k: f[k]
                for k in (
                    "jobs_flushed",
                    "objects_written",
                    "bytes_written",
                    "payload_original_bytes",
                    "compression_ratio",
                    "quarantined",
                    "execution_time_s",
                )  # fmt: skip
                if k in f
            },
            title="flush",
        )
    for warning in result.get("flush", {}).get("warnings", []):
        output.warn(warning)
    if result.get("flush", {}).get("quarantined"):
        output.warn(
            f"{result['flush']['quarantined']} staged jobs have payloads that cannot be decoded; they stay staged "
            "and are listed in tiering_quarantine"
        )
    if "purge" in result:
        p = result["purge"]
        keys = ("jobs_purged", "objects_deleted", "objects_rewritten", "storage_freed", "errors", "skipped_reason")
        output.print_kv({k: p[k] for k in keys if p.get(k) not in (None, [], "")}, title="automatic purge")


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@app.command("flush")
def flush(
    ctx: typer.Context,
    initiated_by: InitiatedByOption = None,
    policy_file: Annotated[
        str | None, typer.Option("--policy", envvar="TIERING_POLICY", help="Policy JSON file (else the stored one).")
    ] = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Write staged jobs to the object store as Parquet and commit them in the manifest."""
    from tiering.engine.flush import count_staged_jobs, flush_staged

    c = context(ctx)
    with run_signals("archive_flush", "flush", metrics_file, c.settings.pushgateway_url) as signals:
        policy, config, _ = c.load_policy(policy_file)
        total = count_staged_jobs(c) if sys.stderr.isatty() else None
        with output.progress_bar("flushing", total) as advance:
            stats = flush_staged(
                c, policy, config, initiated_by=default_initiator(initiated_by),
                progress=advance, crash_hook=fault_hook(),
            )  # fmt: skip
        signals.done(stats.to_dict())
    output.emit(stats.to_dict(), fmt)


@app.command("get-policy")
def get_policy(ctx: typer.Context, fmt: FormatOption = Format.json) -> None:
    """Show the stored policy (or the defaults when none is stored)."""
    from tiering.engine import policies

    found = policies.get_stored_policy(context(ctx))
    if not found.stored:
        output.info("no stored policy: showing the defaults")
    output.emit(found.document, fmt)


@app.command("set-policy")
def set_policy(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", help="Policy JSON file (schemas/policy.schema.json).")],
    initiated_by: InitiatedByOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Validate a policy file and store it as the policy `archive run` uses."""
    from tiering.engine import policies

    policy, config = load_policy_file(file)
    document = policy_to_dict(policy, config)
    who = default_initiator(initiated_by)
    policies.set_policy(
        context(ctx), document, initiated_by=who, source=f"policy file {file}", parameters={"file": file}
    )
    if fmt is Format.json:
        output.print_json({"stored": True, "file": file, "policy": document})
    else:
        output.info(f"stored the policy from {file}")


@app.command("remove-policy")
def remove_policy(
    ctx: typer.Context, yes: YesOption = False, initiated_by: InitiatedByOption = None, fmt: FormatOption = Format.table
) -> None:
    """Remove the stored policy (runs fall back to the defaults)."""
    if not yes:
        if not sys.stdin.isatty():
            raise SafetyAbort("remove-policy needs --yes when not run from a terminal")
        confirm("Remove the stored archival policy?")
    from tiering.engine import policies

    removed = policies.remove_policy(context(ctx), initiated_by=default_initiator(initiated_by))
    if fmt is Format.json:
        output.print_json({"removed": removed})
    else:
        output.info("removed the stored policy" if removed else "no stored policy to remove")


def parse_policy_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"policy: invalid JSON: {exc.msg}") from exc
    policy, config = policy_from_dict(data)
    return policy_to_dict(policy, config)


@app.command("verify")
def verify(
    ctx: typer.Context,
    queue: QueueOption = None,
    deep: Annotated[bool, typer.Option("--deep", help="Read every object: checksum, rows, index.")] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Remove orphan objects and leftovers of dead flushers.")
    ] = False,
    initiated_by: InitiatedByOption = None,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Compare the manifest with the bucket; exit 9 when something is wrong."""
    from tiering.engine.verify import verify_archive

    c = context(ctx)
    with run_signals("archive_verify", "verify", metrics_file, c.settings.pushgateway_url) as signals:
        report = verify_archive(
            c, queue=queue, deep=deep, repair=repair,
            initiated_by=default_initiator(initiated_by),
        )  # fmt: skip
        doc = report.to_dict()
        signals.done(doc, ok=report.ok)
    if fmt is not Format.table:
        output.emit(doc, fmt)
    else:
        output.print_kv({k: v for k, v in doc.items() if k != "problems"}, title="verify")
        if report.problems:
            output.print_table([p.to_dict() for p in report.problems], ["kind", "key", "detail", "repaired"])
    if not report.ok:
        raise typer.Exit(9)


lifecycle_app = typer.Typer(help="Bucket lifecycle rules rendered from the policy.", no_args_is_help=True)
app.add_typer(lifecycle_app, name="lifecycle")


def _lifecycle_output(plan: Any, fmt: Format) -> None:
    doc = plan.to_dict()
    if fmt is not Format.table:
        output.emit(doc, fmt)
        return
    for warning in plan.warnings:
        output.warn(warning)
    if plan.supported and doc["diff_text"]:
        output.stdout.print(doc["diff_text"], highlight=False)


@lifecycle_app.command("plan")
def lifecycle_plan(
    ctx: typer.Context,
    policy_file: Annotated[
        str | None, typer.Option("--policy", envvar="TIERING_POLICY", help="Policy JSON file (else the stored one).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show the lifecycle rules the policy implies and the diff against the bucket's rules."""
    from tiering.engine.lifecycle_plan import plan_lifecycle

    c = context(ctx)
    policy, _, _ = c.load_policy(policy_file)
    _lifecycle_output(plan_lifecycle(c.store, policy), fmt)


@lifecycle_app.command("apply")
def lifecycle_apply(
    ctx: typer.Context,
    policy_file: Annotated[
        str | None, typer.Option("--policy", envvar="TIERING_POLICY", help="Policy JSON file (else the stored one).")
    ] = None,
    yes: YesOption = False,
    initiated_by: InitiatedByOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Merge the policy's rules into the bucket's lifecycle configuration (rules of others are kept)."""
    from tiering.engine.lifecycle_plan import apply_lifecycle, plan_lifecycle

    c = context(ctx)
    policy, _, _ = c.load_policy(policy_file)
    if not yes:
        plan = plan_lifecycle(c.store, policy)
        _lifecycle_output(plan, Format.table)
        if not plan.supported or not plan.diff or not plan.diff.has_changes:
            return
        if not sys.stdin.isatty():
            raise SafetyAbort("lifecycle apply needs --yes when not run from a terminal")
        confirm("Apply these lifecycle rules to the bucket?")
    plan = apply_lifecycle(c, policy, initiated_by=default_initiator(initiated_by))
    _lifecycle_output(plan, fmt)
    if not plan.supported:
        raise typer.Exit(7)


iceberg_app = typer.Typer(
    help="The cold archive as an Apache Iceberg table (TIERING_ICEBERG=1): publish, verify, expire snapshots.",
    no_args_is_help=True,
)
app.add_typer(iceberg_app, name="iceberg")


def _iceberg_context(ctx: typer.Context) -> Any:
    c = context(ctx)
    if not c.settings.iceberg:
        raise ConfigError('the Iceberg table is not enabled: set TIERING_ICEBERG=1 (or "iceberg": true in settings)')
    return c


@iceberg_app.command("publish")
def iceberg_publish(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """Make the table's current snapshot hold exactly the manifest's committed objects (one snapshot)."""
    from tiering.engine.iceberg import reconcile

    c = _iceberg_context(ctx)
    doc = reconcile(c).to_dict()
    if fmt is not Format.table:
        output.emit(doc, fmt)
    else:
        output.print_kv(doc, title="iceberg publish")


@iceberg_app.command("verify")
def iceberg_verify(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """Compare the current snapshot with the manifest; exit 9 when they differ (`publish` brings them in step)."""
    from tiering.engine.iceberg import check

    c = _iceberg_context(ctx)
    difference = check(c)
    doc = {"in_step": difference.in_step, "snapshot_id": difference.snapshot_id,
           "missing": difference.missing, "extra": difference.extra}  # fmt: skip
    if fmt is not Format.table:
        output.emit(doc, fmt)
    else:
        output.print_kv({"in_step": difference.in_step, "snapshot_id": difference.snapshot_id,
                         "missing": len(difference.missing), "extra": len(difference.extra)},
                        title="iceberg verify")  # fmt: skip
    if not difference.in_step:
        raise typer.Exit(9)


@iceberg_app.command("expire-snapshots")
def iceberg_expire(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Drop snapshots older than this age (e.g. 7d, 12h, 0s).")
    ] = "7d",
    fmt: FormatOption = Format.table,
) -> None:
    """Drop old snapshots (never the current one), so purged or erased objects are named by no snapshot."""
    from tiering.engine.iceberg import expire_snapshots
    from tiering.inputs import parse_age

    c = _iceberg_context(ctx)
    doc = {"snapshots_expired": expire_snapshots(c, parse_age(older_than, name="--older-than"))}
    if fmt is not Format.table:
        output.emit(doc, fmt)
    else:
        output.print_kv(doc, title="iceberg expire-snapshots")
