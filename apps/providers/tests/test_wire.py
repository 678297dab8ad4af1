"""What a prepared call looks like on the wire, seen by a real local HTTP server.

The escaping guarantees of build_request() only matter if the HTTP client keeps
them: a "%2F" must reach the upstream as "%2F", not as a "/" or a normalised path."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from apps.organizations.models import Organization
from apps.providers.registry import build_request, get_action, get_provider


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []  # shared by every handler instance, on purpose

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Any]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    server.shutdown()
    server.server_close()


def send(provider_key: Any, action_name: Any, data: Any, **kwargs: Any) -> Any:
    provider = get_provider(provider_key)
    prepared = build_request(provider, get_action(action_name), data, **kwargs)
    with httpx.Client(timeout=5, follow_redirects=False) as http:
        return http.request(
            prepared.method,
            prepared.url,
            params=prepared.query,
            json=prepared.json_body,
            data=prepared.form_body,
            headers=prepared.headers,
        )


def test_escaped_segments_survive_the_http_client(upstream: Any) -> None:
    base, seen = upstream
    with override_settings(GRANTRY_PROVIDER_URLS={"gitlab": f"{base}/api/v4"}):
        # ('..' parts are refused before anything is sent: see test_calls.)
        send("gitlab", "gitlab.get_project", {"project_id": "grp/..x?y#z"})
        send(
            "gitlab",
            "gitlab.list_issues",
            {"project_id": "grp/sub", "state": "opened", "search": "a&b=c"},
        )
    assert seen[0]["path"] == "/api/v4/projects/grp%2F..x%3Fy%23z"
    assert seen[1]["path"] == "/api/v4/projects/grp%2Fsub/issues?state=opened&search=a%26b%3Dc"


def test_bodies_and_default_headers_arrive_as_prepared(upstream: Any) -> None:
    base, seen = upstream
    overrides = {"notion": base, "stripe": base, "microsoft": base}
    with override_settings(GRANTRY_PROVIDER_URLS=overrides):
        send("notion", "notion.update_page", {"page_id": "p1", "archived": True})
        send("stripe", "stripe.create_customer", {"email": "a@b.co", "name": "A B"})
        send("microsoft", "microsoft.list_messages", {"top": 3})
    notion, stripe, graph = seen
    assert (notion["method"], notion["path"]) == ("PATCH", "/pages/p1")
    assert notion["headers"]["notion-version"] == "2022-06-28"
    assert json.loads(notion["body"]) == {"archived": True}
    assert stripe["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert stripe["body"] == b"email=a%40b.co&name=A+B"
    assert graph["path"] in ("/me/messages?%24top=3", "/me/messages?$top=3")


def test_airtable_update_and_delete_arrive_as_the_airtable_api_expects(upstream: Any) -> None:
    base, seen = upstream
    with override_settings(GRANTRY_PROVIDER_URLS={"airtable": f"{base}/v0"}):
        send(
            "airtable",
            "airtable.update_record",
            {
                "base_id": "appB1",
                "table": "Tasks/Q1",
                "record_id": "recR1",
                "fields": {"Status": "Done"},
            },
        )
        send(
            "airtable",
            "airtable.delete_record",
            {"base_id": "appB1", "table": "Tasks", "record_id": "recR1"},
        )
        send("airtable", "airtable.list_bases", {"offset": "itr1/rec2"})
    update, delete, bases = seen
    assert (update["method"], update["path"]) == ("PATCH", "/v0/appB1/Tasks%2FQ1/recR1")
    assert json.loads(update["body"]) == {"fields": {"Status": "Done"}}
    assert (delete["method"], delete["path"], delete["body"]) == (
        "DELETE",
        "/v0/appB1/Tasks/recR1",
        b"",
    )
    assert bases["path"] == "/v0/meta/bases?offset=itr1%2Frec2"


@pytest.mark.django_db
def test_an_airtable_personal_access_token_is_checked_with_whoami(
    org: Organization, admin: User
) -> None:
    from apps.broker.tests.upstream import RecordingUpstream, Reply
    from apps.connections.services import CredentialRejected, connection_create_api_key

    with (
        RecordingUpstream() as airtable,
        override_settings(GRANTRY_PROVIDER_URLS={"airtable": f"{airtable.url}/v0"}),
    ):
        airtable.reply = Reply(body={"id": "usrAda", "email": "ada@example.com", "scopes": []})
        connection = connection_create_api_key(
            organization=org, provider_key="airtable", name="at", api_key="patA.b", actor=admin
        )
        airtable.reply = Reply(status=401, body={"error": {"type": "AUTHENTICATION_REQUIRED"}})
        with pytest.raises(CredentialRejected):
            connection_create_api_key(
                organization=org,
                provider_key="airtable",
                name="bad",
                api_key="patX",
                actor=admin,
            )
    assert connection.account_label == "ada@example.com"
    first = airtable.requests[0]
    assert (first.method, first.path) == ("GET", "/v0/meta/whoami")
    assert first.headers["Authorization"] == "Bearer patA.b"
    assert not org.connections.filter(name="bad").exists()
