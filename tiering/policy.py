"""Archival policies and configs, their JSON file form, and the eligibility rules they imply. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from tiering.errors import ConfigError

TERMINAL_STATUSES: tuple[str, ...] = ("Completed", "Failed", "Dead", "TimedOut")
ALL_STATUSES: tuple[str, ...] = ("Pending", "Running", "Completed", "Failed", "Dead", "TimedOut", "Retrying")
FINISH_COLUMN: dict[str, str] = {
    "Completed": "completed_at",
    "Failed": "failed_at",
    "Dead": "failed_at",
    "TimedOut": "timed_out_at",
}
STORAGE_CLASSES: tuple[str, ...] = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
MAX_BATCH_SIZE = 1_000_000  # jobs moved in one transaction; more only holds locks longer
REASONS: tuple[str, ...] = ("Automatic", "Manual", "Compliance", "Maintenance")
# How staged payloads are stored: "none" copies them as they are (the fastest move), "gzip" is Hammerwork's own
# codec. Staging stays readable by Hammerwork's restore either way; "zstd" (the default of earlier tiering builds) is
# accepted and means "none" here: zstd is applied inside Parquet, never in hammerwork_jobs_archive.
PAYLOAD_CODECS: tuple[str, ...] = ("none", "gzip", "zstd")

_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "y": 365 * 86400, "year": 365 * 86400, "years": 365 * 86400,
}  # fmt: skip
_HUMAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
_ISO = re.compile(
    r"^P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def normalize_status(value: str) -> str:
    """`"Completed"` (Hammerwork < 1.7.4 stored the quotes) and `completed` both mean Completed."""
    bare = value.strip().strip('"').strip()
    for status in ALL_STATUSES:
        if status.lower() == bare.lower() or (status == "TimedOut" and bare.lower() in {"timed_out", "timedout"}):
            return status
    raise ValueError(f"unknown job status {value!r} (one of {', '.join(ALL_STATUSES)})")


_MAX_SECONDS = 10**14  # beyond timedelta's range (~8.6e13 s), and ints past this never fit a float exactly


def duration_text_seconds(text: str) -> float:
    """Seconds of a duration written with a unit (`7d`, `12 hours`) or in ISO 8601 (`P7D`, `PT12H`);
    ValueError saying why otherwise. A bare number is the caller's decision, not accepted here."""
    value = text.strip()
    upper = value.upper()
    if upper.startswith("P") and (m := _ISO.match(upper)) and upper not in {"P", "PT"}:
        parts = {k: float(v) for k, v in m.groupdict().items() if v}
        if not parts:
            raise ValueError("empty ISO-8601 duration")
        return (
            parts.get("y", 0) * 365 * 86400
            + parts.get("mo", 0) * 30 * 86400
            + parts.get("w", 0) * 604800
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("mi", 0) * 60
            + parts.get("s", 0)
        )
    if (m2 := _HUMAN.match(value)) and m2.group(2).lower() in _UNIT_SECONDS:
        return float(m2.group(1)) * _UNIT_SECONDS[m2.group(2).lower()]
    if value.startswith("-"):
        raise ValueError("must not be negative")
    raise ValueError("cannot parse")


def parse_duration(value: Any, *, field_name: str = "duration") -> timedelta:
    """Durations as users and Hammerwork write them: 7d, "12 hours", P7D, PT12H, 3600, [secs, nanos]."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f'{field_name}: {why} (got {value!r}; use e.g. "7d", "12h", "P7D" or seconds)')

    seconds: float
    if isinstance(value, bool):
        raise bad("not a duration")
    if isinstance(value, int) and abs(value) > _MAX_SECONDS:
        raise bad("is out of range (too large)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, list | tuple):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad("a [secs, nanos] pair of integers is expected")
        if value[1] < 0 or value[1] >= 1_000_000_000:
            raise bad("nanos must be within 0..999999999")
        if abs(value[0]) > _MAX_SECONDS:
            raise bad("is out of range (too large)")
        seconds = value[0] + value[1] / 1e9
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            try:
                seconds = duration_text_seconds(text)
            except ValueError as exc:
                raise bad(str(exc)) from None
    else:
        raise bad("not a duration")
    if seconds != seconds:  # NaN (json.loads accepts it)
        raise bad("not a number")
    if seconds < 0:
        raise bad("must not be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise bad("is out of range (too large)") from None


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class StorageClassRule:
    """Objects of this queue and/or status go to this storage class at upload (first match wins)."""

    storage_class: str
    queue: str | None = None
    status: str | None = None

    def matches(self, queue: str, status: str) -> bool:
        return (self.queue is None or self.queue == queue) and (self.status is None or self.status == status)


@dataclass(frozen=True)
class LifecycleTransition:
    """Bucket lifecycle: move objects (of one queue, or all) to a colder class after N days."""

    after: timedelta
    storage_class: str
    queue: str | None = None


@dataclass(frozen=True)
class ArchivalPolicy:
    archive_completed_after: timedelta | None = timedelta(days=7)
    archive_failed_after: timedelta | None = timedelta(days=30)
    archive_dead_after: timedelta | None = timedelta(days=14)
    archive_timed_out_after: timedelta | None = timedelta(days=21)
    purge_archived_after: timedelta | None = timedelta(days=365)
    compress_archived_payloads: bool = True
    batch_size: int = 1000
    enabled: bool = True
    dry_run: bool = False
    auto_purge: bool = True
    queue_policies: dict[str, timedelta] = field(default_factory=dict)
    default_storage_class: str = "STANDARD"
    storage_classes: tuple[StorageClassRule, ...] = ()
    lifecycle_transitions: tuple[LifecycleTransition, ...] = ()
    schedules: dict[str, str] = field(default_factory=dict)

    # Builder methods in the reference's style, returning new immutable policies.
    def with_queue_specific_policy(self, queue: str, keep_for: timedelta) -> ArchivalPolicy:
        return replace(self, queue_policies={**self.queue_policies, queue: keep_for})

    def with_batch_size(self, size: int) -> ArchivalPolicy:
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch_size: must be from 1 to {MAX_BATCH_SIZE}")
        return replace(self, batch_size=size)

    def threshold_for(self, status: str) -> timedelta | None:
        return {
            "Completed": self.archive_completed_after,
            "Failed": self.archive_failed_after,
            "Dead": self.archive_dead_after,
            "TimedOut": self.archive_timed_out_after,
        }[status]

    def storage_class_for(self, queue: str, status: str) -> str:
        for rule in self.storage_classes:
            if rule.matches(queue, status):
                return rule.storage_class
        return self.default_storage_class


@dataclass(frozen=True)
class ArchivalConfig:
    compression_level: int = 6
    payload_codec: str = "none"
    verify_compression: bool = True
    min_payload_size_for_compression: int = 64

    def with_compression_level(self, level: int) -> ArchivalConfig:
        _check_level(level, self.payload_codec)
        return replace(self, compression_level=level)


def _check_level(level: int, codec: str) -> None:
    top = 9 if codec == "gzip" else 22  # gzip's levels; otherwise the level is Parquet's zstd level
    if not 0 <= level <= top:
        raise ConfigError(f"compression_level: must be within 0..{top} for {codec} (got {level})")


@dataclass(frozen=True)
class EligibilityClause:
    """Jobs in `statuses` whose `finish_column` is before `cutoff`, restricted by queue."""

    statuses: tuple[str, ...]
    finish_column: str
    cutoff: datetime
    only_queue: str | None = None
    except_queues: tuple[str, ...] = ()

    @property
    def stored_statuses(self) -> list[str]:
        return stored_spellings(self.statuses)


def stored_spellings(statuses: tuple[str, ...]) -> list[str]:
    """The plain and the legacy quoted spellings of `statuses`, as they may sit in the status column."""
    return [s for status in statuses for s in (status, f'"{status}"')]


def eligibility_clauses(policy: ArchivalPolicy, now: datetime) -> list[EligibilityClause]:
    """The OR-ed conditions that make a hot job eligible: per status, with queue overrides winning."""
    overrides = tuple(sorted(policy.queue_policies))
    clauses: list[EligibilityClause] = []
    by_column: dict[tuple[str, timedelta], list[str]] = {}
    for status in TERMINAL_STATUSES:
        threshold = policy.threshold_for(status)
        if threshold is not None:
            by_column.setdefault((FINISH_COLUMN[status], threshold), []).append(status)
    for (column, threshold), statuses in by_column.items():
        clauses.append(EligibilityClause(tuple(statuses), column, now - threshold, except_queues=overrides))
    for queue in overrides:
        keep = policy.queue_policies[queue]
        per_column: dict[str, list[str]] = {}
        for status in TERMINAL_STATUSES:
            per_column.setdefault(FINISH_COLUMN[status], []).append(status)
        for column, statuses in per_column.items():
            clauses.append(EligibilityClause(tuple(statuses), column, now - keep, only_queue=queue))
    return clauses


# ---------------------------------------------------------------- JSON form (policy files, DB)

POLICY_SCHEMA_RESOURCE = "policy.schema.json"  # package data (schemas/policy.schema.json links to it)


@lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    """The policy's JSON Schema, shipped inside the package."""
    text = (files("tiering") / POLICY_SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _json_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(policy)"


def schema_problems(data: Any) -> list[str]:
    """Every way `data` breaks the policy's JSON Schema, each naming its field (empty when it conforms)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(policy_schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        message = error.message
        if error.validator == "oneOf":
            message = f"{error.instance!r} is not a valid value"
        problems.append(f"{_json_path(error.absolute_path)}: {message}")
    return problems


_DURATION_FIELDS = (
    "archive_completed_after",
    "archive_failed_after",
    "archive_dead_after",
    "archive_timed_out_after",
    "purge_archived_after",
)
_POLICY_FIELDS = {
    *_DURATION_FIELDS,
    "compress_archived_payloads",
    "batch_size",
    "enabled",
    "dry_run",
    "auto_purge",
    "queue_policies",
    "default_storage_class",
    "storage_classes",
    "lifecycle_transitions",
    "schedules",
}
_CONFIG_FIELDS = {"compression_level", "payload_codec", "verify_compression", "min_payload_size_for_compression"}
SCHEDULE_NAMES = ("archive", "flush", "purge", "verify")


def _require(cond: bool, name: str, why: str) -> None:
    if not cond:
        raise ConfigError(f"{name}: {why}")


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    _require(isinstance(value, bool), name, f"must be true or false (got {value!r})")
    return bool(value)


def _storage_class(value: Any, name: str) -> str:
    _require(isinstance(value, str) and value in STORAGE_CLASSES, name,
             f"unknown storage class {value!r} (one of {', '.join(STORAGE_CLASSES)})")  # fmt: skip
    return str(value)


def _status(value: Any, name: str) -> str:
    _require(isinstance(value, str), name, f"must be a status name (got {value!r})")
    try:
        status = normalize_status(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    _require(status in TERMINAL_STATUSES, name, f"{status} jobs are never archived")
    return status


def policy_from_dict(data: Any, *, source: str = "policy") -> tuple[ArchivalPolicy, ArchivalConfig]:
    """Validate a policy document: first against its JSON Schema (every problem reported at once), then the
    rules a schema cannot say (durations, cron, ranges); every error names the offending field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a JSON object")
    problems = schema_problems(data)
    if problems:
        head = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise ConfigError(head + "; ".join(problems))
    unknown = sorted(set(data) - _POLICY_FIELDS - _CONFIG_FIELDS - {"$schema", "config"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field in {source} (known: {', '.join(sorted(_POLICY_FIELDS))})")
    config_data = dict(data.get("config") or {})
    _require(isinstance(data.get("config", {}), dict), "config", "must be an object")
    for name in _CONFIG_FIELDS & set(data):
        config_data[name] = data[name]
    unknown_cfg = sorted(set(config_data) - _CONFIG_FIELDS)
    if unknown_cfg:
        raise ConfigError(f"config.{unknown_cfg[0]}: unknown field")

    durations: dict[str, timedelta | None] = {}
    defaults = ArchivalPolicy()
    for name in _DURATION_FIELDS:
        if name in data:
            durations[name] = None if data[name] is None else parse_duration(data[name], field_name=name)
        else:
            durations[name] = getattr(defaults, name)

    batch_size = data.get("batch_size", defaults.batch_size)
    _require(isinstance(batch_size, int) and not isinstance(batch_size, bool) and 1 <= batch_size <= MAX_BATCH_SIZE,
             "batch_size", f"must be an integer from 1 to {MAX_BATCH_SIZE} (got {batch_size!r})")  # fmt: skip

    queue_policies: dict[str, timedelta] = {}
    raw_queues = data.get("queue_policies", {})
    _require(isinstance(raw_queues, dict), "queue_policies", "must be an object of queue name -> duration")
    for queue, value in raw_queues.items():
        _require(bool(queue), "queue_policies", "queue names must not be empty")
        queue_policies[queue] = parse_duration(value, field_name=f"queue_policies.{queue}")

    rules: list[StorageClassRule] = []
    raw_rules = data.get("storage_classes", [])
    _require(isinstance(raw_rules, list), "storage_classes", "must be a list of rules")
    for i, rule in enumerate(raw_rules):
        name = f"storage_classes[{i}]"
        _require(isinstance(rule, dict), name, "must be an object")
        extra = set(rule) - {"queue", "status", "storage_class"}
        _require(not extra, name, f"unknown field {sorted(extra)[0] if extra else ''!r}")
        queue = rule.get("queue")
        _require(queue is None or isinstance(queue, str), f"{name}.queue", "must be a queue name")
        status = None if rule.get("status") is None else _status(rule["status"], f"{name}.status")
        rules.append(
            StorageClassRule(_storage_class(rule.get("storage_class"), f"{name}.storage_class"), queue, status)
        )

    transitions: list[LifecycleTransition] = []
    raw_transitions = data.get("lifecycle_transitions", [])
    _require(isinstance(raw_transitions, list), "lifecycle_transitions", "must be a list")
    for i, item in enumerate(raw_transitions):
        name = f"lifecycle_transitions[{i}]"
        _require(isinstance(item, dict), name, "must be an object")
        extra = set(item) - {"after", "storage_class", "queue"}
        _require(not extra, name, f"unknown field {sorted(extra)[0] if extra else ''!r}")
        _require("after" in item, f"{name}.after", "is required")
        after = parse_duration(item["after"], field_name=f"{name}.after")
        _require(after >= timedelta(days=1), f"{name}.after", "lifecycle transitions count whole days (>= 1d)")
        queue = item.get("queue")
        _require(queue is None or isinstance(queue, str), f"{name}.queue", "must be a queue name")
        transitions.append(
            LifecycleTransition(after, _storage_class(item.get("storage_class"), f"{name}.storage_class"), queue)
        )

    schedules = data.get("schedules", {})
    _require(isinstance(schedules, dict), "schedules", "must be an object of task -> cron expression")
    for task, expr in schedules.items():
        _require(task in SCHEDULE_NAMES, f"schedules.{task}", f"unknown task (one of {', '.join(SCHEDULE_NAMES)})")
        _require(isinstance(expr, str) and len(expr.split()) in (5, 6), f"schedules.{task}",
                 f"must be a cron expression like \"0 2 * * *\" (got {expr!r})")  # fmt: skip

    policy = ArchivalPolicy(
        archive_completed_after=durations["archive_completed_after"],
        archive_failed_after=durations["archive_failed_after"],
        archive_dead_after=durations["archive_dead_after"],
        archive_timed_out_after=durations["archive_timed_out_after"],
        purge_archived_after=durations["purge_archived_after"],
        compress_archived_payloads=_bool(data, "compress_archived_payloads", defaults.compress_archived_payloads),
        batch_size=batch_size,
        enabled=_bool(data, "enabled", defaults.enabled),
        dry_run=_bool(data, "dry_run", defaults.dry_run),
        auto_purge=_bool(data, "auto_purge", defaults.auto_purge),
        queue_policies=queue_policies,
        default_storage_class=_storage_class(
            data.get("default_storage_class", defaults.default_storage_class), "default_storage_class"
        ),
        storage_classes=tuple(rules),
        lifecycle_transitions=tuple(transitions),
        schedules=dict(schedules),
    )

    cfg_defaults = ArchivalConfig()
    codec = config_data.get("payload_codec", cfg_defaults.payload_codec)
    _require(codec in PAYLOAD_CODECS, "payload_codec", f"must be one of {', '.join(PAYLOAD_CODECS)} (got {codec!r})")
    level = config_data.get("compression_level", cfg_defaults.compression_level)
    _require(isinstance(level, int) and not isinstance(level, bool), "compression_level", "must be an integer")
    _check_level(level, codec)
    min_size = config_data.get("min_payload_size_for_compression", cfg_defaults.min_payload_size_for_compression)
    _require(isinstance(min_size, int) and not isinstance(min_size, bool) and min_size >= 0,
             "min_payload_size_for_compression", f"must be a non-negative integer (got {min_size!r})")  # fmt: skip
    config = ArchivalConfig(
        compression_level=level,
        payload_codec=codec,
        verify_compression=_bool(config_data, "verify_compression", cfg_defaults.verify_compression),
        min_payload_size_for_compression=min_size,
    )
    return policy, config


def policy_to_dict(policy: ArchivalPolicy, config: ArchivalConfig | None = None) -> dict[str, Any]:
    """The JSON document form; policy_from_dict(policy_to_dict(p)) == p."""

    def dur(value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)

    doc: dict[str, Any] = {name: dur(getattr(policy, name)) for name in _DURATION_FIELDS}
    doc.update(
        compress_archived_payloads=policy.compress_archived_payloads,
        batch_size=policy.batch_size,
        enabled=policy.enabled,
        dry_run=policy.dry_run,
        auto_purge=policy.auto_purge,
        queue_policies={q: format_duration(d) for q, d in policy.queue_policies.items()},
        default_storage_class=policy.default_storage_class,
        storage_classes=[{k: v for k, v in asdict(r).items() if v is not None} for r in policy.storage_classes],
        lifecycle_transitions=[
            {
                k: v
                for k, v in (
                    ("after", format_duration(t.after)),
                    ("storage_class", t.storage_class),
                    ("queue", t.queue),
                )
                if v is not None
            }  # fmt: skip
            for t in policy.lifecycle_transitions
        ],
        schedules=dict(policy.schedules),
    )
    if config is not None:
        doc["config"] = asdict(config)
    return doc


def load_policy_file(path: str | Path) -> tuple[ArchivalPolicy, ArchivalConfig]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"policy file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"policy file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    try:
        return policy_from_dict(data, source=f"policy file {path}")
    except ConfigError as exc:
        raise ConfigError(f"policy file {path}: {exc}") from exc
