"""Two owners demoting themselves at the same moment must not leave the org
without an owner. Runs on real PostgreSQL row locks, with two threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from apps.organizations import services
from apps.organizations.models import Membership, OrgRole
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _another_backend_waits_for_my_locks() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        )
        return cursor.fetchone()[0] > 0


def test_concurrent_self_demotions_keep_one_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    org = OrganizationFactory(slug="race")
    first = MembershipFactory(organization=org, role=OrgRole.OWNER)
    second = MembershipFactory(organization=org, role=OrgRole.OWNER)

    original = services._lock_owners

    def slow_lock(organization: Any) -> Any:
        # Hold the locks until the other thread is inside its own transaction, waiting
        # for them to read the owners (or is done: then it went first).
        owners = original(organization)
        deadline = time.monotonic() + 10
        while not (results or _another_backend_waits_for_my_locks()):
            if time.monotonic() > deadline:
                break  # the other thread never waited: the race goes on unserialised
            time.sleep(0.01)
        return owners

    monkeypatch.setattr(services, "_lock_owners", slow_lock)
    results: dict[int, str] = {}
    start = threading.Barrier(2)

    def demote(membership: Membership) -> None:
        start.wait()
        try:
            services.membership_change_role(
                membership=membership, role=OrgRole.ADMIN, actor_membership=membership
            )
            results[membership.pk] = "ok"
        except ValidationError as exc:
            results[membership.pk] = " ".join(exc.messages)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(m,)) for m in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert sum(1 for r in results.values() if r == "ok") == 1
    assert any("last owner" in r for r in results.values())
    assert Membership.objects.filter(organization=org, role=OrgRole.OWNER).count() == 1
