"""Property-based: generated requests for every operation of the OpenAPI document, fired at
a real server, never get a 5xx nor an answer the document does not describe."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cli.conftest import Server

TOKEN = "fuzz-admin-token"
# the suite fires the same examples each run, so that it passes or fails on the code
# alone; CLICKBACK_FUZZ_EXPLORE=1 draws new ones each run (to look for new failures:
# `for i in $(seq 50); do CLICKBACK_FUZZ_EXPLORE=1 pytest tests/cli/test_openapi_fuzz.py; done`)
EXPLORE = os.environ.get("CLICKBACK_FUZZ_EXPLORE") == "1"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    server = Server(f"sqlite:///{tmp / 'fuzz.db'}", tmp, env={"CLICKBACK_ADMIN_TOKEN": TOKEN})
    server.start("--demo")  # some objects to read, update and archive
    base = server.base
    with httpx.Client(base_url=base, headers=HEADERS) as c:
        c.post("/api/v1/offers/1/integration-tests")
        c.post(
            "/api/v1/offers/1/rules",
            json={"commissionid": "x", "payout_type": "cpl", "payout_amount": "1"},
        )
    yield server
    server.stop()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_answers_as_documented(api_server: Server) -> None:
    api = schemathesis.openapi.from_url(f"{api_server.base}/api/v1/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 40

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=not EXPLORE,
        )
        def fire(case: Any) -> None:
            case.call_and_validate(headers=HEADERS, checks=CHECKS)

        fire()
