"""Property-based fuzz of the running API from its own OpenAPI document (schemathesis + hypothesis):
whatever the generated request, the server answers without a 5xx, in the envelope. Bounded to stay fast."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.e2e.test_api import TOKEN, ApiServer, archive_queue, fresh_database, seed, start_api_server

MAX_EXAMPLES = 12
BUDGET_SECONDS = 50


@pytest.fixture(scope="module")
def fuzz_server(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with fresh_database(pg_server_url) as url:
        with start_api_server(url, tmp_path_factory.mktemp("fuzz")) as srv:
            seed(url, "fuzz", 5, payload={"user": {"id": 7}})
            with srv.client() as api:
                archive_queue(api, "fuzz")
            yield srv


def test_fuzz_every_operation_no_server_errors(fuzz_server: ApiServer, tmp_path: Path) -> None:
    import schemathesis

    with fuzz_server.client() as api:
        document = api.get("/api/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.monotonic()
    failures: list[str] = []
    calls = 0
    enveloped = [0]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    per_operation = max(2.0, BUDGET_SECONDS / len(operations))

    for operation in operations:
        op_started = [time.monotonic()]

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            if time.monotonic() - op_started[0] > per_operation:  # noqa: B023 - called before the loop moves on
                return
            if isinstance(case.body, dict) and "wait_seconds" in case.body:
                case.body["wait_seconds"] = min(float(case.body["wait_seconds"] or 0), 2.0)
            response = case.call(base_url=fuzz_server.base, headers=headers, timeout=30)
            calls += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            raw_type = response.headers.get("content-type") or response.headers.get("Content-Type") or ""
            content_type = str(raw_type[0] if isinstance(raw_type, list) else raw_type)
            if case.path != "/metrics" and content_type.startswith("application/json"):
                enveloped[0] += 1
                body = response.json()
                if case.path != "/api/openapi.json":
                    assert set(body) == {"success", "data", "error", "timestamp"}, (case.path, body)

        check()

    assert not failures, "\n".join(failures[:20])
    assert calls >= len(operations) * 2
    assert enveloped[0] >= calls // 2, (enveloped, calls)
    assert time.monotonic() - started < 90
    # the server is still healthy afterwards
    assert httpx.get(fuzz_server.base + "/healthz", timeout=5).status_code == 200
