"""The audit trail: one tiering_operations row per archive, flush, restore, purge, erase, policy change..."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb


class Connections(Protocol):
    """Where engine code gets connections from (the archive session)."""

    def connection(self, *, autocommit: bool = False) -> AbstractContextManager[psycopg.Connection]: ...

log = logging.getLogger("tiering.operations")
# operation id -> (operation, queue), so the line logged when an operation ends names what its start named
_RUNNING: dict[int, tuple[str, str | None]] = {}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class Operation:
    id: int
    operation: str
    counts: dict[str, Any] = field(default_factory=dict)
    outcome: str = "succeeded"


def start_operation(
    conn: psycopg.Connection,
    operation: str,
    *,
    initiated_by: str | None,
    reason: str | None,
    parameters: dict[str, Any] | None = None,
) -> int:
    row = conn.execute(
        """INSERT INTO tiering_operations (operation, initiated_by, reason, parameters)
           VALUES (%s, %s, %s, %s) RETURNING id""",
        (operation, initiated_by, reason, Jsonb(_jsonable(parameters or {}))),
    ).fetchone()
    assert row is not None
    op_id = int(row[0])
    queue = (parameters or {}).get("queue")
    _RUNNING[op_id] = (operation, queue)
    context = {"operation_id": op_id, "operation": operation, "queue": queue, "initiated_by": initiated_by}
    log.info("%s started (operation %s)", operation, op_id, extra=context)
    return op_id


def finish_operation(
    conn: psycopg.Connection, op_id: int, *, counts: dict[str, Any], outcome: str, error: str | None = None
) -> None:
    conn.execute(
        """UPDATE tiering_operations SET finished_at = clock_timestamp(), counts = %s, outcome = %s, error = %s
           WHERE id = %s""",
        (Jsonb(_jsonable(counts)), outcome, error, op_id),
    )
    operation, queue = _RUNNING.pop(op_id, ("operation", None))
    log.info(
        "%s %s (operation %s)%s", operation, outcome, op_id, f": {error}" if error else "",
        extra={"operation_id": op_id, "operation": operation, "queue": queue, "outcome": outcome,
               "counts": _jsonable(counts)},
    )  # fmt: skip


@contextmanager
def audited(
    db: Connections | psycopg.Connection,
    operation: str,
    *,
    initiated_by: str | None,
    reason: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Iterator[Operation]:
    """Record an operation; its start and its end commit on their own, so a failed run still leaves its row.

    `db` is the session (the row gets its own autocommit connection, for work spread over threads) or the one
    idle connection the whole operation uses (its work then commits or rolls back its own transactions)."""
    if isinstance(db, psycopg.Connection):
        yield from _audited_on(db, operation, initiated_by=initiated_by, reason=reason, parameters=parameters)
        return
    with db.connection(autocommit=True) as conn:
        yield from _audited_on(conn, operation, initiated_by=initiated_by, reason=reason, parameters=parameters)


def _audited_on(
    conn: psycopg.Connection,
    operation: str,
    *,
    initiated_by: str | None,
    reason: str | None,
    parameters: dict[str, Any] | None,
) -> Iterator[Operation]:
    op = Operation(
        start_operation(conn, operation, initiated_by=initiated_by, reason=reason, parameters=parameters), operation
    )
    if not conn.autocommit:
        conn.commit()
    try:
        yield op
    except BaseException as exc:
        if not conn.autocommit and not conn.closed:
            conn.rollback()
        finish_operation(conn, op.id, counts=op.counts, outcome="failed", error=f"{type(exc).__name__}: {exc}")
        if not conn.autocommit:
            conn.commit()
        raise
    finish_operation(conn, op.id, counts=op.counts, outcome=op.outcome)
    if not conn.autocommit:
        conn.commit()


@dataclass(frozen=True)
class OperationRow:
    id: int
    operation: str
    initiated_by: str | None
    reason: str | None
    started_at: datetime
    finished_at: datetime | None
    parameters: dict[str, Any]
    counts: dict[str, Any]
    outcome: str
    error: str | None


def list_operations(
    conn: psycopg.Connection,
    *,
    since: datetime | None = None,
    operation: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OperationRow]:
    rows = conn.execute(
        """SELECT id, operation, initiated_by, reason, started_at, finished_at, parameters, counts, outcome, error
             FROM tiering_operations
            WHERE (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
              AND (%(op)s::text IS NULL OR operation = %(op)s)
            ORDER BY started_at DESC, id DESC
            LIMIT %(limit)s OFFSET %(offset)s""",
        {"since": since, "op": operation, "limit": limit, "offset": offset},
    ).fetchall()
    return [OperationRow(*row) for row in rows]


def get_operation(conn: psycopg.Connection, op_id: int) -> OperationRow | None:
    row = conn.execute(
        """SELECT id, operation, initiated_by, reason, started_at, finished_at, parameters, counts, outcome, error
             FROM tiering_operations WHERE id = %s""",
        (op_id,),
    ).fetchone()
    return OperationRow(*row) if row else None
