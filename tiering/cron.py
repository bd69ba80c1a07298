"""Cron expressions (UTC) for the schedules: validity and window starts. Pure; used by the scheduler and by
the policy check of every entry point."""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import croniter

from tiering.errors import ConfigError


def cron_valid(expr: str) -> bool:
    try:
        return bool(croniter.is_valid(expr))
    except Exception:  # noqa: BLE001 - croniter raises assorted errors on odd input
        return False


def check_schedules(schedules: dict[str, str]) -> None:
    """ConfigError naming the first schedule whose cron expression is invalid."""
    for task, expr in schedules.items():
        if not cron_valid(expr):
            raise ConfigError(f'schedules.{task}: {expr!r} is not a valid cron expression (e.g. "0 2 * * *")')


def previous_window(expr: str, now: datetime) -> datetime:
    """The latest window start at or before `now` (UTC)."""
    # croniter's get_prev is strict: start one second later so a window starting exactly now counts.
    return croniter(expr, now.replace(microsecond=0) + timedelta(seconds=1)).get_prev(datetime)  # type: ignore[no-any-return]


def next_window(expr: str, now: datetime) -> datetime:
    return croniter(expr, now).get_next(datetime)  # type: ignore[no-any-return]
