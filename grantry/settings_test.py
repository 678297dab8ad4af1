"""Test override: PostgreSQL at DATABASE_URL when it answers, else the embedded
PostgreSQL of `make run`; Redis when it answers, else local memory.
`GRANTRY_REQUIRE_SERVICES=1` (CI) turns a missing service into a hard failure
instead of a fallback (tests/backends.py)."""

import os
from pathlib import Path

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("GRANTRY_ENCRYPTION_KEY", "test-encryption-key-not-for-production")
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault("GRANTRY_EGRESS_ALLOW_LOOPBACK", "1")
os.environ.setdefault("GRANTRY_SANDBOX_ENABLED", "1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/grantry")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# No statement timeout for the test run: creating and dropping the test database
# (a checkpoint) can outlast any short one on a loaded CI machine. The lock timeout
# stays on; apps/core/tests/test_db_timeouts.py checks the web defaults in a subprocess.
os.environ.setdefault("DB_STATEMENT_TIMEOUT_MS", "0")
# Property-based tests send hundreds of unauthenticated requests from one address in
# one window; the failed-authentication throttle has tests of its own, which lower
# these limits (apps/workers/tests/test_auth_failures.py).
os.environ.setdefault("GRANTRY_AUTH_FAILURES_PER_ADDRESS", "100000")
os.environ.setdefault("GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX", "100000")
# The same for client registrations: the MCP tests register many clients from 127.0.0.1
# in one run (the CI run hit the limit of 20); the limit's own test lowers it
# (apps/mcpauth/tests/test_authorization_server.py).
os.environ.setdefault("GRANTRY_MCP_DCR_PER_HOUR", "100000")

from tests.backends import probe_backends

_VAR_DIR = Path(os.environ.get("GRANTRY_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
BACKENDS = probe_backends(_VAR_DIR)
if BACKENDS.redis_url is None:
    os.environ["REDIS_URL"] = ""
os.environ["DATABASE_URL"] = BACKENDS.database_url
# Several test runs may share one PostgreSQL/Redis (parallel developers, CI):
# give each run its own queue and cache namespace.
# pytest-xdist workers inherit the parent's environment: add the worker name.
_RUN = os.environ.setdefault("GRANTRY_TEST_RUN_ID", str(os.getpid()))
_RUN += os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"grantry-test-{_RUN}"
os.environ["CACHE_KEY_PREFIX"] = f"grantry-test-{_RUN}"

from grantry.settings import *  # noqa: E402,F403 - the override: after the environment above
from grantry.settings import DATABASES, STORAGES  # noqa: E402 - as above

# A shorter send window keeps the revocations of tests quick (servers inherit it).
GRANTRY_SEND_WINDOW = float(os.environ.get("GRANTRY_SEND_WINDOW", "1.0"))

# No persistent connections in the test process; a test's server process may ask for
# production's (tests/test_revocation_fence.py).
# No pool either, unless a test's server process asks for one (GRANTRY_TEST_DB_POOL).
_POOL = int(os.environ.get("GRANTRY_TEST_DB_POOL", "0"))
if _POOL:
    DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _POOL, "timeout": 10.0}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"]["OPTIONS"].pop("pool", None)
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("GRANTRY_TEST_CONN_MAX_AGE", "0"))
DATABASES["default"]["TEST"] = {"NAME": f"test_grantry_{_RUN}"}
# A test's server process may name its connections, to count them in pg_stat_activity.
if os.environ.get("GRANTRY_TEST_DB_APPLICATION_NAME"):
    DATABASES["default"]["OPTIONS"]["application_name"] = os.environ[
        "GRANTRY_TEST_DB_APPLICATION_NAME"
    ]

if BACKENDS.redis_url is None:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SECURE_HSTS_SECONDS = 0
SECURE_SSL_REDIRECT = False
DEBUG = False
os.makedirs(STATIC_ROOT, exist_ok=True)  # noqa: F405 - whitenoise warns on a missing root
# The real MCP servers of the gateway tests, installed by `make mcp-servers` from
# tests/data/mcp-servers (an integrity-checked npm lock): nothing is fetched at run time.
GRANTRY_MCP_NPM_PREFIX = str(_VAR_DIR / "mcp-servers")
