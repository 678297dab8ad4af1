"""Issue 13, #12 (small things) and #1 (the demo role names its connection)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.connections.models import Connection
from apps.dashboard.demo_worker import DEMO_ROLE, seed_demo_worker
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.selectors import allowed_actions
from apps.workers.services import worker_create

pytestmark = pytest.mark.django_db


def test_store_raw_broker_input_is_on_the_settings_page_and_audited(
    client: Client, org: Organization, owner: User
) -> None:
    client.force_login(owner)
    url = f"/o/{org.slug}/settings/"
    assert "Store raw broker input" in client.get(url).content.decode()
    response = client.post(url, {"name": org.name, "store_broker_input": "on"})
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.store_broker_input is True
    event = AuditEvent.objects.get(organization=org, action="org.updated")
    assert event.metadata["changes"] == {"store_broker_input": {"from": False, "to": True}}
    client.post(url, {"name": org.name})  # unticked: off again
    org.refresh_from_db()
    assert org.store_broker_input is False


def test_settings_read_only_for_members_show_the_setting(
    client: Client, org: Organization, member: User
) -> None:
    client.force_login(member)
    html = client.get(f"/o/{org.slug}/settings/").content.decode()
    assert "Store raw broker input" in html
    assert "Off: only a digest" in html


def test_mint_error_is_next_to_the_field_and_keeps_the_value(
    client: Client, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    worker = worker_create(organization=org, name="agent", default_role=role, actor=admin)
    client.force_login(admin)
    response = client.post(
        f"/o/{org.slug}/workers/{worker.pk}/mint/",
        {"name": "ci", "role": role.pk, "expires": "custom", "expires_in_days": "999"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    field = re.search(r'<input[^>]*name="expires_in_days"[^>]*>', html).group(0)
    assert 'value="999"' in field
    after_field = html.split(field, 1)[1][:400]
    assert "errorlist" in after_field
    assert "366" in after_field
    assert 'class="messages"' not in html  # no top banner


@pytest.mark.usefixtures("db")
def test_email_subjects_use_the_product_name(client: Client) -> None:
    client.post(
        "/accounts/signup/",
        {
            "email": "new@example.test",
            "password1": "a-long-and-unusual-passphrase-9",
            "password2": "a-long-and-unusual-passphrase-9",
        },
    )
    assert mail.outbox, "no verification email"
    assert all(m.subject.startswith("[Grantry] ") for m in mail.outbox), [
        m.subject for m in mail.outbox
    ]
    assert not any("127.0.0.1" in m.subject or "testserver" in m.subject for m in mail.outbox)


def test_provider_picker_searches(client: Client, org: Organization, admin: User) -> None:
    client.force_login(admin)
    url = f"/o/{org.slug}/connections/connect/"
    html = client.get(url, {"q": "sandb"}).content.decode()
    assert 'Connect<span class="visually-hidden"> Sandbox' in html
    assert "GitHub" not in html
    assert "No provider matches" in client.get(url, {"q": "zzzz"}).content.decode()


def test_test_a_call_offers_connected_providers_first(
    client: Client, org: Organization, member: User
) -> None:
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    role = Role.objects.create(organization=org, name="reader")
    client.force_login(member)
    html = client.get(f"/o/{org.slug}/roles/{role.pk}/").content.decode()
    select = html.split('name="action"', 1)[1].split("</select>", 1)[0]
    groups = re.findall(r'<optgroup label="([^"]+)">', select)
    assert groups == ["Connected providers", "Not connected"]
    first_group = select.split("</optgroup>", 1)[0]
    assert "sandbox.list_tasks" in first_group
    assert "github." not in first_group


def test_actors_show_in_one_format(
    client: Client, org: Organization, reviewer: User, owner: User
) -> None:
    owner.username = "owner-handle"  # an account whose username is not its email
    owner.save()
    audit_record(
        action="role.created",
        organization=org,
        actor_type="user",
        actor_id=owner.pk,
        actor_label="owner-handle",
    )
    client.force_login(reviewer)
    for url in (f"/o/{org.slug}/audit/", f"/o/{org.slug}/"):
        html = client.get(url).content.decode()
        assert "User owner@acme.test" in html, url
        assert "owner-handle" not in html, url


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_focus_ring_contrast_is_at_least_3_to_1() -> None:
    css = (Path(settings.BASE_DIR) / "static/css/grantry.css").read_text()
    focus = re.search(r"--focus:([^;]+);", css).group(1)
    ring = re.findall(r"#[0-9a-fA-F]{6}", focus)[-1]  # the outer ring's colour
    ratio = (1.05) / (_luminance(ring) + 0.05)
    assert ratio >= 3, (ring, ratio)


def test_demo_role_is_named_for_what_it_does_and_names_its_connection(
    org: Organization, owner: User
) -> None:
    demo = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    seed_demo_worker(organization=org, user=owner)
    # Step 1 of the README tour connects a second Sandbox account afterwards.
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-mine", auth_type="oauth2"
    )
    role = Role.objects.get(organization=org, name=DEMO_ROLE)
    assert DEMO_ROLE == "sandbox-read-and-create-tasks"
    assert {r.connection_id for r in role.rules.all()} == {demo.pk}
    allowed = {
        action.name: {c.name for c in conns} for action, conns in allowed_actions(role.pk, org)
    }
    assert allowed["sandbox.create_task"] == {"sandbox-demo"}
    assert allowed["sandbox.list_tasks"] == {"sandbox-demo"}
    assert "sandbox.delete_task" not in allowed


def test_docs_use_the_demo_connection_and_role_names() -> None:
    base = Path(settings.BASE_DIR)
    docs = (base / "docs/agent-api.md").read_text()
    assert '"connection": "sandbox"' not in docs
    assert '"name": "sandbox"}' not in docs
    assert "sandbox-demo" in docs
    readme = (base / "README.md").read_text()
    assert "sandbox-reader" not in readme
