"""OpenAPI import: real-shaped public documents of three versions (Swagger 2.0 petstore,
the OpenAPI 3.0 petstore-expanded example with a nullable field, and a 3.1 Train Travel
API with $refs to parameters, readOnly and oneOf), refused documents and operations,
the bounded child process, and the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.organizations.models import Organization
from apps.providers.models import CustomProvider
from apps.providers.openapi.document import (
    OpenAPIImportError,
    fetch_document,
    read_drafts,
    read_index,
)
from apps.providers.openapi.drafts import Draft, drafts_for
from apps.providers.openapi.reading import DocumentError, Index, index, load
from apps.providers.registry import build_request, get_action, get_provider
from apps.providers.services import ImportFailed, custom_actions_import

DATA = Path(__file__).parent / "openapi"


def doc(name: str) -> bytes:
    return (DATA / name).read_bytes()


class Parsed:
    """A document read as the child process reads it (in this process, for speed)."""

    def __init__(self, text: str | bytes) -> None:
        document = load(text.decode() if isinstance(text, bytes) else text)
        self.index: Index = index(document)
        self.title, self.version = self.index.title, self.index.version
        self.server_url = self.index.server_url
        keys = [op.key for op in self.index.operations]
        self.drafts: list[Draft] = drafts_for(document, keys)


def parse_document(text: str | bytes) -> Parsed:
    try:
        return Parsed(text)
    except DocumentError as exc:
        raise OpenAPIImportError(str(exc)) from None


def drafts_of(name: str) -> dict:
    return {d.key: d for d in parse_document(doc(name)).drafts}


def test_swagger_2_petstore() -> None:
    parsed = parse_document(doc("petstore-swagger-2.0.json"))
    assert (parsed.title, parsed.version) == ("Swagger Petstore", "Swagger 2.0")
    assert parsed.server_url == "https://petstore.swagger.io/v2"
    drafts = {d.key: d for d in parsed.drafts}
    add = drafts["POST /pet"]
    assert (add.name, add.action_class, add.problem) == ("add_pet", "write", "")
    assert add.scopes == ["read:pets", "write:pets"]
    schema = add.input_schema
    assert schema["required"] == ["name", "photoUrls"]
    assert schema["additionalProperties"] is False
    # The $ref to Category was inlined, its "xml" annotations dropped.
    assert schema["properties"]["category"]["properties"]["name"] == {"type": "string"}
    assert "xml" not in json.dumps(schema)
    find = drafts["GET /pet/findByStatus"]
    assert find.query_params == ["status"]
    assert find.action_class == "read"
    assert find.input_schema["properties"]["status"]["items"]["enum"] == [
        "available",
        "pending",
        "sold",
    ]
    order = drafts["GET /store/order/{orderId}"]
    assert order.input_schema["properties"]["orderId"]["maximum"] == 10
    assert order.input_schema["required"] == ["orderId"]
    # A form body (formData parameters) is sent form-encoded; a file upload is refused.
    form = drafts["POST /pet/{petId}"]
    assert (form.problem, form.body_encoding) == ("", "form")
    assert list(form.input_schema["properties"]) == ["petId", "name", "status"]
    assert "It takes multipart/form-data" in drafts["POST /pet/{petId}/uploadImage"].problem
    # The optional api_key header is left out (Grantry sends the credential).
    assert list(drafts["DELETE /pet/{petId}"].input_schema["properties"]) == ["petId"]


def test_openapi_3_0_petstore_expanded() -> None:
    drafts = drafts_of("petstore-expanded-3.0.yaml")
    assert set(drafts) == {"GET /pets", "POST /pets", "GET /pets/{id}", "DELETE /pets/{id}"}
    assert drafts["GET /pets/{id}"].name == "find_pet_by_id"  # operationId "find pet by id"
    add = drafts["POST /pets"]
    assert add.input_schema["required"] == ["name"]
    # OpenAPI 3.0 "nullable" becomes a JSON Schema type list.
    assert add.input_schema["properties"]["tag"]["type"] == ["string", "null"]
    assert drafts["GET /pets"].query_params == ["tags", "limit"]


def test_openapi_3_1_train_travel() -> None:
    parsed = parse_document(doc("train-travel-3.1.yaml"))
    assert parsed.version == "OpenAPI 3.1.0"
    assert parsed.server_url == "https://eu.api.example.com/v1"  # server variable default
    drafts = {d.key: d for d in parsed.drafts}
    assert "POST newBooking" not in drafts  # webhooks are not operations to call
    stations = drafts["GET /stations"]
    assert stations.name == "get_stations"
    assert stations.scopes == ["read"]
    # Parameters behind $ref are resolved and keep their limits.
    assert stations.input_schema["properties"]["limit"]["maximum"] == 100
    create = drafts["POST /bookings"]
    assert create.scopes == ["write"]
    assert create.query_params == ["dry_run"]
    props = create.input_schema["properties"]
    assert "id" not in props  # readOnly in the Booking schema
    assert props["notes"]["type"] == ["string", "null"]
    assert create.input_schema["required"] == ["trip_id", "passenger_name"]
    # A path parameter declared on the path item applies to its operations.
    assert drafts["DELETE /bookings/{bookingId}"].input_schema["required"] == ["bookingId"]
    assert "Idempotency-Key" in drafts["POST /bookings/{bookingId}/payment"].problem


def test_an_imported_action_builds_the_request_the_document_describes(
    org: Organization, admin: User, crm: CustomProvider
) -> None:
    drafts = drafts_of("train-travel-3.1.yaml")
    fields = {
        k: v for k, v in drafts["POST /bookings"].as_dict().items() if k not in ("key", "problem")
    }
    custom_actions_import(
        provider=crm, actor=admin, actions=[fields], source={"file": "train.yaml"}
    )
    provider = get_provider("custom-crm", organization=org)
    action = get_action("custom-crm.create_booking", organization=org)
    prepared = build_request(
        provider,
        action,
        {
            "dry_run": True,
            "trip_id": "4f4e4e1c-c824-4d63-b37a-d8d698862f1d",
            "passenger_name": "Ada",
        },
    )
    assert prepared.method == "POST"
    assert prepared.url == "https://crm.example.com/api/bookings"
    assert prepared.query == {"dry_run": "true"}
    assert prepared.json_body == {
        "trip_id": "4f4e4e1c-c824-4d63-b37a-d8d698862f1d",
        "passenger_name": "Ada",
    }


@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schemas/pet.json",
        "./components.yaml#/Pet",
        "file:///etc/passwd",
        "other.json",
    ],
)
def test_references_outside_the_document_refuse_their_operation(ref: str) -> None:
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "x", "version": "1"},
        "paths": {
            "/pets": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": ref}}}},
                    "responses": {"200": {"description": "ok"}},
                },
                "get": {"responses": {"200": {"description": "ok"}}},
            }
        },
    }
    drafts = {d.key: d for d in parse_document(json.dumps(spec)).drafts}
    assert "outside the document" in drafts["POST /pets"].problem
    assert drafts["GET /pets"].problem == ""


def test_an_external_reference_is_never_fetched() -> None:
    with RecordingUpstream() as server:
        spec = (
            "openapi: 3.1.0\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n"
            f"      parameters: [{{$ref: '{server.url}/param.yaml'}}]\n"
            "      responses: {'200': {description: ok}}\n"
        )
        drafts = read_drafts(spec.encode(), ["GET /a"])
    assert "outside the document" in drafts[0]["problem"]
    assert server.requests == []


def test_yaml_aliases_and_size_are_capped(settings: Settings) -> None:
    bomb = "openapi: 3.0.0\na: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(OpenAPIImportError, match=r"aliases \(\*name\) are not accepted \(line 3\)"):
        read_index(bomb.encode())
    settings.GRANTRY_OPENAPI_MAX_BYTES = 1000
    with pytest.raises(OpenAPIImportError, match="at most 1 kB"):
        read_index(doc("petstore-expanded-3.0.yaml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "is a JSON or YAML object"),
        ('{"openapi": ', "not valid JSON"),
        ("title: not an api\n", "not an OpenAPI document"),
        (
            '{"openapi": "3.0.0", "paths": {}}',
            "not valid OpenAPI: #: 'info' is a required property",
        ),
        (
            '{"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": {"/a": 5}}',
            r"not valid OpenAPI: #/paths/~1a: 5 is not of type 'object'",
        ),
        ('{"openapi": "4.0.0", "info": {}, "paths": {}}', "OpenAPI 4.0.0 is not supported"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_broken_documents_get_a_clear_error_with_where(text: Any, message: str) -> None:
    raw = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(OpenAPIImportError, match=message):
        read_index(raw)


def test_an_invalid_operation_is_refused_with_its_pointer_and_the_rest_kept() -> None:
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "x", "version": "1"},
        "paths": {
            "/a": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/b": {"get": {"parameters": [{"name": "q", "in": "nowhere"}], "responses": {}}},
        },
    }
    operations = {op["key"]: op for op in read_index(json.dumps(spec).encode())["operations"]}
    assert operations["GET /a"]["problem"] == ""
    assert operations["GET /b"]["problem"].startswith(
        "It is not valid OpenAPI at #/paths/~1b/get/parameters/0"
    )


def test_fetching_goes_through_egress_and_refuses_redirects() -> None:
    with RecordingUpstream() as server:
        server.reply = Reply(body=json.loads(doc("petstore-swagger-2.0.json")))
        parsed = parse_document(fetch_document(f"{server.url}/v2/swagger.json"))
        server.reply = Reply(status=302, body=b"", headers={"Location": "http://10.0.0.1/"})
        with pytest.raises(OpenAPIImportError, match="redirect"):
            fetch_document(f"{server.url}/moved")
    assert parsed.title == "Swagger Petstore"
    assert [r.path for r in server.requests] == ["/v2/swagger.json", "/moved"]
    with pytest.raises(OpenAPIImportError, match=r"cannot be fetched|could not be fetched"):
        fetch_document("http://169.254.169.254/latest/meta-data/")


def _fields(draft: Any) -> dict:
    return {k: v for k, v in draft.as_dict().items() if k not in ("key", "problem")}


@pytest.mark.usefixtures("org")
def test_import_is_all_or_nothing_and_audited(admin: User, crm: CustomProvider) -> None:
    drafts = drafts_of("petstore-expanded-3.0.yaml")
    good = _fields(drafts["GET /pets"])
    clash = {**_fields(drafts["POST /pets"]), "name": "get_item"}  # taken by the fixture
    with pytest.raises(ImportFailed) as info:
        custom_actions_import(provider=crm, actor=admin, actions=[good, clash], source={})
    assert info.value.index == 1
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]
    assert not AuditEvent.objects.filter(action="provider.custom_actions_imported").exists()

    created = custom_actions_import(
        provider=crm,
        actor=admin,
        actions=[good, _fields(drafts["POST /pets"])],
        source={"file": "petstore.yaml", "sha256": "abc"},
    )
    assert [a.name for a in created] == ["find_pets", "add_pet"]
    event = AuditEvent.objects.get(action="provider.custom_actions_imported")
    assert event.metadata["actions"] == ["custom-crm.find_pets", "custom-crm.add_pet"]
    assert event.metadata["source"] == {"file": "petstore.yaml", "sha256": "abc"}
    assert AuditEvent.objects.filter(action="provider.custom_action_created").count() == 3


def test_query_params_must_name_non_path_properties(admin: User, crm: CustomProvider) -> None:
    drafts = drafts_of("train-travel-3.1.yaml")
    bad = {**_fields(drafts["POST /bookings"]), "query_params": ["nope"]}
    with pytest.raises(ImportFailed) as info:
        custom_actions_import(provider=crm, actor=admin, actions=[bad], source={})
    assert "query_params" in info.value.error.message_dict


def test_property_names_are_kept_even_when_they_look_like_keywords() -> None:
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": {
            "/notes": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["example"],
                                    "properties": {
                                        "example": {"type": "string", "example": "dropped"},
                                        "x-tag": {"type": "string"},
                                    },
                                    "example": {"example": "dropped too"},
                                }
                            }
                        },
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    [draft] = parse_document(json.dumps(spec)).drafts
    assert draft.problem == ""
    assert draft.input_schema["properties"] == {
        "example": {"type": "string", "description": "The 'example' field of the body."},
        "x-tag": {"type": "string", "description": "The 'x-tag' field of the body."},
    }
    assert draft.input_schema["required"] == ["example"]


def test_an_optional_input_that_cannot_be_named_is_left_out_a_required_one_refuses() -> None:
    def spec(required: bool) -> str:
        parameter = {"name": "DateSent<", "in": "query", "required": required, "schema": {}}
        return json.dumps(
            {
                "openapi": "3.0.3",
                "info": {"title": "x", "version": "1"},
                "paths": {
                    "/messages": {
                        "get": {
                            "parameters": [
                                parameter,
                                {"name": "To", "in": "query", "schema": {"type": "string"}},
                            ],
                            "responses": {"200": {"description": "ok"}},
                        }
                    }
                },
            }
        )

    [optional] = parse_document(spec(False)).drafts
    assert (optional.problem, optional.query_params) == ("", ["To"])
    [required] = parse_document(spec(True)).drafts
    assert required.problem == "The query parameter 'DateSent<' is not a usable input name."
