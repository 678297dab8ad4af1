"""Concurrent roll and mint on one worker: never a deadlock, never a 5xx.

Real PostgreSQL, real threads (each with its own connection), one barrier so the
20 calls start together. Rolls and mints lock in one order (worker, then token,
then the audit chain head), and only the rows they change."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint

CALLERS = 20


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_rolls_and_mints_on_one_worker(
    org: Organization, admin: User, worker: Worker
) -> None:
    tokens = [token_mint(worker=worker, actor=admin)[0] for _ in range(2)]
    base = f"/api/v1/orgs/{org.slug}/workers/{worker.pk}/tokens/"
    barrier = threading.Barrier(CALLERS)
    results: list[tuple[str, int, str]] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            api = APIClient()
            api.force_login(admin)
            barrier.wait(timeout=30)
            if i % 2:
                target = tokens[(i // 2) % len(tokens)]
                response = api.post(f"{base}{target.public_id}/roll/", {}, format="json")
                results.append(("roll", response.status_code, target.public_id))
            else:
                response = api.post(base, {"expires_in_days": 7}, format="json")
                results.append(("mint", response.status_code, ""))
        except BaseException as exc:  # the test reports every failure
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == CALLERS
    statuses = sorted({status for _, status, _ in results})
    assert all(status < 500 for status in statuses), results
    mints = [r for r in results if r[0] == "mint"]
    rolls = [r for r in results if r[0] == "roll"]
    assert all(status == 201 for _, status, _ in mints), mints
    # Each token is rolled exactly once; every other roll of it is refused with a 400.
    for token in tokens:
        outcomes = sorted(status for _, status, tid in rolls if tid == token.public_id)
        assert outcomes.count(201) == 1, outcomes
        assert set(outcomes) <= {201, 400}, outcomes
        assert WorkerToken.objects.filter(rolled_from=token).count() == 1

    # A consistent token set: the two originals, one per mint, one per successful roll,
    # and an audit event for every one of them.
    assert WorkerToken.objects.filter(worker=worker).count() == len(tokens) + len(mints) + 2
    assert AuditEvent.objects.filter(action="token.minted").count() == len(tokens) + len(mints)
    assert AuditEvent.objects.filter(action="token.rolled").count() == 2
    assert all(report.ok for report in verify_chains(organization_ids=[org.pk]))
