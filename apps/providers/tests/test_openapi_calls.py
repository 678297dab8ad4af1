"""Imported operations reach the upstream as the document describes them: a form body
form-encoded (nested values in brackets), a HEAD as a HEAD, a `oneOf` body as one of its
shapes, through the broker with a Twilio-style "SID:token" key in HTTP Basic."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.providers.import_services import (
    openapi_import_run,
    openapi_import_save,
    openapi_import_start,
)
from apps.providers.models import CustomProvider, ImportStatus
from apps.providers.services import custom_provider_create

pytestmark = pytest.mark.django_db

SID, TOKEN = "AC0123456789abcdef", "tok_secret_value"
DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Messages", "version": "1"},
    "paths": {
        "/Accounts/{AccountSid}/Messages.json": {
            "post": {
                "operationId": "CreateMessage",
                "parameters": [
                    {
                        "name": "AccountSid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/CreateMessageRequest"}
                        }
                    },
                },
                "responses": {"201": {"description": "created"}},
            },
            "head": {
                "operationId": "MessagesExist",
                "parameters": [
                    {
                        "name": "AccountSid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/shapes": {
            "post": {
                "operationId": "CreateShape",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Circle"},
                                    {"$ref": "#/components/schemas/Square"},
                                ]
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
    },
    "components": {
        "schemas": {
            "CreateMessageRequest": {
                "type": "object",
                "required": ["To", "Body"],
                "properties": {
                    "To": {"type": "string", "description": "Recipient."},
                    "Body": {"type": "string", "description": "Text."},
                    "StatusCallbackEvent": {"type": "array", "items": {"type": "string"}},
                    "Metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                # Box's documents carry ids inside examples: data, not a schema id.
                "example": {"To": "+15550001", "$id": "https://example.com/not-a-schema"},
            },
            "Circle": {
                "type": "object",
                "required": ["kind", "radius"],
                "properties": {"kind": {"enum": ["circle"]}, "radius": {"type": "number"}},
            },
            "Square": {
                "type": "object",
                "required": ["kind", "side"],
                "properties": {"kind": {"enum": ["square"]}, "side": {"type": "number"}},
            },
        }
    },
}


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        yield server


@pytest.fixture
def twilio_like(org: Organization, admin: User, upstream: RecordingUpstream) -> CustomProvider:
    provider = custom_provider_create(
        organization=org,
        actor=admin,
        slug="msg",
        display_name="Messages",
        auth_type="api_key",
        api_base_url=upstream.url,
        placement="basic",
    )
    job = openapi_import_start(
        provider=provider, actor=admin, content=json.dumps(DOCUMENT).encode(), file_name="m.json"
    )
    openapi_import_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.READY, job.error
    assert {d["key"]: d["problem"] for d in job.drafts} == {
        "POST /Accounts/{AccountSid}/Messages.json": "",
        "HEAD /Accounts/{AccountSid}/Messages.json": "",
        "POST /shapes": "",
    }
    openapi_import_save(job=job, actor=admin, actions=job.drafts)
    return provider


def _call(client: Client, agent: Any, action: str, input: dict[str, Any]) -> Any:
    return client.post(
        f"/api/v1/actions/{action}/execute",
        json.dumps({"input": input}),
        content_type="application/json",
        **agent.headers,
    )


def test_form_head_and_one_of_operations_reach_the_upstream(
    client: Client, org: Organization, twilio_like: CustomProvider, upstream: RecordingUpstream
) -> None:
    connection = Connection.objects.create(
        organization=org,
        provider_key=twilio_like.key,
        name="msg",
        auth_type="api_key",
        api_key=f"{SID}:{TOKEN}",
    )
    rule = {"kind": "action", "provider_key": twilio_like.key, "action_pattern": "custom-msg.*"}
    agent = make_agent(org, rules=[rule], connection=connection)
    upstream.reply = Reply(status=201, body={"sid": "SM1"})

    sent = _call(
        client,
        agent,
        "custom-msg.create_message",
        {
            "AccountSid": SID,
            "To": "+15550001",
            "Body": "Hello & bye",
            "StatusCallbackEvent": ["sent", "delivered"],
            "Metadata": {"order": "6735"},
        },
    )
    assert sent.status_code == 200, sent.content
    assert sent.json()["status"] == 201
    head = _call(client, agent, "custom-msg.messages_exist", {"AccountSid": SID})
    assert head.status_code == 200, head.content
    shape = _call(client, agent, "custom-msg.create_shape", {"kind": "square", "side": 2})
    assert shape.status_code == 200, shape.content
    refused = _call(client, agent, "custom-msg.create_shape", {"kind": "square", "sides": 2})
    assert refused.status_code == 400

    form, head_request, shape_request = upstream.requests
    assert (form.method, form.path) == ("POST", f"/Accounts/{SID}/Messages.json")
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(form.body.decode()) == [
        ("To", "+15550001"),
        ("Body", "Hello & bye"),
        ("StatusCallbackEvent", "sent"),
        ("StatusCallbackEvent", "delivered"),
        ("Metadata[order]", "6735"),
    ]
    # Twilio's key is "SID:token": Basic carries that pair, not "SID:token:".
    credentials = base64.b64decode(form.headers["Authorization"].removeprefix("Basic "))
    assert credentials == f"{SID}:{TOKEN}".encode()
    assert (head_request.method, head_request.body) == ("HEAD", b"")
    assert json.loads(shape_request.body) == {"kind": "square", "side": 2}
