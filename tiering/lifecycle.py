"""Bucket lifecycle rules for tiering's objects: render, merge with others' rules, diff. Pure (no I/O).

tiering owns exactly the rules whose ID starts with `tiering:`; every other rule in the bucket is
kept untouched when ours are written (S3 replaces the whole configuration on each write, so the
engine reads the current rules, `merge_rules`, and writes the result back).

    specs = [LifecycleSpec("", [(30, "STANDARD_IA"), (90, "GLACIER")], expiration_days=365),
             LifecycleSpec("queue=emails", [], expiration_days=30)]
    desired = merge_rules(store.get_lifecycle_rules(), render_rules(specs, store.prefix))
    print(diff_rules(store.get_lifecycle_rules(), desired).text())
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiering.errors import ConfigError
from tiering.policy import STORAGE_CLASSES

RULE_ID_PREFIX = "tiering:"
MAX_RULES = 1000
MAX_RULE_ID_LENGTH = 255
ABORT_INCOMPLETE_MPU_DAYS = 7

VALID_STORAGE_CLASSES: frozenset[str] = frozenset(STORAGE_CLASSES)
# Lifecycle transitions run "down" this waterfall only (S3 refuses the reverse).
_WATERFALL: dict[str, int] = {
    "STANDARD_IA": 1,
    "INTELLIGENT_TIERING": 2,
    "ONEZONE_IA": 3,
    "GLACIER_IR": 4,
    "GLACIER": 5,
    "DEEP_ARCHIVE": 6,
}
TRANSITION_STORAGE_CLASSES: frozenset[str] = frozenset(_WATERFALL)
_IA_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA"})

KB = 1024


@dataclass(frozen=True)
class BillingMinimum:
    """How S3 bills small or short-lived objects in a class (public pricing rules)."""

    min_bytes: int = 0  # objects smaller are billed as this size
    min_days: int = 0  # deleting/transitioning earlier is billed as this many days
    overhead_bytes: int = 0  # extra billed per object (archive index + metadata)
    never_moves_below: int = 0  # INTELLIGENT_TIERING: smaller objects stay in the frequent tier


BILLING_MINIMUMS: dict[str, BillingMinimum] = {
    "STANDARD": BillingMinimum(),
    "REDUCED_REDUNDANCY": BillingMinimum(),
    "STANDARD_IA": BillingMinimum(min_bytes=128 * KB, min_days=30),
    "ONEZONE_IA": BillingMinimum(min_bytes=128 * KB, min_days=30),
    "INTELLIGENT_TIERING": BillingMinimum(never_moves_below=128 * KB),
    "GLACIER_IR": BillingMinimum(min_bytes=128 * KB, min_days=90),
    "GLACIER": BillingMinimum(min_days=90, overhead_bytes=40 * KB),
    "DEEP_ARCHIVE": BillingMinimum(min_days=180, overhead_bytes=40 * KB),
}


class LifecycleError(ConfigError):
    """The lifecycle policy cannot be turned into valid S3 rules; nothing was changed."""


@dataclass(frozen=True)
class LifecycleSpec:
    """One rule to render.

    prefix: path under the store prefix the rule covers, "" for everything tiering writes, or
    e.g. "queue=emails" (rendered as "<store prefix>/queue=emails/").
    transitions: (days after creation, storage class), e.g. [(30, "STANDARD_IA"), (90, "GLACIER")].
    expiration_days: delete objects this many days after creation (None: never).
    """

    prefix: str
    transitions: Sequence[tuple[int, str]] = field(default_factory=list)
    expiration_days: int | None = None


def _full_prefix(store_prefix: str, rel: str) -> str:
    parts = [p.strip("/") for p in (store_prefix, rel) if p and p.strip("/")]
    return "/".join(parts) + "/" if parts else ""


def rule_id(full_prefix: str) -> str:
    """The ID tiering gives the rule covering full_prefix (hashed if too long for S3)."""
    body = full_prefix or "(whole bucket)"
    rid = RULE_ID_PREFIX + body
    if len(rid) > MAX_RULE_ID_LENGTH:
        digest = hashlib.sha256(full_prefix.encode()).hexdigest()[:16]
        rid = RULE_ID_PREFIX + body[: MAX_RULE_ID_LENGTH - len(RULE_ID_PREFIX) - 17] + "~" + digest
    return rid


def _validate(spec: LifecycleSpec) -> list[tuple[int, str]]:
    where = f"lifecycle rule for prefix {spec.prefix!r}"
    if ".." in spec.prefix.split("/") or spec.prefix.startswith("/"):
        raise LifecycleError(f"{where}: prefix must be relative and must not contain '..'")
    transitions = sorted((int(d), str(c)) for d, c in spec.transitions)
    last_days: int | None = None
    last_class: str | None = None
    for days, sclass in transitions:
        if sclass not in VALID_STORAGE_CLASSES:
            raise LifecycleError(
                f"{where}: unknown storage class {sclass!r}; use one of {', '.join(sorted(VALID_STORAGE_CLASSES))}"
            )
        if sclass not in TRANSITION_STORAGE_CLASSES:
            raise LifecycleError(
                f"{where}: lifecycle cannot transition objects to {sclass}; "
                f"targets are {', '.join(sorted(TRANSITION_STORAGE_CLASSES))}"
            )
        if days < 0:
            raise LifecycleError(f"{where}: transition to {sclass} after {days} days: days must be >= 0")
        if sclass in _IA_CLASSES and days < 30:
            raise LifecycleError(f"{where}: S3 requires at least 30 days before a transition to {sclass} (got {days})")
        if last_class is not None and last_days is not None:
            if days == last_days:
                raise LifecycleError(f"{where}: two transitions on day {days}")
            if _WATERFALL[sclass] <= _WATERFALL[last_class]:
                raise LifecycleError(
                    f"{where}: transition {last_class} (day {last_days}) -> {sclass} (day {days}) goes "
                    "back up the storage-class waterfall; S3 only moves objects to colder classes"
                )
            if last_class in _IA_CLASSES and days - last_days < 30:
                raise LifecycleError(
                    f"{where}: objects must stay 30 days in {last_class} before moving to {sclass} "
                    f"(day {last_days} -> day {days})"
                )
        last_days, last_class = days, sclass
    if spec.expiration_days is not None:
        if spec.expiration_days < 1:
            raise LifecycleError(f"{where}: expiration must be at least 1 day, not {spec.expiration_days}")
        if last_days is not None and spec.expiration_days <= last_days:
            raise LifecycleError(
                f"{where}: expiration after {spec.expiration_days} days comes before or on the last "
                f"transition (day {last_days}); expire later or drop the transition"
            )
    return transitions


def render_rules(policy_rules: Iterable[LifecycleSpec], prefix: str) -> list[dict[str, Any]]:
    """S3 lifecycle rule dicts (PutBucketLifecycleConfiguration shape) for tiering's objects under
    the store prefix; each also aborts incomplete multipart uploads after 7 days."""
    rules: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for spec in policy_rules:
        transitions = _validate(spec)
        full = _full_prefix(prefix, spec.prefix)
        if full in seen:
            raise LifecycleError(f"two lifecycle rules for the same prefix {full!r}")
        rid = rule_id(full)
        seen[full] = rid
        rule: dict[str, Any] = {"ID": rid, "Status": "Enabled", "Filter": {"Prefix": full}}
        if transitions:
            rule["Transitions"] = [{"Days": d, "StorageClass": c} for d, c in transitions]
        if spec.expiration_days is not None:
            rule["Expiration"] = {"Days": spec.expiration_days}
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": ABORT_INCOMPLETE_MPU_DAYS}
        rules.append(rule)
    return rules


def overlapping_prefixes(rules: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of rule IDs whose prefixes nest: S3 applies both, and for conflicting actions the
    cheaper class / earlier expiration wins, so a per-queue rule cannot extend a broader one."""
    items = [(str(r.get("ID", "")), _rule_prefix(r)) for r in rules]
    pairs = []
    for i, (id_a, pa) in enumerate(items):
        for id_b, pb in items[i + 1 :]:
            if pa.startswith(pb) or pb.startswith(pa):
                pairs.append((id_a, id_b))
    return pairs


def is_ours(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("ID", "")).startswith(RULE_ID_PREFIX)


def merge_rules(current: Iterable[Mapping[str, Any]], ours: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The whole configuration to write: every rule we don't own, unchanged and first, then ours
    (replacing all previous `tiering:` rules). More than 1000 rules is an error (S3's limit)."""
    kept = [dict(r) for r in current if not is_ours(r)]
    new = [dict(r) for r in ours]
    ids: set[str] = set()
    for r in new:
        rid = str(r.get("ID", ""))
        if not rid.startswith(RULE_ID_PREFIX):
            raise LifecycleError(f"rule {rid!r} does not carry the {RULE_ID_PREFIX!r} ID prefix tiering owns")
        if rid in ids:
            raise LifecycleError(f"duplicate lifecycle rule ID {rid!r}")
        ids.add(rid)
    merged = kept + new
    if len(merged) > MAX_RULES:
        raise LifecycleError(
            f"{len(merged)} lifecycle rules ({len(kept)} others' + {len(new)} tiering's): S3 allows at most "
            f"{MAX_RULES} per bucket; use fewer per-queue overrides"
        )
    return merged


def _rule_prefix(rule: Mapping[str, Any]) -> str:
    filt = rule.get("Filter")
    if isinstance(filt, Mapping):
        if "Prefix" in filt:
            return str(filt["Prefix"])
        and_ = filt.get("And")
        if isinstance(and_, Mapping):
            return str(and_.get("Prefix", ""))
    return str(rule.get("Prefix", ""))


def _strip_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {k: _strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, (list, tuple)):
        return [_strip_empty(v) for v in value]
    return value


def normalize_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical form for comparison: servers add empty fields, reorder keys and may use the
    legacy top-level Prefix."""
    norm = dict(rule)
    if "Prefix" in norm and "Filter" not in norm:
        norm["Filter"] = {"Prefix": norm.pop("Prefix")}
    else:
        norm.pop("Prefix", None)
    if isinstance(norm.get("Filter"), Mapping) and "Prefix" in norm["Filter"]:
        norm["Filter"] = dict(norm["Filter"])
        norm["Filter"]["Prefix"] = _rule_prefix(norm)  # keep "" meaning whole bucket
    if norm.get("Transitions"):
        norm["Transitions"] = sorted(
            (dict(t) for t in norm["Transitions"]), key=lambda t: (t.get("Days", 0), str(t.get("Date", "")))
        )
    prefix_value = _rule_prefix(norm)
    stripped = _strip_empty(norm)
    stripped.setdefault("Filter", {})
    if isinstance(stripped["Filter"], dict) and "And" not in stripped["Filter"]:
        stripped["Filter"]["Prefix"] = prefix_value
    return stripped


def _rule_key(rule: Mapping[str, Any]) -> str:
    rid = rule.get("ID")
    if rid:
        return str(rid)
    return "(no ID) " + json.dumps(normalize_rule(rule), sort_keys=True, default=str)


def describe_rule(rule: Mapping[str, Any]) -> str:
    """One line: `prefix: 30d -> STANDARD_IA, 90d -> GLACIER; expire after 365d; abort MPU after 7d`."""
    parts = []
    transitions = rule.get("Transitions") or []
    if transitions:
        parts.append(", ".join(f"{t.get('Days', t.get('Date'))}d -> {t.get('StorageClass')}" for t in transitions))
    exp = rule.get("Expiration") or {}
    if exp.get("Days") is not None:
        parts.append(f"expire after {exp['Days']}d")
    elif exp.get("Date") is not None:
        parts.append(f"expire on {exp['Date']}")
    abort = rule.get("AbortIncompleteMultipartUpload") or {}
    if abort.get("DaysAfterInitiation") is not None:
        parts.append(f"abort incomplete uploads after {abort['DaysAfterInitiation']}d")
    status = "" if rule.get("Status", "Enabled") == "Enabled" else f" [{rule.get('Status')}]"
    prefix = _rule_prefix(rule) or "(whole bucket)"
    return f"{prefix}: {'; '.join(parts) or 'no actions'}{status}"


@dataclass
class LifecycleDiff:
    """What writing `desired` would change compared with `current`, rule by rule (keyed by ID)."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (before, after)
    unchanged: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def text(self) -> str:
        """Human rendering: `+` added, `-` removed, `~` changed (before/after), then a summary."""
        lines: list[str] = []
        for r in self.added:
            lines.append(f"+ {_rule_key(r)}  {describe_rule(r)}")
        for r in self.removed:
            lines.append(f"- {_rule_key(r)}  {describe_rule(r)}")
        for before, after in self.changed:
            lines.append(f"~ {_rule_key(after)}")
            lines.append(f"    before: {describe_rule(before)}")
            lines.append(f"    after:  {describe_rule(after)}")
        summary = (
            f"{len(self.added)} to add, {len(self.removed)} to remove, {len(self.changed)} to change, "
            f"{len(self.unchanged)} unchanged"
        )
        if not self.has_changes:
            summary = "lifecycle rules are up to date (" + summary + ")"
        lines.append(summary)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": [{"before": b, "after": a} for b, a in self.changed],
            "unchanged": self.unchanged,
        }


def diff_rules(current: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]) -> LifecycleDiff:
    """Compare two whole configurations (e.g. the bucket's and merge_rules' result)."""
    cur = {_rule_key(r): dict(r) for r in current}
    want = {_rule_key(r): dict(r) for r in desired}
    diff = LifecycleDiff()
    for key, rule in want.items():
        if key not in cur:
            diff.added.append(rule)
        elif normalize_rule(cur[key]) != normalize_rule(rule):
            diff.changed.append((cur[key], rule))
        else:
            diff.unchanged.append(rule)
    diff.removed = [rule for key, rule in cur.items() if key not in want]
    return diff


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def storage_class_warning(storage_class: str, object_bytes: int, days_in_class: int | None = None) -> str | None:
    """A warning when objects of this size (or kept this many days in the class) cost more there
    than in STANDARD because of the class's minimum billable size/duration; None when fine."""
    if storage_class not in VALID_STORAGE_CLASSES:
        raise LifecycleError(
            f"unknown storage class {storage_class!r}; use one of {', '.join(sorted(VALID_STORAGE_CLASSES))}"
        )
    rules = BILLING_MINIMUMS[storage_class]
    problems: list[str] = []
    if rules.never_moves_below and object_bytes < rules.never_moves_below:
        problems.append(
            f"objects under {_size(rules.never_moves_below)} (these are {_size(object_bytes)}) never move to "
            f"cheaper tiers in {storage_class}: they stay at the frequent-access price"
        )
    if rules.min_bytes and object_bytes < rules.min_bytes:
        problems.append(
            f"{storage_class} bills every object as at least {_size(rules.min_bytes)} (these are {_size(object_bytes)})"
        )
    if rules.overhead_bytes and object_bytes < 10 * rules.overhead_bytes:
        problems.append(
            f"{storage_class} adds about {_size(rules.overhead_bytes)} of billed overhead per object "
            f"(these are {_size(object_bytes)}); write larger objects"
        )
    if rules.min_days and days_in_class is not None and days_in_class < rules.min_days:
        problems.append(
            f"{storage_class} bills at least {rules.min_days} days; objects deleted or moved after "
            f"{days_in_class} days pay the remainder as an early-deletion fee"
        )
    if not problems:
        return None
    return "; ".join(problems)
