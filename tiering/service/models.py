"""Request bodies. Every field is bounded; unknown fields are refused (a typo must not be ignored)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tiering import inputs
from tiering.policy import REASONS, normalize_status
from tiering.service.security import MAX_QUEUE_LENGTH, QUEUE_PATTERN

QueueName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUEUE_LENGTH,
        pattern=QUEUE_PATTERN,
        description="queue name (any characters but control characters)",
    ),
]
Initiator = Annotated[
    str, Field(min_length=1, max_length=200, pattern=QUEUE_PATTERN, description="who asks (audit trail)")
]
Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=20,
        description=f"one of {', '.join(r.lower() for r in REASONS)} (case-insensitive)",
    ),
]
MAX_IDS = 10_000
# Dates go through the parser the CLI uses, so both accept the same forms (a bad one answers 422).
When = Annotated[datetime | None, BeforeValidator(inputs.as_value_error(inputs.parse_moment))]
# Job ids: the forms `tiering archive show` reads (dashes or not, braces), a bad one answers 422 naming the field.
JobIdValue = Annotated[uuid.UUID, BeforeValidator(inputs.as_value_error(inputs.parse_job_id))]


def _reason(value: str | None) -> str | None:
    if value is None:
        return None
    for known in REASONS:
        if known.lower() == value.strip().lower():
            return known
    raise ValueError(f"must be one of {', '.join(r.lower() for r in REASONS)}")


def _status(value: str | None) -> str | None:
    return None if value is None else normalize_status(value)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRequest(_Body):
    """POST /api/archive/run (Hammerwork's body: queue, reason, dry_run)."""

    queue: QueueName | None = Field(default=None, description="only this queue; all queues when absent")
    reason: Reason = "manual"
    initiated_by: Initiator | None = None
    dry_run: bool = Field(default=False, description="count what would move; change nothing")
    policy: dict[str, Any] | None = Field(
        default=None, description="a policy document (schemas/policy.schema.json) used instead of the stored one"
    )
    flush: bool = Field(default=True, description="flush staging to the object store after archiving")
    purge: bool = Field(default=True, description="run the policy's automatic purge afterwards")
    wait_seconds: float = Field(
        default=5.0, ge=0, le=60, description="answer with the result when the run ends within this time"
    )

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: str | None) -> str | None:
        return _reason(value)


class RestoreOne(_Body):
    dry_run: bool = Field(default=False, description="say where the job is and what would happen; change nothing")
    initiated_by: Initiator | None = None


class MatchFilter(_Body):
    key: Annotated[str, Field(min_length=1, max_length=500, pattern=QUEUE_PATTERN, description="dotted payload path")]
    value: Annotated[str, Field(max_length=1000)]

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        inputs.as_value_error(inputs.parse_key_path)(value)
        return value


class BulkRestoreRequest(_Body):
    """POST /api/archive/restore: jobs chosen by filters (newest archived first); dry_run previews them."""

    queue: QueueName | None = None
    status: Annotated[str, Field(max_length=20)] | None = None
    archived_after: When = None
    archived_before: When = None
    match: MatchFilter | None = Field(default=None, description="only jobs whose payload holds value at key")
    count: int | None = Field(default=None, ge=1, le=1_000_000, description="at most this many jobs")
    dry_run: bool = False
    initiated_by: Initiator | None = None
    wait_seconds: float = Field(default=10.0, ge=0, le=60)

    @field_validator("status")
    @classmethod
    def _check_status(cls, value: str | None) -> str | None:
        return _status(value)


class EraseRequest(_Body):
    """POST /api/archive/erase: remove jobs from every tier (right to erasure), by ids or by a payload match."""

    job_ids: list[JobIdValue] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    match: MatchFilter | None = Field(default=None, description="every job whose payload holds value at key")
    dry_run: bool = Field(default=False, description="only report where the jobs are")
    request_ref: Annotated[str, Field(min_length=1, max_length=200, pattern=QUEUE_PATTERN)] | None = Field(
        default=None, description="your reference for the erasure request (audit trail)"
    )
    initiated_by: Initiator | None = None


class LifecycleApplyRequest(_Body):
    initiated_by: Initiator | None = None
    dry_run: bool = Field(default=False, description="return the plan without writing it")
