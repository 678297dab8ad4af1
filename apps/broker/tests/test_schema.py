"""The agent API against its own OpenAPI schema (drf-spectacular) with schemathesis:
no server errors, documented statuses, responses that match the schema, for a
valid token, no token, and deliberately invalid input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.broker.tests.conftest import Agent
from apps.broker.tests.upstream import RecordingUpstream

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
AGENT_PATHS = r"^/api/v1/(actions|proxy)"
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _load(modes: list[GenerationMode] | None = None) -> schemathesis.schemas.BaseSchema:
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    if modes is not None:
        loaded.config.generation.modes = modes
    return loaded.include(path_regex=AGENT_PATHS)


@pytest.fixture
def in_process(db: None, upstream: RecordingUpstream) -> Iterator[Any]:  # noqa: ARG001 - database access; the upstream must run
    """Call the WSGI app in-process inside the test transaction, as Django's test
    client does: keep request signals from closing the test's DB connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Loaded at import (the schema view touches no database). schemathesis' lazy
# `from_fixture` loader does not work with pytest 9 (it reads a removed private
# attribute), so the schema is loaded eagerly instead.
with_valid_token = _load()
with_bad_input = _load([GenerationMode.NEGATIVE])


@with_valid_token.parametrize()
@SETTINGS
@pytest.mark.usefixtures("in_process")
def test_with_a_valid_token(case: Any, agent: Agent) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {agent.raw}"}, checks=CHECKS)


@with_valid_token.parametrize()
@SETTINGS
@pytest.mark.usefixtures("in_process")
def test_without_a_token(case: Any) -> None:
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 401


@with_bad_input.parametrize()
@SETTINGS
@pytest.mark.usefixtures("in_process")
def test_with_bad_input(case: Any, agent: Agent) -> None:
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {agent.raw}"}, checks=CHECKS
    )
    assert response.status_code < 500
