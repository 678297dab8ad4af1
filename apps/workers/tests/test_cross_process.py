"""Revocation is immediate on every server process.

Two real granian servers (separate processes, separate connections) serve the
same test database. A token works on both; it is revoked through the
management API of one; the very next request on the other gets 401."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from apps.accounts.services import personal_token_mint
from apps.organizations.models import Organization
from apps.workers.models import Worker
from apps.workers.services import token_mint
from tests.backends import database_url

ROOT = Path(__file__).resolve().parents[3]
GRANIAN = Path(sys.executable).parent / "granian"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The Procfile's web server (granian), one process, on the test database."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        *,
        threads: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
            "DATABASE_URL": database_url(settings.DATABASES["default"]),
            "GRANTRY_BASE_URL": self.base,
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(  # fixed argv
            [
                str(GRANIAN),
                *("--interface", "wsgi", "--host", "127.0.0.1", "--port", str(self.port)),
                *("--workers", "1", "--blocking-threads", str(threads)),
                "grantry.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base}/healthz?checks=0", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def two_servers(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # noqa: ARG001 - the test database must exist first
    tmp_path = tmp_path_factory.mktemp("servers")
    servers = [Server(tmp_path, "a"), Server(tmp_path, "b")]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.django_db(transaction=True)
def test_revocation_through_one_process_is_seen_by_the_other(
    two_servers: Any, org: Organization, admin: User, worker: Worker
) -> None:
    server_a, server_b = two_servers
    assert server_a.process.pid != server_b.process.pid
    token, raw = token_mint(worker=worker, actor=admin)
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    agent = {"Authorization": f"Bearer {raw}"}

    for server in (server_a, server_b):
        response = httpx.get(f"{server.base}/api/v1/whoami", headers=agent, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["token"]["id"] == token.public_id

    revoke = httpx.post(
        f"{server_a.base}/api/v1/orgs/{org.slug}/workers/{worker.pk}/tokens/"
        f"{token.public_id}/revoke/",
        headers={"Authorization": f"Bearer {personal}"},
        json={"reason": "cross-process test"},
        timeout=10,
    )
    assert revoke.status_code == 200, revoke.text

    response = httpx.get(f"{server_b.base}/api/v1/whoami", headers=agent, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    assert httpx.get(f"{server_a.base}/api/v1/whoami", headers=agent, timeout=10).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_disabling_a_worker_is_seen_by_every_process(
    two_servers: Any, org: Organization, admin: User, worker: Worker
) -> None:
    server_a, server_b = two_servers
    _, raw = token_mint(worker=worker, actor=admin)
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    agent = {"Authorization": f"Bearer {raw}"}
    assert httpx.get(f"{server_b.base}/api/v1/whoami", headers=agent, timeout=10).status_code == 200
    disable = httpx.post(
        f"{server_a.base}/api/v1/orgs/{org.slug}/workers/{worker.pk}/disable/",
        headers={"Authorization": f"Bearer {personal}"},
        timeout=10,
    )
    assert disable.status_code == 200, disable.text
    response = httpx.get(f"{server_b.base}/api/v1/whoami", headers=agent, timeout=10)
    assert response.json()["error"]["code"] == "worker_disabled"
