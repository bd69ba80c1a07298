"""The stored policy (what `archive run` uses without a --policy file): read, validate + store, remove.

CLI and API call these, so both validate the same way (policy rules and cron expressions) and both audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiering.context import Session
from tiering.cron import check_schedules
from tiering.db.operations import audited
from tiering.db.policies import delete_policy_document, get_policy_document, put_policy_document
from tiering.policy import policy_from_dict, policy_to_dict


@dataclass(frozen=True)
class StoredPolicy:
    stored: bool  # False: no policy is stored and `document` holds the defaults
    document: dict[str, Any]


def get_stored_policy(session: Session) -> StoredPolicy:
    """The stored policy document, or the defaults (stored=False) when none is stored."""
    with session.connection() as conn:
        document = get_policy_document(conn)
    if document is not None:
        return StoredPolicy(True, document)
    policy, config, _ = session.load_policy()
    return StoredPolicy(False, policy_to_dict(policy, config))


def set_policy(
    session: Session,
    document: dict[str, Any],
    *,
    initiated_by: str | None,
    source: str = "policy",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate `document` (ConfigError naming the field), store its normalized form, audit it; returns it."""
    policy, config = policy_from_dict(document, source=source)
    check_schedules(policy.schedules)
    normalized = policy_to_dict(policy, config)
    with audited(session, "policy_set", initiated_by=initiated_by, parameters=parameters) as op:
        with session.connection() as conn:
            put_policy_document(conn, normalized, updated_by=initiated_by)
        op.counts = {"policy": normalized}
    return normalized


def remove_policy(session: Session, *, initiated_by: str | None) -> bool:
    """Remove the stored policy (runs fall back to the defaults); False when none was stored."""
    with audited(session, "policy_remove", initiated_by=initiated_by) as op:
        with session.connection() as conn:
            removed = delete_policy_document(conn)
        op.counts = {"removed": removed}
    return removed
