"""Production settings refuse to start without secrets and pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _manage(*args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "GRANTRY_ENCRYPTION_KEY",
            "DEBUG",
            "DJANGO_SETTINGS_MODULE",
            "GRANTRY_SANDBOX_ENABLED",
            "GRANTRY_EGRESS_ALLOW_LOOPBACK",
            "SECURE_SSL_REDIRECT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "ALLOWED_HOSTS",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    env.update({"DJANGO_SETTINGS_MODULE": "grantry.settings", "DEBUG": "0", **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PROD = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "GRANTRY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
    "ALLOWED_HOSTS": "grantry.example.com",
    "GRANTRY_BASE_URL": "https://grantry.example.com",
    "DATABASE_URL": "sqlite:////tmp/grantry-deploy-check.sqlite3",
}


@pytest.mark.parametrize("missing", ["SECRET_KEY", "GRANTRY_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_a_secret(missing):
    env = {k: v for k, v in PROD.items() if k != missing}
    result = _manage("check", **env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _derive(secret: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    from django.conf import settings
    from django.utils.encoding import force_bytes

    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=32,
        salt=force_bytes(settings.CRYPTOGRAPHY_SALT),
        iterations=30000,
    )
    return kdf.derive(secret.encode())


def test_encryption_key_is_derived_from_grantry_key_never_from_secret_key():
    from django.conf import settings

    assert settings.CRYPTOGRAPHY_KEY == _derive(settings.GRANTRY_ENCRYPTION_KEY)
    assert settings.CRYPTOGRAPHY_KEY != _derive(settings.SECRET_KEY)
