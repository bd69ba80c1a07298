"""Stored policies (tiering_policies): what `archive run` uses when no --policy file is given."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

DEFAULT_POLICY_NAME = "default"


def get_policy_document(conn: psycopg.Connection, name: str = DEFAULT_POLICY_NAME) -> dict[str, Any] | None:
    row = conn.execute("SELECT policy FROM tiering_policies WHERE name = %s", (name,)).fetchone()
    return dict(row[0]) if row else None


def put_policy_document(
    conn: psycopg.Connection, document: dict[str, Any], *, updated_by: str | None, name: str = DEFAULT_POLICY_NAME
) -> None:
    conn.execute(
        """INSERT INTO tiering_policies (name, policy, updated_by) VALUES (%s, %s, %s)
           ON CONFLICT (name) DO UPDATE SET policy = EXCLUDED.policy, updated_by = EXCLUDED.updated_by,
                                            updated_at = now()""",
        (name, Jsonb(document), updated_by),
    )


def delete_policy_document(conn: psycopg.Connection, name: str = DEFAULT_POLICY_NAME) -> bool:
    cur = conn.execute("DELETE FROM tiering_policies WHERE name = %s", (name,))
    return cur.rowcount > 0
