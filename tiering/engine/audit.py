"""Reading the audit trail (tiering_operations) and what the service shows of it; writing goes through
`tiering.db.operations.audited` inside each engine operation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tiering.context import Session
from tiering.db import service as sql
from tiering.db.operations import OperationRow, get_operation, list_operations


def list_audit(
    session: Session,
    *,
    since: datetime | None = None,
    operation: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OperationRow]:
    """Audit rows, newest first."""
    with session.connection() as conn:
        return list_operations(conn, since=since, operation=operation, limit=limit, offset=offset)


def get_audit_entry(session: Session, op_id: int) -> OperationRow | None:
    with session.connection() as conn:
        return get_operation(conn, op_id)


def daily_trends(session: Session, days: int) -> list[dict[str, Any]]:
    """Per UTC day of the last `days`: jobs archived, flushed, restored, purged and erased."""
    with session.connection() as conn:
        return sql.daily_trends(conn, days)


def database_reachable(session: Session) -> bool:
    """True when a pooled connection answers (healthz); raises what connecting raised otherwise."""
    with session.connection() as conn:
        conn.execute("SELECT 1")
    return True
