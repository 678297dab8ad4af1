"""`connection: on_behalf_of`: the pure decision, validation, the rule's words, the
YAML round trip and the simulation's replay of calls made for a person."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from apps.audit.services import audit_record
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.evaluate import Call, describe_rule, evaluate, rule_spec_from_values
from apps.policies.selectors import editable_rules_yaml, role_document
from apps.policies.services import role_create
from apps.policies.simulation import role_simulate, rules_from_document
from apps.policies.validation import clean_rules
from tests.factories import MembershipFactory, UserFactory

OBO = rule_spec_from_values(
    rule_id=1,
    kind="action",
    provider_key="github",
    action_pattern="github.*",
    on_behalf_of=True,
)
ANY = rule_spec_from_values(
    rule_id=2, kind="action", provider_key="github", action_pattern="github.*"
)
NAMED = rule_spec_from_values(
    rule_id=3,
    kind="action",
    provider_key="github",
    action_pattern="github.*",
    connection_id=42,
    connection_name="alice-gh",
)
PROXY = rule_spec_from_values(
    rule_id=4,
    kind="proxy",
    provider_key="github",
    connection_id=42,
    methods=["GET"],
    path_glob="/**",
)


def action(connection_id: int, *, personal: bool) -> Call:
    return Call.for_action(
        action_name="github.create_issue",
        action_class="write",
        connection_id=connection_id,
        connection_name="c",
        input={},
        on_behalf_of=personal,
    )


def test_on_behalf_of_matches_only_the_acting_members_personal_connection() -> None:
    assert evaluate([OBO], action(42, personal=True)).allowed
    assert not evaluate([OBO], action(7, personal=False)).allowed


def test_no_other_rule_ever_matches_a_personal_connection() -> None:
    # Any connection of the provider, or this very connection by id: never a personal one.
    assert not evaluate([ANY], action(42, personal=True)).allowed
    assert not evaluate([NAMED], action(42, personal=True)).allowed
    assert evaluate([NAMED], action(42, personal=False)).allowed
    proxy = Call.for_proxy(
        provider_key="github",
        method="GET",
        path="/user",
        connection_id=42,
        connection_name="alice-gh",
        on_behalf_of=True,
    )
    assert not evaluate([PROXY], proxy).allowed


def test_the_rule_says_what_it_allows_in_words() -> None:
    assert "personal github connection of the member the worker acts for" in describe_rule(OBO)
    denied = evaluate([OBO], action(7, personal=False))
    assert "on_behalf_of" in denied.reason


@pytest.fixture
def alice(org: Organization) -> User:
    return MembershipFactory(
        organization=org, role="member", user=UserFactory(email="alice@acme.test")
    ).user


@pytest.mark.django_db
def test_validation_takes_the_word_and_refuses_a_personal_connection_by_id_or_name(
    org: Organization, alice: User
) -> None:
    mine = Connection.objects.create(
        organization=org, provider_key="sandbox", name="alice-sbx", auth_type="api_key", owner=alice
    )
    [cleaned] = clean_rules(
        organization=org,
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.*",
                "connection": "on_behalf_of",
            }
        ],
    )
    assert cleaned["on_behalf_of"] is True
    assert cleaned["connection"] is None
    for ref in (mine.pk, str(mine.pk), mine.name):
        with pytest.raises(ValidationError) as refused:
            clean_rules(
                organization=org,
                rules=[
                    {
                        "kind": "action",
                        "provider_key": "sandbox",
                        "action_pattern": "sandbox.*",
                        "connection": ref,
                    }
                ],
            )
        assert refused.value.message_dict == {
            "rules.0.connection": ["No such connection in this organization."]
        }
    for kind, extra in (
        ("proxy", {"methods": ["GET"], "path_glob": "/**"}),
        ("mcp", {"action_pattern": "*"}),
    ):
        with pytest.raises(ValidationError) as refused:
            clean_rules(
                organization=org,
                rules=[
                    {"kind": kind, "provider_key": "sandbox", "connection": "on_behalf_of", **extra}
                ],
            )
        assert "rules.0.connection" in refused.value.message_dict


@pytest.mark.django_db
def test_the_yaml_and_the_api_say_on_behalf_of_and_read_it_back(org: Organization) -> None:
    rules = [
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.create_project",
            "connection": "on_behalf_of",
        }
    ]
    role = role_create(organization=org, name="coder", rules=rules)
    [doc] = role_document(role)["rules"]
    assert doc["connection"] == "on_behalf_of"
    text = editable_rules_yaml(role)
    assert "connection: on_behalf_of" in text
    assert "personal sandbox connection" in text
    [again] = clean_rules(organization=org, rules=rules_from_document(text))
    assert again["on_behalf_of"] is True
    parsed = yaml.safe_load(text)
    assert parsed[0]["connection"] == "on_behalf_of"


@pytest.mark.django_db
def test_the_simulation_replays_a_call_made_for_a_person_as_such(
    org: Organization, alice: User
) -> None:
    mine = Connection.objects.create(
        organization=org, provider_key="sandbox", name="alice-sbx", auth_type="api_key", owner=alice
    )
    obo = {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_projects",
        "connection": "on_behalf_of",
    }
    role = role_create(organization=org, name="coder", rules=[obo])
    rule_id = role.rules.get().pk

    def recorded(**meta: Any) -> None:
        audit_record(
            action="broker.execute",
            organization=org,
            actor_type="worker",
            actor_id=7,
            worker_id=7,
            target_type="connection",
            target_id=mine.pk,
            target_label=mine.name,
            connection_id=mine.pk,
            provider="sandbox",
            decision="allowed",
            outcome="success",
            on_behalf_of_id=alice.pk,
            on_behalf_of_label=alice.email,
            metadata={
                "role_id": role.pk,
                "action": "sandbox.list_projects",
                "input_sha256": "x",
                "rule_id": rule_id,
                **meta,
            },
        )

    recorded(personal=True)
    same = role_simulate(role=role, rules=[obo])
    assert same.unchanged == 1
    # The same rule for "any sandbox connection" would not have allowed it.
    plain = {k: v for k, v in obo.items() if k != "connection"}
    flipped = role_simulate(role=role, rules=[plain])
    assert flipped.unchanged == 0
    assert len(flipped.examples["allowed_to_denied"]) == 1


@pytest.mark.django_db
def test_the_rule_form_offers_on_behalf_of_and_never_a_personal_connection(
    org: Organization, admin: User, alice: User
) -> None:
    from django.test import Client
    from django.urls import reverse

    Connection.objects.create(
        organization=org, provider_key="sandbox", name="alice-sbx", auth_type="api_key", owner=alice
    )
    role = role_create(organization=org, name="coder", rules=[])
    client = Client()
    client.force_login(admin)
    add = reverse("policies:rule_add", kwargs={"org_slug": "acme", "role_id": role.pk})
    form = client.get(add + "?provider=sandbox").content.decode()
    assert 'value="on_behalf_of"' in form
    assert "alice-sbx" not in form
    response = client.post(
        add,
        {
            "provider": "sandbox",
            "actions": "exact:sandbox.create_project",
            "connection": "on_behalf_of",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = role.rules.get()
    assert rule.on_behalf_of is True
    assert rule.connection_id is None
    page = client.get(reverse("policies:detail", kwargs={"org_slug": "acme", "role_id": role.pk}))
    assert "personal sandbox connection of the member the worker acts for" in page.content.decode()
