"""Schemathesis against the generated OpenAPI document, in process, on real PostgreSQL and Redis:
for every operation, generated requests (valid and invalid) never get a 5xx, and every response
matches the schema the document declares for its status."""

from __future__ import annotations

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from mountsync.producers.http.app import make_app
from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.helpers import bearer


@pytest.fixture
def api_schema(settings: Settings, catalog: psycopg.Connection, add_mount):  # type: ignore[no-untyped-def]
    add_mount("m", "s3://bkt/", dest_folder="dest")
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, [ObjectChange(Provider.S3, "bkt", f"seq/{i}.png", Kind.CREATED, 1, Source.S3_SQS,
                                          size=1, etag="e", sequencer="1") for i in range(5)])  # fmt: skip
    app = make_app(settings)
    yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    app.state.serve.stop()


@pytest.fixture
def auth(catalog: psycopg.Connection) -> dict[str, str]:
    return bearer(catalog, "write")


def test_no_5xx_and_every_response_matches_the_document(api_schema, auth) -> None:  # type: ignore[no-untyped-def]
    # schemathesis' pytest plugin (from_fixture) does not run under this pytest: drive hypothesis
    # over each operation's strategy directly.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        # Derandomized: the same examples every run, so CI cannot fail by luck. Random runs with
        # more examples are how a new class of input is found (a NUL in a name, 300 per operation).
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case) -> None:  # type: ignore[no-untyped-def]
            if isinstance(case.query, dict) and "wait" in case.query:
                case.query["wait"] = 0  # long polls with nothing to wait for would only slow the run
            case.call_and_validate(headers=auth, checks=[not_a_server_error, response_schema_conformance])

        check()
