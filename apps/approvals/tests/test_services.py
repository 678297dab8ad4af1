"""Approvals services against real PostgreSQL: request, decide, claim, expire."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone

from apps.approvals.models import Approval, ApprovalStatus
from apps.approvals.selectors import InputSide, input_diff
from apps.approvals.services import (
    INPUT_DIFFERS,
    ApprovalRefused,
    approval_claim_for_execution,
    approval_decide,
    approval_gate,
    approval_settings_update,
    approvals_expire,
    input_fingerprints,
    redact_input,
)
from apps.approvals.tests.conftest import INPUT, GatedAgent, make_gated_agent
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.policies.services import role_update
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def events(approval: Any) -> Any:
    return list(
        AuditEvent.objects.filter(target_type="approval", target_id=approval.public_id)
        .order_by("id")
        .values_list("action", flat=True)
    )


def approve(approval: Any, user: Any, comment: str = "ok") -> Any:
    return approval_decide(approval=approval, actor=user, approve=True, comment=comment)


def refused(fn: Any, **kwargs: Any) -> ApprovalRefused:
    with pytest.raises(ApprovalRefused) as info:
        fn(**kwargs)
    return info.value


# --- rules and decisions -------------------------------------------------------------


def test_the_rule_asks_for_approval_and_evaluate_stays_denied(gated: GatedAgent) -> None:
    decision = gated.decide()
    assert decision.allowed is False
    assert decision.approval_required is True
    assert decision.approval_expires_in == 3600
    assert "after approval by an admin" in decision.reason
    # The plain rule of the same role is untouched.
    plain = gated.decide(action="sandbox.list_projects", input={})
    assert plain.allowed is True
    assert plain.approval_required is False


def test_a_request_is_bound_audited_and_idempotent_while_pending(gated: GatedAgent) -> None:
    approval = gated.request(idempotency_key="key-1")
    assert approval.status == ApprovalStatus.PENDING
    assert approval.worker == gated.worker
    assert approval.token_public_id == gated.token.public_id
    assert approval.connection == gated.connection
    assert approval.rules_version == gated.ctx().rules_version
    assert approval.expires_at - approval.created_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )
    assert "cleanup-bot" in approval.summary
    assert "sandbox.delete_task" in approval.summary
    # The org does not store broker input: the approver sees the shape, not the values.
    assert approval.input == {"task_id": "‹redacted number›"}
    assert events(approval) == ["approval.requested"]
    event = AuditEvent.objects.get(action="approval.requested")
    assert event.metadata["approval_id"] == approval.public_id
    assert event.actor_type == "worker"
    assert event.token_id == gated.token.public_id

    assert gated.request().pk == approval.pk  # same call, same token
    assert gated.request(idempotency_key="key-1").pk == approval.pk
    other = gated.request(input={"task_id": 43})
    assert other.pk != approval.pk
    problem = refused(gated.request, input={"task_id": 44}, idempotency_key="key-1")
    assert (problem.status, problem.code) == (403, "approval_input_mismatch")
    assert Approval.objects.count() == 2


def test_stored_input_is_exact_when_the_org_stores_broker_input(gated: GatedAgent) -> None:
    gated.organization.store_broker_input = True
    gated.organization.save()
    assert gated.request().input == INPUT


def test_an_admin_approves_and_it_is_audited(gated: GatedAgent, admin: User) -> None:
    approval = gated.request()
    approved = approve(approval, admin, "fine by me")
    assert approved.status == ApprovalStatus.APPROVED
    assert approved.decisions.get().comment == "fine by me"
    assert events(approval) == ["approval.requested", "approval.approved"]
    event = AuditEvent.objects.get(action="approval.approved")
    assert event.actor_id == str(admin.pk)
    assert event.metadata["comment"] == "fine by me"


@pytest.mark.usefixtures("member")
def test_separation_of_duties_refuses_the_workers_creator_and_owner(
    org: Organization, owner: User, admin: User
) -> None:
    # owner created the worker and minted its token; admin owns the worker. A third
    # admin can decide (without one the request is refused at once: see below).
    MembershipFactory(organization=org, role="admin")
    agent = make_gated_agent(org, creator=owner, owner=admin)
    approval = agent.request()
    for user in (owner, admin):
        problem = refused(approval_decide, approval=approval, actor=user, approve=True)
        assert (problem.status, problem.code) == (403, "separation_of_duties")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING
    # The owner may still say no.
    denied = approval_decide(approval=approval, actor=owner, approve=False, comment="no")
    assert denied.status == ApprovalStatus.DENIED


def test_a_token_minted_by_an_admin_bars_that_admin(
    org: Organization, owner: User, admin: User
) -> None:
    from apps.workers.services import token_mint

    MembershipFactory(organization=org, role="admin")  # someone who may still decide
    agent = make_gated_agent(org, creator=owner)
    token, raw = token_mint(worker=agent.worker, actor=admin)
    agent.token, agent.raw = token, raw
    problem = refused(approval_decide, approval=agent.request(), actor=admin, approve=True)
    assert problem.code == "separation_of_duties"


def test_only_admins_or_the_named_members_may_decide(
    org: Organization, owner: User, admin: User, member: User, reviewer: User
) -> None:
    agent = make_gated_agent(org, creator=owner)
    approval = agent.request()
    for user in (member, reviewer):
        problem = refused(approval_decide, approval=approval, actor=user, approve=True)
        assert (problem.status, problem.code) == (403, "not_an_approver")

    approver = MembershipFactory(organization=org, role="member").user
    role = agent.role
    role_update(
        role=role,
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.delete_task",
                "connection": agent.connection.pk,
                "approval": {"required": True, "approvers": [approver.email]},
            }
        ],
    )
    named_approval = agent.request()
    assert named_approval.approver_ids == [approver.pk]
    # Admins are not the approvers of a rule that names members.
    assert refused(approval_decide, approval=named_approval, actor=admin, approve=True).code == (
        "not_an_approver"
    )
    assert approve(named_approval, approver).status == ApprovalStatus.APPROVED


def test_another_organizations_admin_cannot_decide(
    gated: GatedAgent, other_org: Organization
) -> None:
    stranger = MembershipFactory(organization=other_org, role="owner").user
    problem = refused(approval_decide, approval=gated.request(), actor=stranger, approve=True)
    assert (problem.status, problem.code) == (404, "approval_not_found")


def test_two_approvers_when_the_organization_requires_them(gated: GatedAgent, admin: User) -> None:
    second = MembershipFactory(organization=gated.organization, role="admin").user
    approval_settings_update(organization=gated.organization, require_two_approvers=True)
    approval = gated.request()
    assert approval.approvals_needed == 2
    assert approve(approval, admin).status == ApprovalStatus.PENDING
    assert refused(approval_decide, approval=approval, actor=admin, approve=True).code == (
        "already_decided"
    )
    assert approve(approval, second).status == ApprovalStatus.APPROVED
    assert events(approval) == [
        "approval.requested",
        "approval.approval_recorded",
        "approval.approved",
    ]


# --- claims ---------------------------------------------------------------------------


def test_a_claim_executes_once_and_a_second_use_is_409(gated: GatedAgent, admin: User) -> None:
    approval = approve(gated.request(), admin)
    claimed = approval_claim_for_execution(approval_id=approval.public_id, binding=gated.binding())
    assert claimed.status == ApprovalStatus.EXECUTED
    assert claimed.executed_at is not None
    again = refused(
        approval_claim_for_execution, approval_id=approval.public_id, binding=gated.binding()
    )
    assert (again.status, again.code) == (409, "approval_used")
    assert events(approval)[-2:] == ["approval.executed", "approval.claim_refused"]


def test_input_that_differs_is_403_and_leaves_the_approval_usable(
    gated: GatedAgent, admin: User
) -> None:
    approval = approve(gated.request(), admin)
    problem = refused(
        approval_claim_for_execution,
        approval_id=approval.public_id,
        binding=gated.binding({"task_id": 666}),
    )
    assert (problem.status, problem.code) == (403, "approval_input_mismatch")
    assert INPUT_DIFFERS in problem.message.lower()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval_claim_for_execution(approval_id=approval.public_id, binding=gated.binding())


@pytest.mark.usefixtures("org")
def test_every_other_binding_is_checked(gated: GatedAgent, admin: User, owner: User) -> None:
    approval = approve(gated.request(), admin)
    other_action = refused(
        approval_claim_for_execution,
        approval_id=approval.public_id,
        binding=gated.binding(action="sandbox.list_projects"),
    )
    assert (other_action.status, other_action.code) == (403, "approval_call_mismatch")

    from apps.workers.services import token_mint

    token, _ = token_mint(worker=gated.worker, actor=owner)
    other_token = gated.binding().__class__(
        **{**gated.binding().__dict__, "token_public_id": token.public_id}
    )
    problem = refused(
        approval_claim_for_execution, approval_id=approval.public_id, binding=other_token
    )
    assert (problem.status, problem.code) == (403, "approval_binding_mismatch")

    elsewhere = gated.binding().__class__(**{**gated.binding().__dict__, "organization_id": 0})
    problem = refused(
        approval_claim_for_execution, approval_id=approval.public_id, binding=elsewhere
    )
    assert (problem.status, problem.code) == (404, "approval_not_found")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED


def test_a_rules_change_voids_the_approval(gated: GatedAgent, admin: User) -> None:
    approval = approve(gated.request(), admin)
    role_update(role=gated.role, description="changed text only")  # not a rules change
    rules = [
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.delete_task",
            "connection": gated.connection.pk,
            "approval": "required",
        },
        {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_tasks"},
    ]
    role_update(role=gated.role, rules=rules)
    problem = refused(
        approval_claim_for_execution, approval_id=approval.public_id, binding=gated.binding()
    )
    assert (problem.status, problem.code) == (409, "approval_void")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.VOID
    assert "approval.voided" in events(approval)


def test_a_rules_change_voids_a_pending_request_at_decision_time(
    gated: GatedAgent, admin: User
) -> None:
    approval = gated.request()
    role_update(role=gated.role, rules=[])
    problem = refused(approval_decide, approval=approval, actor=admin, approve=True)
    assert (problem.status, problem.code) == (409, "approval_void")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.VOID


def test_a_denied_or_pending_approval_does_not_execute(gated: GatedAgent, admin: User) -> None:
    pending = gated.request()
    problem = refused(
        approval_claim_for_execution, approval_id=pending.public_id, binding=gated.binding()
    )
    assert (problem.status, problem.code) == (409, "approval_pending")
    approval_decide(approval=pending, actor=admin, approve=False, comment="no")
    problem = refused(
        approval_claim_for_execution, approval_id=pending.public_id, binding=gated.binding()
    )
    assert (problem.status, problem.code) == (403, "approval_denied")


# --- expiry ---------------------------------------------------------------------------


def test_the_periodic_task_expires_and_audits(gated: GatedAgent, admin: User) -> None:
    pending = gated.request()
    approved = approve(gated.request(input={"task_id": 7}), admin)
    fresh = gated.request(input={"task_id": 8})
    past = timezone.now() - timedelta(seconds=1)
    Approval.objects.filter(pk__in=[pending.pk, approved.pk]).update(expires_at=past)
    assert pending.__class__.objects.get(pk=pending.pk).effective_status() == "expired"

    assert approvals_expire() == 2
    assert approvals_expire() == 0  # safe to run twice
    statuses = dict(Approval.objects.values_list("pk", "status"))
    assert statuses == {pending.pk: "expired", approved.pk: "expired", fresh.pk: "pending"}
    assert events(pending)[-1] == "approval.expired"
    assert events(approved)[-1] == "approval.expired"
    problem = refused(
        approval_claim_for_execution,
        approval_id=approved.public_id,
        binding=gated.binding({"task_id": 7}),
    )
    assert (problem.status, problem.code) == (410, "approval_expired")


def test_a_rule_sets_its_own_expiry(org: Organization, owner: User) -> None:
    MembershipFactory(organization=org, role="admin")  # someone who may decide
    agent = make_gated_agent(org, creator=owner, expires_in=120)
    approval = agent.request()
    assert approval.expires_at - approval.created_at < timedelta(seconds=130)


def test_the_celery_beat_entry_names_the_task() -> None:
    from django.conf import settings

    from apps.approvals import tasks

    entry: dict[str, Any] = settings.CELERY_BEAT_SCHEDULE["approvals-expire-due"]
    assert entry["task"] == tasks.expire_due.name
    assert entry["schedule"] <= 60


# --- the broker's gate ----------------------------------------------------------------


def test_the_gate_answers_202_then_proceeds_once(gated: GatedAgent, admin: User) -> None:
    first = approval_gate(
        binding=gated.binding(),
        decision=gated.decide(),
        connection_name="sandbox-demo",
        input=INPUT,
        reason="cleanup",
        idempotency_key="k-9",
    )
    assert (first.proceed, first.status, first.code) == (False, 202, "approval_pending")
    body = first.body["approval"]
    assert body["id"] == first.approval.public_id
    assert body["status_url"].endswith(f"/api/v1/approvals/{body['id']}")
    assert first.headers["Retry-After"] == "5"
    assert "sandbox.delete_task" in body["summary"]

    again = approval_gate(binding=gated.binding(), decision=gated.decide(), idempotency_key="k-9")
    assert again.status == 202
    assert again.approval.pk == first.approval.pk

    approve(first.approval, admin)
    by_key = approval_gate(binding=gated.binding(), decision=gated.decide(), idempotency_key="k-9")
    assert by_key.proceed is True
    # The gate only checks; the broker spends it with the call's attempt.
    assert by_key.approval.status == "approved"
    spent = approval_claim_for_execution(
        approval_id=by_key.approval.public_id, binding=gated.binding()
    )
    assert spent.status == "executed"
    used = approval_gate(binding=gated.binding(), decision=gated.decide(), approval_id=body["id"])
    assert (used.proceed, used.status, used.code) == (False, 409, "approval_used")
    assert used.details == {"approval_id": body["id"]}
    unknown = approval_gate(
        binding=gated.binding(), decision=gated.decide(), approval_id="apr_nope"
    )
    assert (unknown.status, unknown.code) == (404, "approval_not_found")
    differs = approval_gate(
        binding=gated.binding({"task_id": 1}),
        decision=gated.decide({"task_id": 1}),
        approval_id=body["id"],
    )
    assert (differs.status, differs.code) == (403, "approval_input_mismatch")


def test_input_diff_rows() -> None:
    rows = input_diff(
        InputSide({"a": 1, "b": {"c": "x"}, "gone": True}),
        InputSide({"a": 2, "b": {"c": "x"}, "new": 1}),
    )
    assert [(r.path, r.change) for r in rows] == [
        ("a", "changed"),
        ("b.c", "same"),
        ("gone", "removed"),
        ("new", "added"),
    ]


def test_input_diff_compares_real_values_through_fingerprints() -> None:
    """Redacted values look alike; their fingerprints tell 201 from 300 (issue 22 item 1)."""
    then = input_fingerprints(1, {"item_id": 7, "qty": 201})
    same = input_fingerprints(1, {"item_id": 7, "qty": 201})
    now = input_fingerprints(1, {"item_id": 7, "qty": 300})
    redacted = redact_input({"item_id": 7, "qty": 201})
    rows = input_diff(
        InputSide(redacted, False, then), InputSide({"item_id": 7, "qty": 300}, True, now)
    )
    assert [(r.path, r.change) for r in rows] == [("item_id", "same"), ("qty", "changed")]
    rows = input_diff(InputSide(redacted, False, then), InputSide(redacted, False, same))
    assert [r.change for r in rows] == ["same", "same"]
    # Without fingerprints (requests made before they existed) redacted values prove nothing.
    rows = input_diff(InputSide(redacted, False), InputSide(redacted, False))
    assert [r.change for r in rows] == ["unknown", "unknown"]
    # Another organization's fingerprints of the same value differ (per-organization key).
    assert input_fingerprints(2, {"qty": 201})["qty"] != then["qty"]


# --- concurrency (threads, real PostgreSQL) ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_claims_exactly_one_wins(
    org: Organization, owner: User, admin: User
) -> None:
    agent = make_gated_agent(org, creator=owner)
    approval = approve(agent.request(), admin)
    binding = agent.binding()
    barrier = threading.Barrier(2)
    results: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            approval_claim_for_execution(approval_id=approval.public_id, binding=binding)
            outcome = "executed"
        except ApprovalRefused as exc:
            outcome = exc.code
        finally:
            connections.close_all()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["approval_used", "executed"]
    assert AuditEvent.objects.filter(action="approval.executed").count() == 1


def test_unknown_member_cannot_be_named(gated: GatedAgent) -> None:
    from django.core.exceptions import ValidationError

    stranger = UserFactory(email="stranger@nowhere.test")
    with pytest.raises(ValidationError) as info:
        role_update(
            role=gated.role,
            rules=[
                {
                    "kind": "action",
                    "provider_key": "sandbox",
                    "action_pattern": "sandbox.delete_task",
                    "approval": {"required": True, "approvers": [stranger.email]},
                }
            ],
        )
    assert "rules.0.approval.approvers.0" in info.value.message_dict


def test_a_proxy_approval_is_bound_to_method_and_path(
    org: Organization, owner: User, admin: User
) -> None:
    from apps.approvals.services import ApprovalBinding, approval_request
    from apps.broker.results import input_digest
    from apps.policies.evaluate import Call, evaluate
    from apps.policies.selectors import load_role_rules

    agent = make_gated_agent(org, creator=owner)
    role_update(
        role=agent.role,
        rules=[
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "connection": agent.connection.pk,
                "methods": ["DELETE"],
                "path_glob": "/projects/*/tasks/*",
                "approval": "required",
            }
        ],
    )
    digest = input_digest({"query": "", "body": ""})

    def binding(path: Any) -> Any:
        return ApprovalBinding.for_proxy(
            ctx=agent.ctx(),
            method="delete",
            path=path,
            connection_id=agent.connection.pk,
            input_digest=digest,
        )

    decision = evaluate(
        load_role_rules(agent.role.pk),
        Call.for_proxy(
            provider_key="sandbox",
            method="DELETE",
            path="/projects/1/tasks/9",
            connection_id=agent.connection.pk,
        ),
    )
    assert decision.approval_required
    assert not decision.allowed
    approval = approval_request(
        binding=binding("/projects/1/tasks/9"),
        decision=decision,
        connection_name="sandbox-demo",
        input={"query": "", "body": ""},
        reason="nul\x00byte",
    )
    assert approval.what() == "DELETE /projects/1/tasks/9"
    assert approval.reason == "nulbyte"
    approve(approval, admin)
    problem = refused(
        approval_claim_for_execution,
        approval_id=approval.public_id,
        binding=binding("/projects/1/tasks/10"),
    )
    assert (problem.status, problem.code) == (403, "approval_call_mismatch")
    done = approval_claim_for_execution(
        approval_id=approval.public_id, binding=binding("/projects/1/tasks/9")
    )
    assert done.status == ApprovalStatus.EXECUTED


def test_webhook_secrets_are_encrypted_fields_the_key_rotation_covers() -> None:
    from apps.connections.keyring import encrypted_fields

    found = {f"{m._meta.label}.{f.name}" for m, f in encrypted_fields()}
    assert {
        "approvals.ApprovalSettings.webhook_url",
        "approvals.ApprovalSettings.webhook_secret",
    } <= found


# --- configurations nobody could approve (issue 22 item 3) ----------------------------


def test_a_rule_naming_only_the_workers_creator_is_refused_when_saved(
    gated: GatedAgent, owner: User
) -> None:
    from django.core.exceptions import ValidationError

    from apps.approvals.tests.conftest import approval_rules

    with pytest.raises(ValidationError) as info:
        role_update(
            role=gated.role, rules=approval_rules(gated.connection, approvers=[owner.email])
        )
    message = " ".join(info.value.message_dict["rules.1.approval.approvers"])
    assert "cleanup-bot" in message
    assert "separation of duties" in message
    assert owner.email in message


def test_two_approvers_with_one_eligible_are_refused_when_saved(
    gated: GatedAgent, admin: User
) -> None:
    """The owner created the worker, so only the admin could approve: two cannot be
    required, neither by the organization's setting nor for a rule saved under it."""
    from django.core.exceptions import ValidationError

    from apps.approvals.models import ApprovalSettings
    from apps.approvals.tests.conftest import approval_rules

    with pytest.raises(ValidationError) as info:
        approval_settings_update(organization=gated.organization, require_two_approvers=True)
    assert "deleter" in " ".join(info.value.message_dict["require_two_approvers"])
    assert not ApprovalSettings.objects.filter(
        organization=gated.organization, require_two_approvers=True
    ).exists()
    # With a second admin two approvers can be required; a rule naming one cannot.
    MembershipFactory(organization=gated.organization, role="admin")
    approval_settings_update(organization=gated.organization, require_two_approvers=True)
    with pytest.raises(ValidationError) as info:
        role_update(
            role=gated.role, rules=approval_rules(gated.connection, approvers=[admin.email])
        )
    assert "need 2 approvers" in " ".join(info.value.message_dict["rules.1.approval.approvers"])


def test_an_agent_is_told_at_once_when_no_eligible_approver_exists(
    gated: GatedAgent, admin: User
) -> None:
    """The rule was fine when saved; then the only eligible approver left."""
    from apps.organizations.models import Membership

    Membership.objects.filter(organization=gated.organization, user=admin).delete()
    gate = approval_gate(
        binding=gated.binding(),
        decision=gated.decide(),
        connection_name="sandbox-demo",
        input=INPUT,
    )
    assert (gate.proceed, gate.status, gate.code) == (False, 403, "no_eligible_approver")
    assert "No one can approve this call" in gate.message
    assert not Approval.objects.exists()
