"""Grantry settings: one module, driven by environment variables.

Development (`make run`) sets DEBUG=1, an embedded PostgreSQL (pgserver) and a
filesystem Celery broker, and writes them to var/dev.env for manage.py. With DEBUG
off nothing secret has a default: a missing SECRET_KEY or GRANTRY_ENCRYPTION_KEY
stops start-up.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("GRANTRY_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
DEBUG = env.bool("DEBUG", default=False)


def _required_secret(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Grantry refuses to start with DEBUG off and no {name}: "
        f"set it in the environment (see README, 'Configuration')."
    )


SECRET_KEY = _required_secret("SECRET_KEY", "dev-insecure-secret-key-only-for-make-run")
# The key that encrypts SaaS credentials at rest. Deliberately independent of
# SECRET_KEY, so rotating SECRET_KEY never makes a stored secret unreadable.
GRANTRY_ENCRYPTION_KEY = _required_secret(
    "GRANTRY_ENCRYPTION_KEY", "dev-insecure-encryption-key-only-for-make-run"
)
# django-cryptography would otherwise fall back to SECRET_KEY.
CRYPTOGRAPHY_KEY = GRANTRY_ENCRYPTION_KEY
CRYPTOGRAPHY_SALT = "grantry-custody"
# Previous values of GRANTRY_ENCRYPTION_KEY, still accepted for reading while
# `manage.py rotate_encryption_key` rewrites every secret under the current key.
GRANTRY_ENCRYPTION_OLD_KEYS = env.list("GRANTRY_ENCRYPTION_OLD_KEYS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
GRANTRY_BASE_URL = env.str("GRANTRY_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[GRANTRY_BASE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    # Grantry's own apps (see docs/architecture.md).
    "apps.core",
    "apps.accounts",
    "apps.organizations",
    "apps.audit",
    "apps.review",
    "apps.providers",
    "apps.connections",
    "apps.workers",
    "apps.policies",
    "apps.broker",
    "apps.approvals",
    "apps.dashboard",
    "apps.inventory",
    "apps.isolation",
    # django-oauth-toolkit serves two separate authorization servers: Grantry's own
    # for /mcp (apps.mcpauth) and, when enabled, the Sandbox's (apps.sandbox).
    "oauth2_provider",
    "apps.mcpauth",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The browser-only middleware (static files, CSP built per page, sessions,
    # APPEND_SLASH, users, messages, htmx) is skipped on the agent API; agent answers get a fixed
    # policy instead (apps/core/browser_middleware.py).
    "apps.core.browser_middleware.CSPMiddleware",
    "apps.core.browser_middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.QueryStringGateMiddleware",
    "apps.core.middleware.ServiceUnavailableMiddleware",
    "apps.workers.middleware.LeakedTokenMiddleware",
    "apps.core.browser_middleware.SessionMiddleware",
    "apps.core.browser_middleware.CommonMiddleware",
    # Django's own class: `check --deploy` looks for it by name (security.W003). Every
    # agent view is csrf_exempt, so on agent paths it only reads the absent cookie.
    "django.middleware.csrf.CsrfViewMiddleware",
    "apps.core.browser_middleware.AuthenticationMiddleware",
    "apps.core.middleware.AuditActorMiddleware",
    "apps.core.browser_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.core.browser_middleware.HtmxMiddleware",
]

# `make run` (DEBUG) answers 404 and 500 with Grantry's pages like production;
# GRANTRY_TECHNICAL_ERROR_PAGES=1 brings back Django's technical pages for debugging.
if DEBUG and not env.bool("GRANTRY_TECHNICAL_ERROR_PAGES", default=False):
    MIDDLEWARE.insert(
        MIDDLEWARE.index("apps.core.middleware.RequestIdMiddleware") + 1,
        "apps.core.middleware.ProductErrorPagesMiddleware",
    )

ROOT_URLCONF = "grantry.urls"
WSGI_APPLICATION = "grantry.wsgi.application"
ASGI_APPLICATION = "grantry.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.organizations.context_processors.current_organization",
            ],
        },
    },
]

if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Grantry runs on PostgreSQL only: set DATABASE_URL, or use "
        "`make run` / `make manage ARGS=...`, which start the embedded PostgreSQL (README)."
    )
DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...).")
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Web requests give up on a statement after DB_STATEMENT_TIMEOUT_MS and on a lock wait
# after DB_LOCK_TIMEOUT_MS (0 = never), so a locked table answers 503 instead of tying
# up every web worker. Celery workers and management commands (other than runserver)
# use the DB_BACKGROUND_* values instead (apps/core/db.py; manage.py, grantry/celery.py).
DB_STATEMENT_TIMEOUT_MS = env.int("DB_STATEMENT_TIMEOUT_MS", default=5000)
DB_LOCK_TIMEOUT_MS = env.int("DB_LOCK_TIMEOUT_MS", default=3000)
DB_BACKGROUND_STATEMENT_TIMEOUT_MS = env.int("DB_BACKGROUND_STATEMENT_TIMEOUT_MS", default=0)
DB_BACKGROUND_LOCK_TIMEOUT_MS = env.int("DB_BACKGROUND_LOCK_TIMEOUT_MS", default=60_000)
from apps.core.db import timeout_options  # noqa: E402 - needs the values above

DATABASES["default"].setdefault("OPTIONS", {})["options"] = timeout_options(
    background=env.str("GRANTRY_DB_TIMEOUTS", default="web") == "background",
    statement_ms=DB_STATEMENT_TIMEOUT_MS,
    lock_ms=DB_LOCK_TIMEOUT_MS,
    background_statement_ms=DB_BACKGROUND_STATEMENT_TIMEOUT_MS,
    background_lock_ms=DB_BACKGROUND_LOCK_TIMEOUT_MS,
)
# A database that does not answer at all (a host gone, a dropped route) fails a new
# connection after this many seconds (503 database_unavailable), not the OS's minutes.
DATABASES["default"]["OPTIONS"].setdefault(
    "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
)
# Django's psycopg connection pool, per process: a web process uses at most this many
# PostgreSQL connections however many calls wait on upstreams (the broker gives its
# connection back before the upstream wait: apps.core.db.connections_release). 0 turns
# it off (then CONN_MAX_AGE keeps one persistent connection per thread, as behind
# PgBouncer). Pooling replaces persistent connections (CONN_MAX_AGE is 0 with it).
# DB_POOL_TIMEOUT: how long a request waits for a free connection before it fails (503).
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=4)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": min(2, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis keeps one connection pool per process and server, shared by
            # every thread (Django's own RedisCache builds a client per operation).
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="grantry"),
            # A Redis that does not answer fails the check in seconds (503
            # cache_unavailable), not after the OS's TCP timeout.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "media")},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
    # Audit months that leave the live table, as exports with proof (apps/audit/archives.py):
    # a directory by default, an S3-compatible bucket (django-storages) when a bucket is set.
    # S3 credentials come from boto3's own places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    # a profile or an instance role), never from a Grantry setting.
    "audit_archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": env.str(
                "GRANTRY_AUDIT_ARCHIVE_DIR", default=str(VAR_DIR / "audit-archive")
            ),
            "file_permissions_mode": 0o440,
        },
    },
}
if env.str("GRANTRY_AUDIT_ARCHIVE_S3_BUCKET", default=""):
    STORAGES["audit_archive"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("GRANTRY_AUDIT_ARCHIVE_S3_BUCKET"),
            "location": env.str("GRANTRY_AUDIT_ARCHIVE_S3_PREFIX", default="grantry"),
            "endpoint_url": env.str("GRANTRY_AUDIT_ARCHIVE_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("GRANTRY_AUDIT_ARCHIVE_S3_REGION", default="") or None,
            "addressing_style": env.str("GRANTRY_AUDIT_ARCHIVE_S3_ADDRESSING", default="") or None,
            # An archive is written once; a second file of the same name gets a new name.
            "file_overwrite": False,
        },
    }

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "account_login"

# --- Email -----------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Grantry <noreply@grantry.local>")

# --- django-allauth ----------------------------------------------------------
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = False
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
ACCOUNT_FORMS = {"signup": "apps.accounts.forms.SignupForm"}
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_TOTP_ISSUER = "Grantry"
# Passkeys (WebAuthn through fido2): sign in with a passkey alone, or add one as a second
# factor next to TOTP. Browsers allow WebAuthn only on https (and http://localhost).
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = env.bool("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", default=DEBUG)

# --- Django REST framework ---------------------------------------------------
REST_FRAMEWORK = {
    # Personal API tokens first so a request with no credentials gets 401 +
    # WWW-Authenticate (DRF takes the header from the first class). Worker tokens
    # are accepted only by the agent views, which set their own class.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.auth.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser behind the one JSON gate (apps.core.json_input).
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Grantry API",
    "DESCRIPTION": "Agent broker API and management API. Errors share one JSON shape.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets that share a field name get their own schema names.
    "ENUM_NAME_OVERRIDES": {
        "ExportFormatEnum": "apps.audit.models.ExportFormat",
        "SinkFormatEnum": "apps.audit.models.SinkFormat",
        "SinkKindEnum": "apps.audit.models.SinkKind",
        "RuleKindEnum": "apps.policies.models.RuleKind",
        "ApprovalKindEnum": "apps.approvals.models.ApprovalKind",
        "McpRegistrationEnum": "oauth2_provider.models.Application.RegistrationSource",
    },
}

# --- Celery ------------------------------------------------------------------
# With no REDIS_URL (make run) Celery uses kombu's filesystem transport: real
# background workers and beat, no external service.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery-queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "store_processed": False,
        # kombu's broadcast (pidbox) files: default ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery-control"),
    }
else:
    # Redis: a task taken by a worker that dies (kill -9, OOM) goes back to the queue
    # after this many seconds (kombu's default is an hour). Longer than the longest
    # task (CELERY_TASK_TIME_LIMIT) and retry countdown (600 s), so no live task is
    # handed out twice; tasks are safe to run twice anyway (docs/operations.md).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=660)
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="grantry")
CELERY_TASK_ALWAYS_EAGER = False
# grantry/scheduler_lock.py: a standby beat takes over within this many seconds.
GRANTRY_BEAT_LOCK_SECONDS = env.float("GRANTRY_BEAT_LOCK_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
# Proves scheduler → broker → worker is alive; /healthz reports its age (apps.core.tasks).
CELERY_BEAT_SCHEDULE["core-heartbeat"] = {
    "task": "core.heartbeat",
    "schedule": env.float("GRANTRY_HEARTBEAT_SECONDS", default=60.0),
}
# Finished audit exports expire: their files are deleted (apps.audit.tasks).
CELERY_BEAT_SCHEDULE["audit-expire-exports"] = {
    "task": "audit.expire_exports",
    "schedule": 15 * 60,
}
# SIEM sinks: deliver what each active sink has not received yet (apps.audit.tasks).
CELERY_BEAT_SCHEDULE["audit-deliver-sinks"] = {
    "task": "audit.deliver_sinks",
    "schedule": env.float("GRANTRY_AUDIT_SINK_SECONDS", default=10.0),
}
# Connections: refresh OAuth tokens that expire soon or sit idle (apps.connections.tasks).
CELERY_BEAT_SCHEDULE["connections-refresh-due"] = {
    "task": "connections.refresh_due_connections",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["connections-purge-oauth-states"] = {
    "task": "connections.purge_oauth_states",
    "schedule": 3600.0,
}
# MCP gateway: read every active upstream MCP server's tools again (new, changed and
# removed tools are recorded and audited; a changed tool is refused until approved).
CELERY_BEAT_SCHEDULE["connections-refresh-mcp-tools"] = {
    "task": "connections.refresh_mcp_tools",
    "schedule": env.float("GRANTRY_MCP_TOOLS_REFRESH_SECONDS", default=600.0),
}
# Workers: email org admins once per token that expires within 7 days (apps.workers.tasks).
CELERY_BEAT_SCHEDULE["workers-warn-expiring-tokens"] = {
    "task": "workers.warn_expiring_tokens",
    "schedule": 24 * 60 * 60.0,
}
# Approvals: expire pending and unused approvals past their expiry, audited (apps.approvals).
CELERY_BEAT_SCHEDULE["approvals-expire-due"] = {
    "task": "approvals.expire_due",
    "schedule": 60.0,
}
# MCP OAuth: delete dynamically registered clients that were never used (apps.mcpauth).
CELERY_BEAT_SCHEDULE["mcpauth-expire-unused-clients"] = {
    "task": "mcpauth.expire_unused_clients",
    "schedule": 3600.0,
}
# Workers: sum up each closed window of failed authentications in one audit event.
CELERY_BEAT_SCHEDULE["workers-flush-auth-failures"] = {
    "task": "workers.flush_auth_failures",
    "schedule": 60.0,
}
# OpenAPI imports: end jobs whose worker was lost; delete them a day after their last change.
CELERY_BEAT_SCHEDULE["providers-sweep-openapi-imports"] = {
    "task": "providers.sweep_openapi_imports",
    "schedule": 300.0,
}
# Audit partitions and retention (apps.audit.services.archive): create months ahead,
# archive every organization-month past its retention, drop the months that may go.
CELERY_BEAT_SCHEDULE["audit-archive-due"] = {
    "task": "audit.archive_due",
    "schedule": env.float("GRANTRY_AUDIT_ARCHIVE_SECONDS", default=3600.0),
}
CELERY_TIMEZONE = "UTC"

# --- Grantry ----------------------------------------------------------------
# GET /metrics (grantry/metrics.py): off (404) unless set; then `Authorization: Bearer <it>`.
GRANTRY_METRICS_TOKEN = env.str("GRANTRY_METRICS_TOKEN", default="")
# Outbound HTTP may reach loopback only when this is on (development, tests).
GRANTRY_EGRESS_ALLOW_LOOPBACK = env.bool("GRANTRY_EGRESS_ALLOW_LOOPBACK", default=DEBUG)
GRANTRY_EGRESS_TIMEOUT = env.float("GRANTRY_EGRESS_TIMEOUT", default=15.0)
# Exact revocation (apps/workers/fence.py): a call may write its upstream request only
# within this many seconds after it began its attempt statement, and a revocation of a
# worker with a recent attempt returns this long after its commit. Every process must
# use the same value. The margin covers the web processes' clocks against the
# database's (they must agree within it).
GRANTRY_SEND_WINDOW = env.float("GRANTRY_SEND_WINDOW", default=2.0)
GRANTRY_SEND_WINDOW_MARGIN = env.float("GRANTRY_SEND_WINDOW_MARGIN", default=1.0)
# How long a web process keeps a connection's credential it decrypted for a call, keyed by
# the stored ciphertext (apps/connections/custody.py: a changed secret never matches);
# 0 decrypts on every call. Bounds how long an unused plaintext stays in memory.
GRANTRY_CREDENTIAL_CACHE_SECONDS = env.float("GRANTRY_CREDENTIAL_CACHE_SECONDS", default=60.0)
# A call's outcome event that fails to write after the upstream answered is tried again
# for this long (apps/broker/pipeline/steps.py), then the answer is withheld (502).
GRANTRY_AUDIT_OUTCOME_RETRY_SECONDS = env.float("GRANTRY_AUDIT_OUTCOME_RETRY_SECONDS", default=10.0)
GRANTRY_EGRESS_MAX_RESPONSE_BYTES = env.int("GRANTRY_EGRESS_MAX_RESPONSE_BYTES", default=5_000_000)
# OpenAPI import (apps.providers.openapi): the largest document, the most operations drafted
# at once, and the bounds of each reading in its child process (wall and CPU seconds, memory).
GRANTRY_OPENAPI_MAX_BYTES = env.int("GRANTRY_OPENAPI_MAX_BYTES", default=16_000_000)
GRANTRY_OPENAPI_MAX_OPERATIONS = env.int("GRANTRY_OPENAPI_MAX_OPERATIONS", default=100)
GRANTRY_OPENAPI_TIME_LIMIT = env.int("GRANTRY_OPENAPI_TIME_LIMIT", default=60)
GRANTRY_OPENAPI_MEMORY_MB = env.int("GRANTRY_OPENAPI_MEMORY_MB", default=1024)
# The MCP gateway (apps/connections/mcp, apps/isolation): upstream MCP servers fronted as
# connections. A whole upstream exchange (a tools/list walk, a tools/call) ends by this
# many seconds; a list of more tools than the cap is refused; an upstream's tool list
# is read again before a call once it is older than GRANTRY_MCP_TOOLS_MAX_AGE seconds
# (a changed definition is then blocked before the call); idle upstream sessions close.
GRANTRY_MCP_CALL_TIMEOUT = env.float("GRANTRY_MCP_CALL_TIMEOUT", default=30.0)
GRANTRY_MCP_MAX_TOOLS = env.int("GRANTRY_MCP_MAX_TOOLS", default=500)
GRANTRY_MCP_TOOLS_MAX_AGE = env.float("GRANTRY_MCP_TOOLS_MAX_AGE", default=60.0)
GRANTRY_MCP_SESSION_IDLE_SECONDS = env.float("GRANTRY_MCP_SESSION_IDLE_SECONDS", default=300.0)
# stdio servers: pinned npm packages installed under this prefix (manage.py mcp_install),
# run by node under bubblewrap with these limits (apps/isolation/sandbox.py says what
# they prevent and what they do not).
GRANTRY_MCP_NPM_PREFIX = env.str("GRANTRY_MCP_NPM_PREFIX", default=str(VAR_DIR / "mcp-packages"))
GRANTRY_MCP_STDIO_BWRAP = env.str("GRANTRY_MCP_STDIO_BWRAP", default="/usr/bin/bwrap")
GRANTRY_MCP_STDIO_NODE = env.str("GRANTRY_MCP_STDIO_NODE", default="/usr/bin/node")
GRANTRY_MCP_STDIO_MEMORY_MB = env.int("GRANTRY_MCP_STDIO_MEMORY_MB", default=2560)
GRANTRY_MCP_STDIO_HEAP_MB = env.int("GRANTRY_MCP_STDIO_HEAP_MB", default=256)
GRANTRY_MCP_STDIO_CPU_SECONDS = env.int("GRANTRY_MCP_STDIO_CPU_SECONDS", default=300)
GRANTRY_MCP_STDIO_TMP_MB = env.int("GRANTRY_MCP_STDIO_TMP_MB", default=64)
# Audit exports with more rows than this run as a Celery job; their files live this long.
GRANTRY_AUDIT_EXPORT_ASYNC_THRESHOLD = env.int(
    "GRANTRY_AUDIT_EXPORT_ASYNC_THRESHOLD", default=100_000
)
GRANTRY_AUDIT_EXPORT_TTL_HOURS = env.int("GRANTRY_AUDIT_EXPORT_TTL_HOURS", default=24)
# Each organization's trail is up to this many hash chains: an append takes any chain
# that no other transaction is writing, so appends of one organization don't queue on
# one lock (apps/audit/services.py). Lowering it later is safe; old chains stay verifiable.
GRANTRY_AUDIT_CHAIN_SHARDS = env.int("GRANTRY_AUDIT_CHAIN_SHARDS", default=16)
# The audit table is partitioned by month (apps/audit/partitions.py): the scheduler keeps
# this many months ahead created; see docs/operations.md "Audit retention and archives".
GRANTRY_AUDIT_PARTITIONS_AHEAD = env.int("GRANTRY_AUDIT_PARTITIONS_AHEAD", default=3)
# Retention of the global chain (events of no organization), in whole months; 0: for ever,
# and then a month holding any global event is never dropped.
GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS = env.int("GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS", default=0)
# The shortest audit retention any organization (and the global chain) may have, in whole
# months; 0: no floor beyond 1. A retention stored below it counts as the floor, so an
# organization administrator (or a stolen admin session) cannot cut the trail short.
GRANTRY_AUDIT_MIN_RETENTION_MONTHS = env.int("GRANTRY_AUDIT_MIN_RETENTION_MONTHS", default=0)
# Provider URL overrides (apps/providers/registry.py): "key" sets the API base URL and
# "key.field" one other URL, e.g. GRANTRY_PROVIDER_URLS="github=https://ghe.example.com/api/v3,
# github.token_url=https://ghe.example.com/login/oauth/access_token" (one line, no spaces).
GRANTRY_PROVIDER_URLS = env.dict("GRANTRY_PROVIDER_URLS", default={})
# Failed token authentication (apps/accounts/auth_failures.py): per window, this many
# failures from one address or with one token prefix, then 429 until the window ends.
GRANTRY_AUTH_FAILURE_WINDOW_SECONDS = env.int("GRANTRY_AUTH_FAILURE_WINDOW_SECONDS", default=60)
GRANTRY_AUTH_FAILURES_PER_ADDRESS = env.int("GRANTRY_AUTH_FAILURES_PER_ADDRESS", default=30)
GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX = env.int(
    "GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX", default=10
)
# The first failures of a kind in a window are audited one by one; the rest in one summary.
GRANTRY_AUTH_FAILURES_AUDITED_PER_WINDOW = env.int(
    "GRANTRY_AUTH_FAILURES_AUDITED_PER_WINDOW", default=5
)
# Connections: refresh this long before expiry; exercise refresh tokens idle this many days.
GRANTRY_REFRESH_AHEAD_SECONDS = env.int("GRANTRY_REFRESH_AHEAD_SECONDS", default=600)
GRANTRY_REFRESH_KEEPALIVE_DAYS = env.int("GRANTRY_REFRESH_KEEPALIVE_DAYS", default=7)
# Where the Sandbox provider's OAuth server and API live (tests point it at live_server).
GRANTRY_SANDBOX_URL = env.str("GRANTRY_SANDBOX_URL", default=f"{GRANTRY_BASE_URL}/sandbox")
# The offline Sandbox SaaS (an OAuth server and a tiny API) used by the demo and tests.
# Production deployments do not install it at all.
GRANTRY_SANDBOX_ENABLED = env.bool("GRANTRY_SANDBOX_ENABLED", default=DEBUG)
if GRANTRY_SANDBOX_ENABLED:
    INSTALLED_APPS += ["apps.sandbox"]

# Private-use redirect URI schemes (RFC 8252) that MCP clients of Grantry's
# authorization server may register besides https and http on loopback (Cursor).
GRANTRY_MCP_REDIRECT_SCHEMES = env.list("GRANTRY_MCP_REDIRECT_SCHEMES", default=["cursor"])

OAUTH2_PROVIDER = {
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 60 * 60 * 24 * 30,
    # "mcp" is Grantry's own (apps.mcpauth); the scopes backend offers each application
    # only its own server's scopes.
    "SCOPES_BACKEND_CLASS": "apps.mcpauth.scopes.SeparateScopes",
    "SCOPES": {
        "read": "Read projects and tasks",
        "write": "Create and change tasks",
        "mcp": "Act as one Grantry worker over MCP",
    },
    "DEFAULT_SCOPES": ["read"],
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https", *GRANTRY_MCP_REDIRECT_SCHEMES],
    # The Sandbox accepts only S256 PKCE and advertises only what it serves (RFC 8414).
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    # RFC 9207: the authorization response carries `iss`, so clients can check it.
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    # RFC 9700: bearer tokens only in the Authorization header; access and refresh tokens
    # stored as checksums, never in plaintext (an MCP access token is a gry_ worker token);
    # a replayed refresh token revokes its whole family (Grantry's validator also audits it).
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    # Grantry's MCP authorization server (apps.mcpauth) accepts Client ID Metadata
    # Documents, fetched through Grantry's egress. Only Grantry's /oauth/ views resolve
    # them (the permission class); the Sandbox's validator refuses such clients.
    "CIMD_ENABLED": True,
    "CIMD_METADATA_FETCHER": "apps.mcpauth.cimd.EgressMetadataFetcher",
    "CIMD_REGISTRATION_PERMISSION_CLASSES": ("apps.mcpauth.cimd.GrantryCIMDPermission",),
    "CIMD_MAX_DOCUMENT_SIZE": 16 * 1024,
    "CIMD_FETCH_TIMEOUT_SECONDS": 5,
}
# DOT's own models (named so that apps.mcpauth's foreign key can depend on them).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
# RFC 9700 W008 ("http redirect URIs are allowed"): http stays for RFC 8252 loopback
# callbacks of native MCP clients (Claude Desktop, Cursor, the Python client) and the
# Sandbox's dev callback; Grantry's validator (apps.mcpauth.validator) refuses http to
# any host but a loopback one, which apps/mcpauth/tests test.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
if GRANTRY_SANDBOX_ENABLED:
    # DOT's default validator serves only the Sandbox's own applications and tokens;
    # Grantry's /oauth/ views name their own (apps.mcpauth.validator).
    OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"] = "apps.sandbox.validators.SandboxValidator"
# Grantry's MCP authorization server (apps.mcpauth).
GRANTRY_MCP_TOKEN_SECONDS = env.int("GRANTRY_MCP_TOKEN_SECONDS", default=3600)
# Workload identity (RFC 8693 token exchange, apps/mcpauth/exchange.py): how long an outside
# issuer's keys are cached, how often an unknown key id may fetch them again (rotation), the
# deadline of each fetch, and how far ahead a subject token may expire (its `jti` is kept
# that long to refuse a replay).
GRANTRY_OIDC_JWKS_SECONDS = env.int("GRANTRY_OIDC_JWKS_SECONDS", default=600)
GRANTRY_OIDC_JWKS_REFETCH_SECONDS = env.int("GRANTRY_OIDC_JWKS_REFETCH_SECONDS", default=30)
GRANTRY_OIDC_FETCH_TIMEOUT = env.float("GRANTRY_OIDC_FETCH_TIMEOUT", default=5.0)
GRANTRY_EXCHANGE_MAX_SUBJECT_HOURS = env.int("GRANTRY_EXCHANGE_MAX_SUBJECT_HOURS", default=24)
# DPoP (RFC 9449, apps/workers/dpop.py): a proof's `iat` may be this many seconds from the
# server's clock either way; its `jti` is remembered (shared cache) for twice that.
GRANTRY_DPOP_PROOF_SECONDS = env.int("GRANTRY_DPOP_PROOF_SECONDS", default=60)
# Agent long polls (GET /api/v1/approvals/<id>?wait=N) that may wait at once in one web
# process, and with one token; any other poll answers at once (apps/approvals/long_poll.py).
GRANTRY_LONG_POLLS_PER_PROCESS = env.int(
    "GRANTRY_LONG_POLLS_PER_PROCESS", default=max(1, env.int("WEB_THREADS", default=32) // 2)
)
GRANTRY_LONG_POLLS_PER_TOKEN = env.int("GRANTRY_LONG_POLLS_PER_TOKEN", default=2)
GRANTRY_MCP_DCR_PER_HOUR = env.int("GRANTRY_MCP_DCR_PER_HOUR", default=20)
# A dynamically registered client that never completes a grant is deleted after this long.
GRANTRY_MCP_DCR_UNUSED_HOURS = env.int("GRANTRY_MCP_DCR_UNUSED_HOURS", default=24)
# Redirect URIs one dynamically registered client may have (RFC 7591 sets no limit;
# thousands would make every authorization request's lookup and the consent page slow).
GRANTRY_MCP_DCR_MAX_REDIRECT_URIS = env.int("GRANTRY_MCP_DCR_MAX_REDIRECT_URIS", default=10)

# --- Security ----------------------------------------------------------------
# Content-Security-Policy on every response (django-csp): only this origin's own
# files; no inline script or style, no eval, no plugins, never inside a frame.
# Templates keep behaviour in static/js/ and styles in static/css/. The API docs
# get their own policy (grantry/urls.py, apps/core/csp.py). form-action is left
# open on purpose: connecting an OAuth provider submits a form that redirects to it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "apps.core.logging.RequestIdFilter"},
        "client_error_without_traceback": {"()": "apps.core.logging.ClientErrorWithoutTraceback"},
    },
    "formatters": {
        # Control characters escaped, tracebacks indented: no log line can be forged
        # (apps/core/safe_log.py; granian's logs use it too, grantry/granian-logging.json).
        "plain": {
            "()": "apps.core.safe_log.SafeFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        # LOG_FORMAT=json: one JSON object per line (python-json-logger), for a log
        # pipeline; JSON's own escaping keeps every record on one line.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # One handler for everything (Django's default adds a second console handler).
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["client_error_without_traceback"]},
        # The embedded PostgreSQL of make run / make test logs every pg_ctl call at INFO.
        "pgserver": {"level": "WARNING"},
        # The MCP gateway's HTTP client logs every request's URL at INFO, and a URL may
        # carry a credential in its query; the SDK logs session ids. Warnings only.
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
    },
}
