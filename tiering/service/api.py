"""Routes of /api/archive: parse and check the request, call the engine, wrap the answer. No archival logic."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from tiering import inputs
from tiering.context import Session
from tiering.engine.audit import daily_trends, database_reachable, get_audit_entry, list_audit
from tiering.engine.policies import get_stored_policy, remove_policy, set_policy
from tiering.engine.tasks import Progress
from tiering.errors import ConfigError, NotFoundError
from tiering.policy import ALL_STATUSES, normalize_status, policy_from_dict
from tiering.service import jobs
from tiering.service.admission import search_task, verify_task
from tiering.service.envelope import Envelope, fail, ok
from tiering.service.models import (
    BulkRestoreRequest,
    EraseRequest,
    JobIdValue,
    LifecycleApplyRequest,
    RestoreOne,
    RunRequest,
    When,
)
from tiering.service.security import MAX_QUEUE_LENGTH, QUEUE_PATTERN

RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Envelope, "description": "invalid input (message in `error`)"},
    401: {"model": Envelope, "description": "no credential"},
    403: {"model": Envelope, "description": "wrong credential"},
    413: {"model": Envelope, "description": "request body too large"},
    422: {"model": Envelope, "description": "invalid parameters or body"},
}
router = APIRouter(prefix="/api/archive", tags=["archive"], responses=RESPONSES)
system_router = APIRouter(tags=["system"])

QueueQ = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_QUEUE_LENGTH, pattern=QUEUE_PATTERN, description="only this queue"),
]
StatusQ = Annotated[
    str | None, Query(max_length=20, description=f"one of {', '.join(ALL_STATUSES)} (case-insensitive)")
]
JobId = Annotated[JobIdValue, Path(description="the job's UUID")]
WhoQ = Annotated[
    str | None, Query(min_length=1, max_length=200, pattern=QUEUE_PATTERN, description="who asks (audit trail)")
]


# ---------------------------------------------------------------- helpers


def session_of(request: Request) -> Session:
    session = request.app.state.session
    assert isinstance(session, Session)
    return session


def principal(request: Request) -> str:
    return str(getattr(request.state, "principal", None) or "api")


def initiator(request: Request, given: str | None) -> str:
    return given or principal(request)


def _statuses(value: str | None) -> list[str] | None:
    """`Failed` or `failed,Dead`: the forms `tiering archive list --status` reads."""
    return inputs.parse_statuses(value)


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_status(value)
    except ValueError as exc:
        raise ConfigError(f"status: {exc}") from None


def _metrics(request: Request) -> Any:
    return request.app.state.metrics


def parse_older_than(value: str, now: datetime | None = None) -> datetime:
    """The API's purge cutoff: as on the command line, except that a bare number means days, as in
    Hammerwork's `DELETE /api/archive/purge?older_than=365`."""
    return inputs.parse_cutoff(value, name="older_than", now=now, bare_number="days")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """The audit trail's `since`: a date or an age back from now, the same forms as `tiering audit --since`."""
    return inputs.parse_cutoff(value, name="since", now=now, bare_number="refuse")


# Dates in query strings go through the shared parsers (a bad one answers 422 naming the field).
Since = Annotated[datetime | None, BeforeValidator(inputs.as_value_error(parse_since))]


# ---------------------------------------------------------------- statistics


@router.get("/stats", summary="Archival statistics (Hammerwork's stats plus tiers, storage classes, cost)")
def stats(request: Request, queue: QueueQ = None) -> JSONResponse:
    from tiering.engine.stats import get_archival_stats

    session = session_of(request)
    result = get_archival_stats(session, queue=queue)
    return ok(result)


@router.get("/trends", summary="Jobs archived, flushed, restored, purged and erased per day (audit trail)")
def trends(request: Request, days: Annotated[int, Query(ge=1, le=366)] = 30) -> JSONResponse:
    return ok({"days": days, "series": daily_trends(session_of(request), days)})


# ---------------------------------------------------------------- browse, search, get


@router.get(
    "/jobs",
    summary="Archived jobs (staging and cold), newest archived first, with the total",
    description="`has_more` is exact. `total` is exact up to TIERING_LIST_EXACT_TOTAL_UP_TO (10,000) matching jobs "
    "per tier; past that it is PostgreSQL's estimate and `total_is_estimate` is true (a page then costs what it "
    "reads, not a count of the whole archive); `exact_total=true` counts every match (seconds on millions).",
)
def list_jobs(
    request: Request,
    queue: QueueQ = None,
    status: StatusQ = None,
    archived_after: Annotated[When, Query(description="inclusive: 2024-05-01, 2024-05-01T13:30:00Z or 7d")] = None,
    archived_before: Annotated[When, Query(description="exclusive: 2024-05-01, 2024-05-01T13:30:00Z or 7d")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=inputs.MAX_OFFSET)] = 0,
    exact_total: Annotated[bool, Query(description="count every matching job (slow on large archives)")] = False,
    after: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
              description="a previous page's `next_cursor`: the page starts after its last job (keyset paging, as "
              "cheap deep in the archive as at its start; offset then counts from there)"),
    ] = None,
) -> JSONResponse:
    from tiering.engine.query import list_archived_jobs

    session = session_of(request)
    page = list_archived_jobs(
        session, queue=queue, status=_statuses(status), archived_after=archived_after,
        archived_before=archived_before, limit=limit, offset=offset, exact_total=exact_total, after=after,
    )  # fmt: skip
    doc = page.to_dict()
    doc["pagination"] = {
        "total": page.total,
        "total_is_estimate": page.total_is_estimate,
        "limit": page.limit,
        "offset": page.offset,
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }
    return ok(doc)


@router.get("/jobs/{job_id}", summary="One archived job, wherever it is; payload=true reads its payload")
def get_job(request: Request, job_id: JobId, payload: bool = False) -> JSONResponse:
    from tiering.engine.query import get_archived_job

    session = session_of(request)
    job = get_archived_job(session, job_id, with_payload=payload)
    return ok(job.to_dict())


SCAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many scans at once (TIERING_SEARCH_WORKERS running, TIERING_SEARCH_QUEUE waiting): "
          "retry after the Retry-After header's seconds"},
    503: {"description": "The scan ran past TIERING_REQUEST_DEADLINE and was stopped (Retry-After is set)"},
}  # fmt: skip


@router.get(
    "/search", summary="Archived jobs whose payload holds `value` at `key` (dotted path)", responses=SCAN_RESPONSES
)
def search(
    request: Request,
    key: Annotated[str, Query(min_length=1, max_length=500, pattern=QUEUE_PATTERN)],
    value: Annotated[str, Query(max_length=1000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")],
    queue: QueueQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    scans = request.app.state.scans
    if scans.in_process:
        return ok(scans.run("search", search_task, key, value, queue, limit, session_of(request)))
    return ok(scans.run("search", search_task, key, value, queue, limit))


# ---------------------------------------------------------------- restore


@router.post("/jobs/{job_id}/restore", summary="Re-enqueue one archived job as Pending in the hot table")
def restore_job(request: Request, job_id: JobId, body: Annotated[RestoreOne | None, Body()] = None) -> JSONResponse:
    from tiering.engine.restore import restore_archived_job

    session = session_of(request)
    body = body or RestoreOne()
    result = restore_archived_job(
        session, job_id, dry_run=body.dry_run,
        initiated_by=initiator(request, body.initiated_by),
    )  # fmt: skip
    if result.restored:
        _metrics(request).record("restore", {"jobs_restored": 1})
    return ok(result.to_dict())


@router.post("/restore", summary="Restore many jobs chosen by filters; dry_run previews them")
def restore_bulk(request: Request, body: BulkRestoreRequest) -> JSONResponse:
    from tiering.engine.restore import restore_archived_jobs

    session = session_of(request)
    who = initiator(request, body.initiated_by)
    if not (body.queue or body.status or body.archived_after or body.archived_before or body.match):
        raise ConfigError("restore: give at least one filter (queue, status, archived_after/before, match)")

    def work(progress: Progress) -> Any:
        result = restore_archived_jobs(
            session, queue=body.queue, status=body.status,
            archived_after=body.archived_after, archived_before=body.archived_before,
            match=(body.match.key, body.match.value) if body.match else None, count=body.count,
            dry_run=body.dry_run, initiated_by=who, progress=lambda n: progress.add("restored", n),
        )  # fmt: skip
        doc = result.to_dict()
        _metrics(request).record("restore", doc)
        return doc

    return _run_task(request, "restore", body.model_dump(mode="json"), work, body.wait_seconds)


# ---------------------------------------------------------------- run (archive + flush + purge)


@router.post("/run", summary="Archive eligible jobs, flush them to the object store, purge by policy")
def run(request: Request, body: Annotated[RunRequest, Body()]) -> JSONResponse:
    session = session_of(request)
    if body.policy is not None:
        policy, config = policy_from_dict(body.policy, source="policy override")
    else:
        policy, config, _ = session.load_policy()
    who = initiator(request, body.initiated_by)

    def work(progress: Progress) -> Any:
        import time

        started = time.perf_counter()
        result = jobs.run_archival(
            session, queue=body.queue, policy=policy, config=config, reason=body.reason, initiated_by=who,
            dry_run=body.dry_run, flush=body.flush, purge=body.purge, progress=progress.add,
            phase=lambda name: progress.set(phase=name),
        )  # fmt: skip
        progress.set(phase="done")
        _metrics(request).record("run", result, time.perf_counter() - started)
        return result

    return _run_task(request, "run", body.model_dump(mode="json"), work, body.wait_seconds)


def _run_task(request: Request, kind: str, req: dict[str, Any], work: Any, wait_seconds: float) -> JSONResponse:
    runner = request.app.state.runner
    task_id = runner.start(kind, req, work)
    runner.wait(task_id, wait_seconds)
    return _task_response(runner.get(task_id), finished_status=200)


def _task_response(row: dict[str, Any] | None, finished_status: int = 200) -> JSONResponse:
    if row is None:
        raise NotFoundError("no such operation")
    doc = {
        "operation_id": str(row["id"]),
        "kind": row["kind"],
        "state": row["state"],
        "progress": row["progress"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "status_url": f"/api/archive/operations/{row['id']}",
        "result": row["result"],
    }
    if row["state"] == "running":
        return ok(doc, status_code=202, headers={"Location": doc["status_url"]})
    if row["state"] == "failed":
        status = int(row.get("error_status") or 500)
        return fail(status if status >= 400 else 500, str(row["error"]), data=doc)
    return ok(doc, status_code=finished_status)


@router.get("/operations", summary="Recent background operations started through the API")
def recent_operations(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> JSONResponse:
    return ok(request.app.state.runner.recent(limit))


@router.get("/operations/{operation_id}", summary="A background operation's progress (UUID) or an audit entry (id)")
def operation(
    request: Request,
    operation_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-fA-F-]+$")],
) -> JSONResponse:
    session = session_of(request)
    if operation_id.isdigit():
        if len(operation_id) > 18:
            raise NotFoundError(f"no operation {operation_id}")
        row = get_audit_entry(session, int(operation_id))
        if row is None:
            raise NotFoundError(f"no operation {operation_id}")
        return ok(row.__dict__)
    try:
        task_id = uuid.UUID(operation_id)
    except ValueError:
        raise ConfigError(f"operation_id: {operation_id!r} is neither a UUID nor an audit id") from None
    row_task = request.app.state.runner.get(task_id)
    if row_task is None:
        raise NotFoundError(f"no operation {operation_id}")
    return ok(_task_body(row_task))  # the poll succeeded; the run's own state is in data.state


def _task_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "operation_id": str(row["id"]),
        "kind": row["kind"],
        "state": row["state"],
        "progress": row["progress"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "result": row["result"],
        "error": row["error"],
    }


# ---------------------------------------------------------------- purge, erase


@router.delete("/purge", summary="Delete archived jobs older than a cutoff; dry_run returns the preview")
def purge(
    request: Request,
    older_than: Annotated[
        str, Query(min_length=1, max_length=40, description="days (365, as Hammerwork), an age (90d, P1Y) or a date")
    ] = "365",
    queue: QueueQ = None,
    status: StatusQ = None,
    dry_run: bool = False,
    initiated_by: WhoQ = None,
) -> JSONResponse:
    from tiering.engine.purge import preview_purge_operation, purge_archived_jobs

    session = session_of(request)
    cutoff = parse_older_than(older_than)
    status_n = _status(status)
    if dry_run:
        preview = preview_purge_operation(session, cutoff, queue=queue,
                                          status=status_n)  # fmt: skip
        return ok(preview.to_dict() | {"dry_run": True})
    result = purge_archived_jobs(
        session, cutoff, queue=queue, status=status_n,
        initiated_by=initiator(request, initiated_by), reason="Manual",
    )  # fmt: skip
    doc = result.to_dict()
    _metrics(request).record("purge", doc)
    return ok(doc)


@router.post("/erase", summary="Erase jobs from every tier (right to erasure); dry_run shows where they are")
def erase(request: Request, body: EraseRequest) -> JSONResponse:
    from tiering.engine.erase import erase_jobs

    session = session_of(request)
    if (body.job_ids is None) == (body.match is None):
        raise ConfigError("erase: give job_ids or match (a payload key and value), not both")
    result = erase_jobs(
        session,
        ids=[str(i) for i in body.job_ids] if body.job_ids is not None else None,
        key=body.match.key if body.match else None, value=body.match.value if body.match else None,
        dry_run=body.dry_run, initiated_by=initiator(request, body.initiated_by), request_ref=body.request_ref,
    )  # fmt: skip
    doc = result.to_dict()
    _metrics(request).record("erase", doc)
    return ok(doc)


# ---------------------------------------------------------------- policy


@router.get("/policy", summary="The stored policy (or the defaults, with `stored: false`)")
def get_policy(request: Request) -> JSONResponse:
    found = get_stored_policy(session_of(request))
    return ok({"stored": found.stored, "policy": found.document})


@router.put("/policy", summary="Validate and store the policy (schemas/policy.schema.json)")
def put_policy(
    request: Request,
    document: Annotated[dict[str, Any], Body(description="a policy document")],
    initiated_by: WhoQ = None,
) -> JSONResponse:
    who = initiator(request, initiated_by)
    normalized = set_policy(session_of(request), document, initiated_by=who, parameters={"via": "api"})
    return ok({"stored": True, "policy": normalized})


@router.delete("/policy", summary="Remove the stored policy (runs fall back to the defaults)")
def delete_policy(request: Request, initiated_by: WhoQ = None) -> JSONResponse:
    removed = remove_policy(session_of(request), initiated_by=initiator(request, initiated_by))
    return ok({"removed": removed})


# ---------------------------------------------------------------- lifecycle, verify


@router.get("/lifecycle/plan", summary="The bucket lifecycle rules the policy implies, as a diff")
def lifecycle_plan(request: Request) -> JSONResponse:
    from tiering.engine.lifecycle_plan import plan_lifecycle

    session = session_of(request)
    policy, _, _ = session.load_policy()
    return ok(plan_lifecycle(session.store, policy).to_dict())


@router.post("/lifecycle/apply", summary="Merge the policy's lifecycle rules into the bucket's configuration")
def lifecycle_apply(request: Request, body: Annotated[LifecycleApplyRequest | None, Body()] = None) -> JSONResponse:
    from tiering.engine.lifecycle_plan import apply_lifecycle, plan_lifecycle

    session = session_of(request)
    body = body or LifecycleApplyRequest()
    policy, _, _ = session.load_policy()
    if body.dry_run:
        return ok(plan_lifecycle(session.store, policy).to_dict())
    plan = apply_lifecycle(session, policy, initiated_by=initiator(request, body.initiated_by))
    return ok(plan.to_dict())


@router.get(
    "/verify", summary="Compare the manifest with the bucket (deep reads every object)", responses=SCAN_RESPONSES
)
def verify(request: Request, deep: bool = False, queue: QueueQ = None) -> JSONResponse:
    session = session_of(request)
    who = principal(request)
    if not deep:
        return ok(jobs.run_verify(session, initiated_by=who, deep=False, queue=queue))
    # a deep verify reads every object: a scan, admitted like a search
    scans = request.app.state.scans
    if scans.in_process:
        return ok(scans.run("deep verify", verify_task, who, queue, session))
    return ok(scans.run("deep verify", verify_task, who, queue))


# ---------------------------------------------------------------- audit, schedule


@router.get("/audit", summary="The audit trail: every run, restore, purge, erase and policy change")
def audit(
    request: Request,
    operation: Annotated[str | None, Query(min_length=1, max_length=40, pattern=r"^[a-z_]+$")] = None,
    since: Annotated[Since, Query(description="a date (2024-01-31) or an age back from now (7d)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=inputs.MAX_OFFSET)] = 0,
) -> JSONResponse:
    session = session_of(request)
    rows = list_audit(session, since=since, operation=operation, limit=limit, offset=offset)
    return ok({"items": [r.__dict__ for r in rows], "limit": limit, "offset": offset})


@router.get("/schedule", summary="Cron schedules with their last and next runs")
def schedule(request: Request) -> JSONResponse:
    return ok(request.app.state.scheduler.status())


# ---------------------------------------------------------------- system


@system_router.get("/healthz", summary="Liveness and database reachability (no credential needed)")
def healthz(request: Request) -> JSONResponse:
    session = session_of(request)
    try:
        database_reachable(session)
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return fail(503, f"database unreachable: {type(exc).__name__}", data={"status": "degraded"})
    from tiering import __version__

    return ok({"status": "ok", "database": database, "version": __version__})


@system_router.get("/api/openapi.json", summary="This API's OpenAPI document")
def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())
