"""The policy rendered as bucket lifecycle rules: plan (diff against the bucket) and apply (merge + write)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tiering import layout, lifecycle
from tiering.context import Session
from tiering.db.operations import audited
from tiering.policy import ArchivalPolicy
from tiering.store.base import LifecycleUnsupportedError, ObjectStore

FALLBACK = (
    "tiering's own purge (automatic in `tiering archive run`, or `tiering archive purge`) enforces "
    "purge_archived_after instead; storage classes are still set at upload"
)


@dataclass
class LifecyclePlan:
    supported: bool
    desired: list[dict[str, Any]] = field(default_factory=list)  # the whole configuration after a merge
    ours: list[dict[str, Any]] = field(default_factory=list)
    current: list[dict[str, Any]] = field(default_factory=list)
    diff: lifecycle.LifecycleDiff | None = None
    warnings: list[str] = field(default_factory=list)
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "applied": self.applied,
            "rules": self.ours,
            "current": self.current,
            "diff": self.diff.to_dict() if self.diff else None,
            "has_changes": bool(self.diff and self.diff.has_changes),
            "diff_text": self.diff.text() if self.diff else None,
            "warnings": self.warnings,
        }


def _unsupported(exc: Exception) -> str:
    message = str(exc)
    return message if "purge" in message else f"{message}; {FALLBACK}"


def specs_from_policy(policy: ArchivalPolicy) -> list[lifecycle.LifecycleSpec]:
    """One rule for everything tiering writes, plus one per queue with transitions of its own."""
    expiration = None
    if policy.purge_archived_after is not None:
        expiration = max(1, math.ceil(policy.purge_archived_after.total_seconds() / 86400))
    by_queue: dict[str | None, list[tuple[int, str]]] = {None: []}
    for t in policy.lifecycle_transitions:
        by_queue.setdefault(t.queue, []).append((max(0, int(t.after.total_seconds() // 86400)), t.storage_class))
    specs = []
    for queue, transitions in by_queue.items():
        prefix = "" if queue is None else f"queue={layout.queue_slug(queue)}"
        specs.append(lifecycle.LifecycleSpec(prefix, transitions, expiration))
    return specs


def plan_lifecycle(store: ObjectStore, policy: ArchivalPolicy) -> LifecyclePlan:
    ours = lifecycle.render_rules(specs_from_policy(policy), store.prefix)
    plan = LifecyclePlan(supported=True, ours=ours)
    try:
        plan.current = store.get_lifecycle_rules()
    except LifecycleUnsupportedError as exc:
        plan.supported = False
        plan.warnings.append(_unsupported(exc))
        return plan
    plan.desired = lifecycle.merge_rules(plan.current, ours)
    plan.diff = lifecycle.diff_rules(plan.current, plan.desired)
    for a, b in lifecycle.overlapping_prefixes(ours):
        plan.warnings.append(f"rules {a} and {b} cover nested prefixes; S3 applies both")
    caps = store.capabilities
    for rule in ours:
        for t in rule.get("Transitions", []):
            if caps.storage_classes and t["StorageClass"] not in caps.storage_classes:
                plan.warnings.append(
                    f"{store.describe()} does not offer {t['StorageClass']}; the transition in {rule['ID']} "
                    f"may be refused or never happen ({FALLBACK})"
                )
    return plan


def apply_lifecycle(session: Session, policy: ArchivalPolicy, *, initiated_by: str | None = None) -> LifecyclePlan:
    """Write the merged configuration (rules tiering does not own are kept)."""
    store = session.store
    with audited(session, "lifecycle_apply", initiated_by=initiated_by, reason="Manual") as op:
        plan = plan_lifecycle(store, policy)
        if plan.supported and plan.diff is not None and plan.diff.has_changes:
            try:
                store.put_lifecycle_rules(plan.desired)
                plan.applied = True
            except LifecycleUnsupportedError as exc:
                plan.supported = False
                plan.warnings.append(_unsupported(exc))
        op.counts = {
            "applied": plan.applied,
            "supported": plan.supported,
            "rules": len(plan.ours),
            "changes": 0 if plan.diff is None else len(plan.diff.added) + len(plan.diff.changed),
        }
        op.outcome = "succeeded" if plan.supported else "unsupported"
    return plan
