"""One or two examples per command, shown at the end of its `--help`. Kept in one table so a test can check
that every command has some and that each one parses (options and arguments as the command defines them)."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, tuple[str, ...]] = {
    "archive run": (
        "tiering archive run --dry-run",
        "tiering archive run --reason automatic --initiated-by cron --format json --log-format json",
    ),
    "archive flush": ("tiering archive flush", "tiering archive flush --format json"),
    "archive get-policy": ("tiering archive get-policy", "tiering archive get-policy --format table"),
    "archive set-policy": ("tiering archive set-policy --file policy.json",),
    "archive remove-policy": ("tiering archive remove-policy --yes",),
    "archive verify": ("tiering archive verify", "tiering archive verify --deep --repair --format json"),
    "archive list": (
        "tiering archive list --queue emails --status Failed --limit 20",
        "tiering archive list --archived-after 2024-05-01 --format csv",
    ),
    "archive search": (
        "tiering archive search customer.id 12345",
        "tiering archive search order.status refunded --queue payments --format json",
    ),
    "archive show": ("tiering archive show 3f2b8c1e-9a4d-4c7e-8f00-1234567890ab --payload",),
    "archive restore": (
        "tiering archive restore 3f2b8c1e-9a4d-4c7e-8f00-1234567890ab",
        "tiering archive restore --queue emails --status Failed --limit 100 --dry-run",
    ),
    "archive purge": (
        'tiering archive purge --older-than "365 days" --dry-run',
        "tiering archive purge --older-than 2024-01-31 --queue test_queue --yes",
    ),
    "archive erase": (
        "tiering archive erase --match customer.id=12345 --dry-run",
        "tiering archive erase --job-id 3f2b8c1e-9a4d-4c7e-8f00-1234567890ab --request-ref GDPR-42 --yes",
    ),
    "archive stats": ("tiering archive stats --detailed", "tiering archive stats --watch --interval 5s"),
    "archive iceberg publish": (
        "TIERING_ICEBERG=1 tiering archive iceberg publish",
        "TIERING_ICEBERG=1 tiering archive iceberg publish --format json",
    ),
    "archive iceberg verify": ("TIERING_ICEBERG=1 tiering archive iceberg verify --format json",),
    "archive iceberg expire-snapshots": ("TIERING_ICEBERG=1 tiering archive iceberg expire-snapshots --older-than 7d",),
    "archive lifecycle plan": ("tiering archive lifecycle plan", "tiering archive lifecycle plan --format json"),
    "archive lifecycle apply": ("tiering archive lifecycle apply --yes",),
    "audit": ("tiering audit --since 7d", "tiering audit --since 2024-05-01 --operation purge --format json"),
    "serve": ("tiering serve", "TIERING_API_TOKEN=secret tiering serve --host 0.0.0.0 --port 8080"),
    "schedule": ("tiering schedule --once", "tiering schedule --poll 30"),
    "demo seed": ("tiering --embedded demo seed --count 100000", "tiering --embedded demo seed --if-empty"),
    "db stop": ("tiering db stop", "TIERING_HOME=/srv/tiering tiering db stop"),
    "db status": ("tiering db status --format json",),
    "analyst duckdb": (
        "tiering analyst duckdb",
        'tiering analyst duckdb -c "SELECT queue_name, count(*) FROM archived_jobs GROUP BY 1"',
    ),
    "analyst athena-ddl": ("tiering analyst athena-ddl --glue-database hammerwork --table archived_jobs",),
}


def leaf_commands(command: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every runnable command under `command`, by its path ("archive run")."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return {" ".join(path): command}
    found: dict[str, Any] = {}
    for name, sub in subcommands.items():
        found.update(leaf_commands(sub, (*path, name)))
    return found


def groups(command: Any) -> list[Any]:
    """`command` and every group below it."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return []
    return [command, *(g for sub in subcommands.values() for g in groups(sub))]


def attach_examples(root: Any) -> None:
    """Put each command's examples in its help epilog."""
    for path, command in leaf_commands(root).items():
        examples = EXAMPLES.get(path)
        if examples and not command.epilog:
            command.epilog = "Examples:\n\n" + "\n".join(f"  {line}" for line in examples)
