"""The ASGI app: /api/archive (REST), /archive (dashboard), /metrics, /healthz."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiering import __version__
from tiering.context import Session
from tiering.engine.scheduler import Scheduler, default_instance
from tiering.engine.tasks import TaskRunner
from tiering.errors import TieringError
from tiering.service.admission import scan_pool
from tiering.service.envelope import Envelope, fail
from tiering.service.metrics import CONTENT_TYPE, Metrics
from tiering.service.security import (
    CHALLENGE,
    MAX_BODY_BYTES,
    AuthError,
    AuthGate,
    BodySizeLimit,
    Credentials,
    CrossSiteGuard,
    parse_allowed_hosts,
)

log = logging.getLogger(__name__)
# The dashboard's files are package data, read with importlib.resources: they ship inside the wheel.
STATIC_PACKAGE = ("tiering.service", "static")
DESCRIPTION = """Hammerwork-compatible archive API (`/api/archive/...`) over tiering's engine.

Every response is wrapped as `{success, data, error, timestamp}`. Authenticate with
`Authorization: Bearer <TIERING_API_TOKEN>` or HTTP Basic (TIERING_BASIC_AUTH_USER/PASSWORD);
`GET /healthz` is the only open route (reads too when `api_open_reads` is set)."""


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - 5
    return "invalid request: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def schedules_from(session: Session) -> Callable[[], dict[str, tuple[str, str]]]:
    """settings.schedules, overridden per task by the stored policy's schedules (read at each tick)."""

    def read() -> dict[str, tuple[str, str]]:
        out = {task: (cron, "settings") for task, cron in session.settings.schedules.items()}
        policy, _, source = session.load_policy()
        for task, cron in policy.schedules.items():
            out[task] = (cron, "policy" if source == "stored" else source)
        return out

    return read


def build_scheduler(
    session: Session,
    metrics: Metrics | None = None,
    *,
    report: Callable[[str, dict[str, Any] | None, float, bool], None] | None = None,
    **kwargs: Any,
) -> Scheduler:
    """`metrics`: serve's registry; `report(task, result, seconds, ok)`: e.g. `tiering schedule`'s textfile."""
    from tiering.service.jobs import scheduled_task

    def on_result(tick: Any, seconds: float) -> None:
        failed = tick.outcome == "failed"
        if metrics is not None:
            if failed:
                metrics.error(f"schedule:{tick.task}")
            metrics.record(tick.task, tick.result, seconds, ok=not failed)
        if report is not None:
            report(tick.task, tick.result, seconds, not failed)

    return Scheduler(
        session,
        schedules_from(session),
        lambda task: scheduled_task(session, task),
        on_result=on_result,
        **kwargs,
    )


def create_app(
    session: Session,
    *,
    run_scheduler: bool = False,
    instance: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    scheduler_poll_seconds: float = 15.0,
    metrics_listen: tuple[str, int] | None = None,
    bind_host: str | None = None,
) -> FastAPI:
    """`metrics_listen` (host, port): also serve /metrics there, without credentials, for Prometheus.
    `bind_host`: the address served, answered as a Host besides loopback names and settings.allowed_hosts."""
    instance = instance or default_instance()
    creds = Credentials.from_settings(session.settings)
    metrics = Metrics(session)
    scheduler = build_scheduler(session, metrics, instance=instance, poll_seconds=scheduler_poll_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _ = session.database_url  # migrate before the first request
        app.state.scans = scan_pool(session)  # worker processes start with the first scan
        metrics_server = _start_metrics_server(metrics, metrics_listen) if metrics_listen else None
        if run_scheduler:
            scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()
            app.state.scans.shutdown()
            app.state.runner.join(5.0)
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            session.close()  # the pool; a later use reopens it

    app = FastAPI(
        title="tiering",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # Swagger UI loads from a CDN: no internet here; the spec is at /api/openapi.json
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.session = session
    app.state.credentials = creds
    app.state.metrics = metrics
    app.state.scheduler = scheduler
    app.state.runner = TaskRunner(session, instance, _error_hook(metrics))
    app.state.instance = instance
    app.state.scans = None  # set when the app starts (it needs the database URL)

    @app.exception_handler(TieringError)
    async def tiering_error(request: Request, exc: TieringError) -> Response:
        headers = {"WWW-Authenticate": CHALLENGE} if (
            isinstance(exc, AuthError) and exc.http_status == 401
        ) else None  # fmt: skip
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:  # 429/503 of admission control: when to come back
            headers = {**(headers or {}), "Retry-After": str(retry_after)}
        if exc.http_status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return fail(exc.http_status, str(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return fail(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        return fail(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, exc: OverflowError) -> Response:
        return fail(400, f"invalid request: a value is out of range ({exc})")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        return fail(500, f"internal error: {type(exc).__name__} (see the server log)")

    app.add_middleware(CountRequests, metrics=metrics)

    from tiering.service.api import router, system_router

    app.include_router(router)
    app.include_router(system_router)

    @app.get("/metrics", include_in_schema=True, tags=["system"], summary="Prometheus metrics")
    def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    index_html = (files(STATIC_PACKAGE[0]) / STATIC_PACKAGE[1] / "index.html").read_bytes()

    @app.get("/archive", include_in_schema=False)
    def dashboard() -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8")

    app.mount("/archive/static", StaticFiles(packages=[STATIC_PACKAGE]), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes,
            servers=[{"url": "/"}],
        )  # fmt: skip
        components = schema.setdefault("components", {})
        components["schemas"]["Envelope"] = Envelope.model_json_schema()
        components["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            "basicAuth": {"type": "http", "scheme": "basic"},
        }
        schema["security"] = [{"bearerAuth": []}, {"basicAuth": []}]
        for path, item in schema["paths"].items():
            for op in item.values():
                if path == "/healthz":
                    op["security"] = []
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    open_paths = ("/metrics",) if session.settings.metrics_open else ()
    app.add_middleware(AuthGate, credentials=creds, open_paths=open_paths)  # credentials before routing
    allowed = parse_allowed_hosts(session.settings.allowed_hosts, bind_host)
    app.add_middleware(CrossSiteGuard, allowed_hosts=allowed)  # outermost: Host and same-origin checks first
    return app


class CountRequests:
    """Counts each answered request by method, route and status, and marks every answer nosniff and no-store.
    Plain ASGI: the decorator form (@app.middleware("http")) ran each request through an extra task and memory
    streams, a cost every /jobs request paid under load."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                for name, value in _ALWAYS_HEADERS:
                    if name not in names:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)
        if status:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope.get("method", ""), path, str(status[0])).inc()


_ALWAYS_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


def _start_metrics_server(metrics: Metrics, listen: tuple[str, int]) -> Any:
    """A second HTTP server with /metrics alone (same registry, no credentials), for Prometheus."""
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    exporter = make_wsgi_app(metrics.registry)

    def only_metrics(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics is served on this port\n"]
        return exporter(environ, start_response)

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    class _Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    host, port = listen
    server = make_server(host, port, only_metrics, server_class=_Threaded, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="tiering-metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics (no credential)", host, server.server_address[1])
    return server


def _error_hook(metrics: Metrics) -> Callable[[str, BaseException], None]:
    def hook(kind: str, exc: BaseException) -> None:
        metrics.error(kind)

    return hook
