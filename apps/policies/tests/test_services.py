"""Services: validation against the catalog and the org's connections, audit, cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.evaluate import Call, evaluate
from apps.policies.models import Role, Rule
from apps.policies.selectors import allowed_actions, load_role_rules, role_rules
from apps.policies.services import (
    role_create,
    role_delete,
    role_update,
    rule_add,
    rule_delete,
)
from apps.policies.tests.conftest import make_connection

pytestmark = pytest.mark.django_db


def read_rule(**kw: Any) -> Any:
    return {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.*",
        "action_class": "read",
        **kw,
    }


def errors_of(excinfo: Any) -> Any:
    return excinfo.value.message_dict


def test_role_create_saves_rules_and_audits_with_the_rule_diff(
    org: Organization, admin: User, sandbox_conn: Connection
) -> None:
    role = role_create(
        organization=org,
        name="triage",
        description="Reads tasks",
        actor=admin,
        rules=[
            read_rule(),
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "connection": sandbox_conn.pk,
                "rate_limit_per_minute": 5,
                "constraints": [{"field": "priority", "op": "max", "value": 3}],
            },
        ],
    )
    assert [r.action_pattern for r in role.rules.all()] == ["sandbox.*", "sandbox.create_task"]
    event = AuditEvent.objects.get(action="role.created")
    assert event.organization_id == org.pk
    assert event.actor_id == str(admin.pk)
    after = event.metadata["rules"]["after"]
    assert after[1]["connection_name"] == "sandbox-demo"
    assert after[1]["constraints"] == [{"field": "priority", "op": "max", "value": 3}]


def test_unknown_action_and_provider_are_rejected_and_nothing_is_saved(
    org: Organization, admin: User
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="bad",
            actor=admin,
            rules=[
                read_rule(),
                {"provider_key": "sandbox", "action_pattern": "sandbox.drop_database"},
                {"provider_key": "nope", "action_pattern": "nope.*"},
            ],
        )
    errors = errors_of(excinfo)
    assert errors["rules.1.action_pattern"] == ["Unknown action 'sandbox.drop_database'."]
    assert errors["rules.2.provider_key"] == ["Unknown provider 'nope'."]
    assert not Role.objects.filter(name="bad").exists()
    assert not AuditEvent.objects.filter(action="role.created").exists()


def test_another_orgs_connection_is_rejected(
    org: Organization, admin: User, other_org_conn: Connection
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="sneaky",
            actor=admin,
            rules=[read_rule(connection=other_org_conn.pk)],
        )
    assert errors_of(excinfo) == {
        "rules.0.connection": ["No such connection in this organization."]
    }
    assert not Role.objects.exists()


@pytest.mark.usefixtures("admin")
def test_connection_must_match_the_provider(org: Organization) -> None:
    github = make_connection(org, name="gh", provider_key="github")
    with pytest.raises(ValidationError) as excinfo:
        role_create(organization=org, name="r", rules=[read_rule(connection=github.pk)])
    assert "is a github connection, not sandbox" in errors_of(excinfo)["rules.0.connection"][0]


@pytest.mark.parametrize(
    ("constraint", "key", "message"),
    [
        ({"field": "nope", "op": "equals", "value": 1}, "field", "not an input field"),
        ({"field": "priority", "op": "max", "value": "3"}, "value", "needs a number"),
        ({"field": "priority", "op": "max", "value": True}, "value", "needs a number"),
        ({"field": "title", "op": "one_of", "value": []}, "value", "non-empty list"),
        ({"field": "title", "op": "glob", "value": 5}, "value", "non-empty string"),
        ({"field": "title", "op": "regex", "value": ".*"}, "op", "Operator must be one of"),
        ({"field": "title", "op": "equals", "value": {"a": 1}}, "value", "'equals' needs"),
    ],
)
def test_constraint_validation(org: Organization, constraint: Any, key: str, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="r",
            rules=[
                {
                    "provider_key": "sandbox",
                    "action_pattern": "sandbox.create_task",
                    "constraints": [constraint],
                }
            ],
        )
    assert message in errors_of(excinfo)[f"rules.0.constraints.0.{key}"][0]


def test_exact_action_with_the_wrong_class_is_rejected(org: Organization) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="r",
            rules=[
                {
                    "provider_key": "sandbox",
                    "action_pattern": "sandbox.delete_task",
                    "action_class": "read",
                }
            ],
        )
    assert "would never match" in errors_of(excinfo)["rules.0.action_class"][0]


def test_patterns_must_be_exact_or_provider_wide(org: Organization) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="r",
            rules=[
                {"provider_key": "sandbox", "action_pattern": "sandbox.list_*"},
                {"provider_key": "sandbox", "action_pattern": "github.list_issues"},
            ],
        )
    errors = errors_of(excinfo)
    assert "exact action name" in errors["rules.0.action_pattern"][0]
    assert "is not an action of sandbox" in errors["rules.1.action_pattern"][0]


def test_proxy_rule_validation(org: Organization, sandbox_conn: Connection) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(
            organization=org,
            name="p",
            rules=[
                {
                    "kind": "proxy",
                    "provider_key": "sandbox",
                    "methods": ["GET", "BREW"],
                    "path_glob": "projects/*",
                },
                {
                    "kind": "proxy",
                    "provider_key": "sandbox",
                    "connection": sandbox_conn.pk,
                    "methods": [],
                    "path_glob": "/a/../b",
                },
            ],
        )
    errors = errors_of(excinfo)
    assert errors["rules.0.connection"] == ["A proxy rule needs one connection."]
    assert "BREW" in errors["rules.0.methods"][0]
    assert errors["rules.0.path_glob"] == ["A path glob must start with '/'."]
    assert errors["rules.1.methods"] == ["Pick at least one HTTP method."]
    assert "'..'" in errors["rules.1.path_glob"][0]
    role = role_create(
        organization=org,
        name="p",
        rules=[
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "connection": sandbox_conn.pk,
                "methods": ["post", "get"],
                "path_glob": "/projects/*/tasks",
            }
        ],
    )
    assert role.rules.get().methods == ["GET", "POST"]


def test_duplicate_role_name_is_a_field_error(org: Organization) -> None:
    role_create(organization=org, name="triage")
    with pytest.raises(ValidationError) as excinfo:
        role_create(organization=org, name="triage")
    assert "already exists" in errors_of(excinfo)["name"][0]


def test_role_update_replaces_rules_atomically_and_audits_the_diff(
    org: Organization, admin: User
) -> None:
    role = role_create(organization=org, name="triage", rules=[read_rule()])
    with pytest.raises(ValidationError):
        role_update(
            role=role,
            rules=[{"provider_key": "sandbox", "action_pattern": "sandbox.nope"}],
            actor=admin,
        )
    assert list(role.rules.values_list("action_pattern", flat=True)) == ["sandbox.*"]

    role_update(
        role=role,
        name="triage-2",
        actor=admin,
        rules=[{"provider_key": "sandbox", "action_pattern": "sandbox.delete_task"}],
    )
    role.refresh_from_db()
    assert role.name == "triage-2"
    assert list(role.rules.values_list("action_pattern", flat=True)) == ["sandbox.delete_task"]
    event = AuditEvent.objects.filter(action="role.changed").get()
    assert event.metadata["name"] == {"before": "triage", "after": "triage-2"}
    assert [r["action_pattern"] for r in event.metadata["rules"]["removed"]] == ["sandbox.*"]
    assert [r["action_pattern"] for r in event.metadata["rules"]["added"]] == [
        "sandbox.delete_task"
    ]


def test_rule_add_and_delete_are_audited(org: Organization, admin: User) -> None:
    role = role_create(organization=org, name="r")
    rule = rule_add(role=role, rule=read_rule(), actor=admin)
    rule_delete(rule=rule, actor=admin)
    events = list(AuditEvent.objects.filter(action="role.changed").order_by("id"))
    assert len(events) == 2
    assert events[0].metadata["rules"]["added"][0]["action_pattern"] == "sandbox.*"
    assert events[1].metadata["rules"]["removed"][0]["action_pattern"] == "sandbox.*"
    assert not Rule.objects.exists()


def test_role_delete_is_audited(org: Organization, admin: User) -> None:
    role = role_create(organization=org, name="gone", rules=[read_rule()])
    role_delete(role=role, actor=admin)
    assert not Role.objects.exists()
    event = AuditEvent.objects.get(action="role.deleted")
    assert event.target_label == "gone"
    assert event.metadata["rules"]["before"]


def test_audit_failure_rolls_the_change_back(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apps.policies.services as services

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_record", broken)
    with pytest.raises(RuntimeError):
        role_create(organization=org, name="r", rules=[read_rule()])
    assert not Role.objects.exists()
    assert not Rule.objects.exists()


def _version(role: Any) -> Any:
    role.refresh_from_db(fields=["rules_version"])
    return role.rules_version


def test_role_rules_cache_is_invalidated_by_every_change(
    org: Organization, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    role = role_create(organization=org, name="r", rules=[read_rule()])
    first = role_rules(role.pk, _version(role))
    with django_assert_num_queries(0):
        assert role_rules(role.pk, role.rules_version) == first
    call = Call.for_action(
        action_name="sandbox.delete_task", action_class="write", connection_id=None
    )
    assert not evaluate(role_rules(role.pk, role.rules_version), call).allowed
    before = role.rules_version
    rule_add(role=role, rule={"provider_key": "sandbox", "action_pattern": "sandbox.delete_task"})
    assert _version(role) > before  # raised in the change's own transaction
    assert evaluate(role_rules(role.pk, role.rules_version), call).allowed
    assert role_rules(role.pk) == load_role_rules(role.pk)  # no version given: read it


def test_every_rule_change_raises_the_rules_version(
    org: Organization, sandbox_conn: Connection
) -> None:
    role = role_create(organization=org, name="r", rules=[read_rule()])
    seen = [_version(role)]
    rule_add(role=role, rule={"provider_key": "sandbox", "action_pattern": "sandbox.get_task"})
    seen.append(_version(role))
    rule_delete(rule=role.rules.latest("id"))
    seen.append(_version(role))
    role_update(role=role, rules=[read_rule(), read_rule()])
    seen.append(_version(role))
    # A connection deleted by cascade takes its rules along: that raises it too.
    rule_add(
        role=role,
        rule={
            "provider_key": "sandbox",
            "action_pattern": "sandbox.get_task",
            "connection": sandbox_conn.pk,
        },
    )
    seen.append(_version(role))
    sandbox_conn.delete()
    seen.append(_version(role))
    assert seen == sorted(set(seen)), seen  # strictly increasing


def test_role_rules_is_one_query_on_a_miss(
    org: Organization, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    role = role_create(organization=org, name="r", rules=[read_rule(), read_rule()])
    with django_assert_num_queries(1):
        assert len(load_role_rules(role.pk)) == 2


def test_allowed_actions_lists_actions_with_usable_connections(
    org: Organization, sandbox_conn: Connection
) -> None:
    make_connection(org, name="sandbox-old", status="revoked")
    role = role_create(
        organization=org,
        name="r",
        rules=[
            read_rule(),
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "connection": sandbox_conn.pk,
            },
        ],
    )
    listed = {action.name: [c.name for c in conns] for action, conns in allowed_actions(role, org)}
    assert listed["sandbox.create_task"] == ["sandbox-demo"]
    assert listed["sandbox.list_tasks"] == ["sandbox-demo"]
    assert "sandbox.delete_task" not in listed
    assert all(name.startswith("sandbox.") for name in listed)


def test_a_role_in_use_by_a_worker_cannot_be_deleted(org: Organization, admin: User) -> None:
    from apps.workers.services import worker_create

    role = role_create(organization=org, name="used", rules=[read_rule()])
    worker_create(organization=org, name="bot", default_role=role, actor=admin)
    with pytest.raises(ValidationError) as excinfo:
        role_delete(role=role, actor=admin)
    assert "still used" in errors_of(excinfo)["role"][0]
    assert Role.objects.filter(pk=role.pk).exists()
    assert not AuditEvent.objects.filter(action="role.deleted").exists()


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({**read_rule(), "connection": "²"}, "rules.0.connection"),
        ({**read_rule(), "connection": 10**30}, "rules.0.connection"),
        ({**read_rule(), "connection": True}, "rules.0.connection"),
        ({**read_rule(), "rate_limit_per_minute": "٣"}, "rules.0.rate_limit_per_minute"),
        ({**read_rule(), "rate_limit_per_minute": 0}, "rules.0.rate_limit_per_minute"),
        ({**read_rule(), "rate_limit_per_minute": False}, "rules.0.rate_limit_per_minute"),
        ({**read_rule(), "surprise": 1}, "rules.0"),
        (
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "methods": ["GET"],
                "path_glob": "/" + "a" * 400,
            },
            "rules.0.path_glob",
        ),
        (
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "constraints": [{"field": "title", "op": "one_of", "value": ["x"] * 101}],
            },
            "rules.0.constraints.0.value",
        ),
    ],
)
def test_odd_rule_input_is_a_field_error_not_a_crash(
    org: Organization, rule: Any, key: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(organization=org, name="r", rules=[rule])
    assert key in errors_of(excinfo)
    assert not Role.objects.exists()


def test_too_many_rules(org: Organization) -> None:
    with pytest.raises(ValidationError) as excinfo:
        role_create(organization=org, name="r", rules=[read_rule()] * 201)
    assert "at most 200 rules" in errors_of(excinfo)["rules"][0]


def test_an_update_that_changes_nothing_writes_no_event(org: Organization) -> None:
    role = role_create(organization=org, name="r", description="d", rules=[read_rule()])
    role_update(role=role, name="r", description="d", rules=[read_rule()])
    assert not AuditEvent.objects.filter(action="role.changed").exists()
    role_update(role=role, description="other")
    assert AuditEvent.objects.filter(action="role.changed").count() == 1


def test_deleting_a_connection_removes_its_rules_and_refreshes_the_cache(
    org: Organization,
    sandbox_conn: Connection,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        role = role_create(
            organization=org, name="r", rules=[read_rule(connection=sandbox_conn.pk), read_rule()]
        )
    assert len(role_rules(role.pk)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_conn.delete()
    assert [r.connection_id for r in role_rules(role.pk)] == [None]


def test_process_rules_expire_even_without_a_version_change(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Safety net for a rule change that did not raise the version (an older release
    during a rolling deploy): the per-process copy is dropped after its lifetime."""
    from apps.policies import selectors

    role = role_create(organization=org, name="r", rules=[read_rule()])
    version = _version(role)
    assert len(role_rules(role.pk, version)) == 1
    Rule.objects.filter(role=role).delete()  # what an old release would do, version kept
    Role.objects.filter(pk=role.pk).update(rules_version=version)
    assert len(role_rules(role.pk, version)) == 1  # still the process's copy
    now = selectors.time.monotonic()
    monkeypatch.setattr(selectors.time, "monotonic", lambda: now + selectors.LOCAL_TTL_SECONDS + 1)
    assert role_rules(role.pk, version) == []
