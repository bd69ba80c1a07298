"""A minimal Iceberg REST catalog server for tests, on 127.0.0.1 (random port), needing nothing but pyiceberg.

The third-party REST catalog the tests run is SeaweedFS's own (test_rest_catalog_of_seaweedfs); this one lets the
REST path run on the local store too. It serves the routes of the Iceberg REST spec that pyiceberg's RestCatalog
calls (config, namespaces, load/create/commit table) over pyiceberg's own SQL catalog (SQLite): requirements and
updates are parsed with pyiceberg's models and applied by `commit_table`, so a commit whose requirements fail is
answered 409 as the spec says. Every request is counted by operation.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pyiceberg.catalog.rest import CreateTableRequest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import CommitTableRequest

_TABLE = re.compile(r"^/v1/namespaces/([^/]+)/tables/([^/]+)$")
_TABLES = re.compile(r"^/v1/namespaces/([^/]+)/tables$")
_NAMESPACE = re.compile(r"^/v1/namespaces/([^/]+)$")


class RestCatalogServer:
    def __init__(self, root: Path) -> None:
        self.catalog = SqlCatalog("rest-backend", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=root.as_uri())
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()  # one commit at a time: SQLite, and the spec's atomic commit
        self.url = ""

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        path = path.split("?", 1)[0]
        self.requests[_route_name(method, path)] += 1
        try:
            with self.lock:
                return self._route(method, path, body)
        except (NoSuchTableError, NoSuchNamespaceError) as exc:
            return 404, _error(exc, 404)
        except (NamespaceAlreadyExistsError, TableAlreadyExistsError, CommitFailedException) as exc:
            return 409, _error(exc, 409)

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        if method == "GET" and path == "/v1/config":
            return 200, {"defaults": {}, "overrides": {}}
        if method == "POST" and path == "/v1/namespaces":
            doc = json.loads(body)
            self.catalog.create_namespace(tuple(doc["namespace"]), doc.get("properties", {}))
            return 200, {"namespace": doc["namespace"], "properties": doc.get("properties", {})}
        if (m := _NAMESPACE.match(path)) and method == "GET":
            props = self.catalog.load_namespace_properties(_ns(m.group(1)))
            return 200, {"namespace": list(_ns(m.group(1))), "properties": props}
        if (m := _TABLES.match(path)) and method == "POST":
            doc = {"location": None, "partition-spec": None, "write-order": None, **json.loads(body)}  # optional
            req = CreateTableRequest.model_validate(doc)
            table = self.catalog.create_table(
                (*_ns(m.group(1)), req.name), schema=req.table_schema, location=req.location,
                partition_spec=req.partition_spec, properties=req.properties,
            )  # fmt: skip
            return 200, _loaded(table.metadata_location, table.metadata)
        if (m := _TABLE.match(path)) and method == "GET":
            table = self.catalog.load_table((*_ns(m.group(1)), m.group(2)))
            return 200, _loaded(table.metadata_location, table.metadata)
        if (m := _TABLE.match(path)) and method == "POST":
            commit = CommitTableRequest.model_validate_json(body)
            table = self.catalog.load_table((*_ns(m.group(1)), m.group(2)))
            done = self.catalog.commit_table(table, commit.requirements, commit.updates)
            return 200, _loaded(done.metadata_location, done.metadata)
        return 404, {"error": {"message": f"no route {method} {path}", "type": "NotFound", "code": 404}}


def _route_name(method: str, path: str) -> str:
    """What the request is, by the spec's operation names (the counter's keys)."""
    if path == "/v1/config":
        return "getConfig"
    if path == "/v1/namespaces":
        return {"POST": "createNamespace", "GET": "listNamespaces"}.get(method, path)
    if _NAMESPACE.match(path):
        return {"GET": "loadNamespaceMetadata", "DELETE": "dropNamespace"}.get(method, path)
    if _TABLES.match(path):
        return {"POST": "createTable", "GET": "listTables"}.get(method, path)
    if _TABLE.match(path):
        names = {"GET": "loadTable", "POST": "updateTable", "DELETE": "dropTable", "HEAD": "tableExists"}
        return names.get(method, path)
    return f"{method} {path}"


def _ns(encoded: str) -> tuple[str, ...]:
    return tuple(encoded.split("\x1f"))


def _loaded(location: str, metadata: Any) -> dict[str, Any]:
    return {"metadata-location": location, "metadata": json.loads(metadata.model_dump_json()), "config": {}}


def _error(exc: Exception, code: int) -> dict[str, Any]:
    return {"error": {"message": str(exc), "type": type(exc).__name__, "code": code}}


@contextmanager
def rest_catalog_server(root: Path) -> Iterator[RestCatalogServer]:
    server = RestCatalogServer(root)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, doc = server.handle(self.command, self.path, body)
            payload = json.dumps(doc).encode() if doc is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_HEAD = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
