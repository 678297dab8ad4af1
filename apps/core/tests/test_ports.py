"""Ports (apps/core/ports.py): a lower layer asks, the app that owns the question answers."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.audit import filters as audit_filters
from apps.connections import selectors as connection_selectors
from apps.core.ports import Port
from apps.policies import approvers, least_privilege
from apps.policies import selectors as policy_selectors
from apps.providers import services as provider_services
from apps.workers import selectors as worker_selectors


def test_a_port_nobody_plugged_fails_loudly() -> None:
    port: Port[[int], int] = Port("double", answered_by="nobody")
    with pytest.raises(ImproperlyConfigured, match="double: nothing plugged in"):
        port(2)
    port.plug(lambda n: n * 2)
    assert port(2) == 4


def test_the_owners_answer_once_the_apps_are_ready() -> None:
    assert connection_selectors.connection_users._answer is worker_selectors.connection_users
    assert policy_selectors.role_users._answer is worker_selectors.role_users
    assert provider_services.live_connection_names._answer is (
        connection_selectors.live_connection_names
    )
    assert audit_filters.IDS_NAMED["worker"]._answer is worker_selectors.worker_ids_named
    assert audit_filters.IDS_NAMED["connection"]._answer is (
        connection_selectors.connection_ids_named
    )
    assert approvers._role_subjects._answer is worker_selectors.role_subjects
    assert least_privilege.worker_of._answer is worker_selectors.worker_of
