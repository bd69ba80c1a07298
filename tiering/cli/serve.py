"""`tiering serve` (REST API + dashboard + scheduler + /metrics) and `tiering schedule` (the scheduler alone)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Any

import typer

from tiering import logs
from tiering.cli import output
from tiering.cli.common import FormatOption, context
from tiering.cli.output import Format
from tiering.cli.signals import MetricsFileOption
from tiering.errors import ConfigError

log = logging.getLogger(__name__)


def _safe_url(url: str) -> str:
    from tiering.cli.archive import _safe_url as strip_password

    return strip_password(url)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(envvar="TIERING_HOST", help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="TIERING_PORT", min=0, max=65535, help="TCP port.")] = 8080,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", envvar="TIERING_NO_SCHEDULER", help="Do not run the cron schedules.")
    ] = False,
    log_level: Annotated[str, typer.Option(envvar="TIERING_LOG_LEVEL", help="uvicorn log level.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Also serve /metrics on this port, on the same address, without credentials "
            "(TIERING_METRICS_PORT; TIERING_METRICS_OPEN=1 opens /metrics on the main port instead).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Serve the archive API (/api/archive), the dashboard (/archive), /metrics and /healthz."""
    import uvicorn

    from tiering.service.app import create_app
    from tiering.service.security import Credentials, is_loopback

    c = context(ctx)
    creds = Credentials.from_settings(c.settings)
    if not creds.configured and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host}: no credential is configured. Set TIERING_API_TOKEN (bearer) or "
            "TIERING_BASIC_AUTH_USER and TIERING_BASIC_AUTH_PASSWORD, or bind to 127.0.0.1"
        )
    if c.settings.basic_auth_user and not c.settings.basic_auth_password:
        raise ConfigError("TIERING_BASIC_AUTH_USER is set without TIERING_BASIC_AUTH_PASSWORD")
    url = c.database_url
    metrics_port = metrics_port if metrics_port is not None else c.settings.metrics_port
    metrics_listen = (host, metrics_port) if metrics_port is not None else None
    app = create_app(c, run_scheduler=not no_scheduler, metrics_listen=metrics_listen, bind_host=host)
    if not creds.configured:
        output.warn("no credential configured: the API is open to local users (loopback only)")
    if fmt is Format.json:  # one line a supervisor or a script can read before the server's own logs
        output.print_json({"serving": f"http://{host}:{port}/archive", "auth": creds.describe(),
                           "database": _safe_url(url), "scheduler": not no_scheduler})  # fmt: skip
    output.info(
        f"tiering serve on http://{host}:{port}/archive (auth: {creds.describe()}; database: {_safe_url(url)}; "
        f"scheduler: {'off' if no_scheduler else 'on'})"
        + (f"; /metrics without credential on port {metrics_port}" if metrics_port is not None else "")
        + ("; /metrics open without credential" if c.settings.metrics_open else "")
    )
    # With --log-format json uvicorn keeps its hands off logging: its access and error lines go through
    # tiering's JSON handler like every other line on stderr.
    log_config = None if logs.current_format() == "json" else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True, server_header=False,
                log_config=log_config)  # fmt: skip


def schedule(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit.")] = False,
    poll: Annotated[float, typer.Option(min=0.5, help="Seconds between checks at most.")] = 15.0,
    metrics_file: MetricsFileOption = None,
    fmt: FormatOption = Format.json,
) -> None:
    """Run the cron schedules (archive, flush, purge, verify) without the HTTP server."""
    from tiering.service.app import build_scheduler

    c = context(ctx)
    gateway = c.settings.pushgateway_url

    def report(task: str, result: dict[str, Any] | None, seconds: float, ok: bool) -> None:
        if metrics_file or gateway:
            from tiering.metrics import report_run

            for problem in report_run("schedule", [(task, result, seconds, ok)], metrics_file=metrics_file,
                                      pushgateway_url=gateway):  # fmt: skip
                output.warn(f"metrics: {problem}")

    scheduler = build_scheduler(c, poll_seconds=poll, report=report)
    entries = scheduler.entries()
    if not entries:
        output.warn("no schedules configured (settings `schedules` or the policy's `schedules`)")
    for e in entries:
        output.info(f"{e.task}: {e.cron} ({e.source}){'' if e.valid else ' INVALID'}")
    if once:
        results: list[dict[str, Any]] = [
            {"task": r.task, "window": r.window.isoformat(), "outcome": r.outcome, "error": r.error}
            for r in scheduler.tick()
        ]
        if fmt is Format.json:
            output.print_json(results)
        else:
            output.print_table(results, ["task", "window", "outcome", "error"], title="schedule --once")
        return
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheduler.start()
    output.info(f"scheduler running as {scheduler.instance}; Ctrl-C to stop")
    while not stop.wait(1.0):
        pass
    scheduler.stop()


def register(app: typer.Typer, archive_app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("schedule")(schedule)
