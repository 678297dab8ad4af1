"""Production settings refuse to start without secrets and pass `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _manage(*args: str, var_dir: Path, **env_overrides: str) -> subprocess.CompletedProcess[str]:
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
            "DATABASE_URL",
        }
    }
    # Its own var directory: a developer's var/dev.env (from `make run`) must not leak in.
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "grantry.settings",
            "DEBUG": "0",
            "GRANTRY_VAR_DIR": str(var_dir),
            **env_overrides,
        }
    )
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
    "DATABASE_URL": "postgres://grantry@db.example.com:5432/grantry",
}


@pytest.mark.parametrize("missing", ["SECRET_KEY", "GRANTRY_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_a_secret(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in PROD.items() if k != missing}
    result = _manage("check", var_dir=tmp_path, **env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_manage_reads_the_dev_env_of_make_run_only_when_it_exists(tmp_path: Path) -> None:
    env = {k: v for k, v in PROD.items() if k not in {"SECRET_KEY", "GRANTRY_ENCRYPTION_KEY"}}
    assert "SECRET_KEY is not set" in _manage("check", var_dir=tmp_path, **env).stderr
    (tmp_path / "dev.env").write_text(
        "# written by make run\nSECRET_KEY=dev-from-file\nGRANTRY_ENCRYPTION_KEY=dev-enc\n"
    )
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        var_dir=tmp_path,
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "dev-from-file"
    # The environment wins over the file.
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        var_dir=tmp_path,
        **{**env, "SECRET_KEY": "from-env"},
    )
    assert result.stdout.strip().splitlines()[-1] == "from-env"


def test_database_url_is_required_and_must_be_postgresql(tmp_path: Path) -> None:
    env = {k: v for k, v in PROD.items() if k != "DATABASE_URL"}
    result = _manage("check", var_dir=tmp_path, **env)
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    result = _manage("check", var_dir=tmp_path, **env, DATABASE_URL="sqlite:////tmp/x.sqlite3")
    assert result.returncode != 0
    assert "must point at PostgreSQL" in result.stderr


def test_check_deploy_is_clean_under_production_settings(tmp_path: Path) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", var_dir=tmp_path, **PROD)
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


def test_encryption_key_is_derived_from_grantry_key_never_from_secret_key() -> None:
    from django.conf import settings

    assert _derive(settings.GRANTRY_ENCRYPTION_KEY) == settings.CRYPTOGRAPHY_KEY
    assert _derive(settings.SECRET_KEY) != settings.CRYPTOGRAPHY_KEY
