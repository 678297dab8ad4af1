"""The trail: append-only audit events, hash-chained per organization."""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from django.conf import settings
from django.db import models
from django_cryptography.fields import encrypt

from apps.core.models import TenantModel, TenantQuerySet, organization_key


class AuditImmutableError(RuntimeError):
    """Audit events are never updated or deleted."""


class ActorType(models.TextChoices):
    USER = "user", "User"
    WORKER = "worker", "Worker"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
    ERROR = "error", "Error"
    # A call whose rule needs a person's approval: waiting for it (202), or refused by
    # the approval check (the approval already used, expired, for another input …).
    # Neither is a denial by the role.
    PENDING = "pending", "Waiting for approval"
    REFUSED = "refused", "Approval refused"


class Decision(models.TextChoices):
    NONE = "", "—"
    ALLOWED = "allowed", "Allowed"
    DENIED = "denied", "Denied"
    # The role allows the call with a person's approval: not yet given (or not usable
    # for this call), and given (the call ran on it).
    APPROVAL = "approval", "Needs approval"
    APPROVED = "approved", "Approved"


class AuditEventQuerySet(TenantQuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit events cannot be updated.")

    def delete(self) -> NoReturn:
        raise AuditImmutableError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """One event of the trail.

    These fields, in this order, are the one list of audit fields: the append
    inserts them, the content digest covers them, and exports (CSV header and
    JSON keys are the column names), the API and the SIEM stream carry them; all
    read the list through `apps.audit.fields`. Adding a column is one line here
    plus a migration (it must default to null, "" or {}, see `apps.audit.chain`);
    the Django-free `apps.audit.offline` also names it, and a test says where."""

    created_at = models.DateTimeField(editable=False)
    organization = models.ForeignKey(
        "organizations.Organization",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        # audit_org_id (organization, -id) serves every organization lookup; a
        # separate single-column index would only slow down appends.
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    # Which chain and where in it (see apps.audit.chain).
    chain_key = models.CharField(max_length=40, editable=False)
    seq = models.BigIntegerField(editable=False)
    action = models.CharField(max_length=100)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    # Broker calls: denormalised so reviewers can filter without joins.
    decision = models.CharField(max_length=8, choices=Decision.choices, blank=True, default="")
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    worker_id = models.BigIntegerField(null=True, blank=True)
    token_id = models.CharField(max_length=32, blank=True)
    connection_id = models.BigIntegerField(null=True, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # A worker acting for a member ("Alice's coding agent"): the member, the second
    # principal of the event beside the worker (by user id and email). Added later, so
    # hashed only when set (apps.audit.chain.LATER_FIELDS).
    on_behalf_of_id = models.BigIntegerField(null=True, blank=True)
    on_behalf_of_label = models.CharField(max_length=200, blank=True, default="")
    # The link itself: hash = sha256("<prev_hash>:<seq>:<content digest>").
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    # Every field above is exported and, but for these, hashed. The row id and the
    # chain link are not content: the digest cannot cover the hash it is part of.
    UNHASHED_FIELDS: ClassVar[tuple[str, ...]] = ("id", "seq", "prev_hash", "hash")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # The table is partitioned by month (migration 0010), so its unique keys carry
        # the partition key: a chain's seq is unique by construction (the append moves
        # the chain's head in the same statement) and audit_verify refuses a duplicate.
        constraints = [
            models.UniqueConstraint(
                fields=["chain_key", "seq", "created_at"], name="audit_chain_seq_unique"
            )
        ]
        # Each index serves one dashboard/API filter and keeps keyset pages
        # (ORDER BY id DESC LIMIT n) an index walk; measured with
        # scripts/bench_audit.py (figures in the README). Filters without an
        # index (member actor, provider, upstream status, free text) are
        # walked through audit_org_id and are bounded by the time range.
        indexes = [
            # Default browse and every keyset page without a narrower filter.
            models.Index(fields=["organization", "-id"], name="audit_org_id"),
            # Action exact or prefix ("token.%": C collation lets LIKE use it).
            models.Index(fields=["organization", "action", "-id"], name="audit_org_action_id"),
            # "This worker's calls": most events of a busy org are some other worker's.
            models.Index(
                fields=["organization", "worker_id", "-id"],
                name="audit_org_worker_id",
                condition=models.Q(worker_id__isnull=False),
            ),
            # Denials are rare, so "decision=denied" must not scan all allowed calls.
            models.Index(
                fields=["organization", "decision", "-id"],
                name="audit_org_decision_id",
                condition=~models.Q(decision=""),
            ),
            # "What did this member do": people's events are a small share of a
            # busy org's (measured: 67 ms p95 walking the pkey at 10M events).
            models.Index(
                fields=["organization", "actor_id", "-id"],
                name="audit_org_user_id",
                condition=models.Q(actor_type="user"),
            ),
            # Time range filters and the charts' bounded window.
            models.Index(fields=["organization", "created_at"], name="audit_org_created"),
            # "What was done on Alice's behalf": a small share of a busy org's events.
            models.Index(
                fields=["organization", "on_behalf_of_id", "-id"],
                name="audit_org_on_behalf_of_id",
                condition=models.Q(on_behalf_of_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutableError("Audit events cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit events cannot be deleted.")


class AuditChainHead(models.Model):
    """The last link of one chain; its row lock serialises writers of that chain."""

    chain_key = models.CharField(max_length=40, primary_key=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.chain_key}@{self.seq}"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Ready"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class AuditExportQuerySet(TenantQuerySet["AuditExport"]):
    def expired(self, *, now: Any) -> AuditExportQuerySet:
        return self.filter(expires_at__lte=now).exclude(status=ExportStatus.EXPIRED)


class AuditExport(TenantModel):
    """A large export, written by a Celery job into default storage."""

    organization = organization_key(related_name="audit_exports")
    created_by = None  # `requested_by` is who created it
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    filter = models.JSONField(default=dict, blank=True)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    # With chain links on every row and a signed checkpoint (apps.audit.proof).
    proof = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(default=0)
    file_path = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=300, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = AuditExportQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Audit export {self.pk} ({self.format}, {self.status})"

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.status == ExportStatus.DONE else 0
        return min(100, int(self.rows_done * 100 / self.rows_total))

    def is_downloadable(self) -> bool:
        return self.status == ExportStatus.DONE and bool(self.file_path)


class AuditSigningKeypair(models.Model):
    """The Ed25519 key pair that signs an organization's export checkpoints.

    Generated on first use. The private key is an encrypted field (the same key
    ring as connection secrets) and is read only by `apps.audit.signing`; the
    public key is public by design (Settings page, /.well-known/). One key has no
    organization: the installation's, which signs the archives of the global chain
    (events of no organization, apps.audit.services.archive)."""

    organization = models.OneToOneField(
        "organizations.Organization",
        on_delete=models.CASCADE,
        related_name="audit_signing_key",
        null=True,
        blank=True,
    )
    key_id = models.CharField(max_length=32, unique=True, editable=False)
    public_key = models.CharField(max_length=64, editable=False)  # raw 32 bytes, base64
    private_key = encrypt(models.TextField(editable=False))  # raw 32 bytes, base64
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One key per organization, and one installation key (organization NULL).
            models.UniqueConstraint(
                fields=["organization"], nulls_distinct=False, name="audit_one_key_per_owner"
            )
        ]

    def __str__(self) -> str:
        return f"Audit signing key {self.key_id}"

    def __repr__(self) -> str:
        return f"<AuditSigningKeypair {self.key_id} org={self.organization_id}>"


class SinkKind(models.TextChoices):
    WEBHOOK = "webhook", "HTTPS webhook"
    SYSLOG = "syslog", "Syslog (RFC 5424 over TCP with TLS)"


class SinkFormat(models.TextChoices):
    JSONL = "jsonl", "JSON lines, HMAC-SHA256 signed"
    SPLUNK_HEC = "splunk_hec", "Splunk HTTP Event Collector"
    DATADOG = "datadog", "Datadog logs intake"


class SinkStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DEAD_LETTER = "dead_letter", "Stopped (dead letter)"


class AuditSink(TenantModel):
    """Somewhere an organization's trail is streamed to (apps.audit.sinks).

    Delivery is at-least-once from `cursor` ({chain_key: last delivered seq}),
    each chain in seq order. `secret` (the HMAC key or the SIEM's token) is an
    encrypted field read only by apps.audit.sinks."""

    organization = organization_key(related_name="audit_sinks")
    created_by = None  # who added a sink is in the trail (`audit.sink_created`)
    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=8, choices=SinkKind.choices)
    format = models.CharField(max_length=12, choices=SinkFormat.choices, default=SinkFormat.JSONL)
    url = models.URLField(max_length=500, blank=True)  # webhook
    host = models.CharField(max_length=253, blank=True)  # syslog
    port = models.PositiveIntegerField(null=True, blank=True)  # syslog
    # Extra CA certificates (PEM) to trust for this sink, e.g. a private SIEM CA.
    ca_pem = models.TextField(blank=True)
    secret = encrypt(models.TextField(blank=True, default=""))
    cursor = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=SinkStatus.choices, default=SinkStatus.ACTIVE)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    delivered = models.BigIntegerField(default=0)
    # When a signed checkpoint of the delivered heads was last published here.
    checkpoint_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_audit_sink_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def __repr__(self) -> str:
        return f"<AuditSink {self.pk} {self.kind} org={self.organization_id}>"

    @property
    def destination(self) -> str:
        return self.url if self.kind == SinkKind.WEBHOOK else f"{self.host}:{self.port}"


class AuditRetention(models.Model):
    """How many whole months an organization's events stay in the live table after
    their month ends (apps.audit.retention). No row: kept for ever."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="audit_retention"
    )
    months = models.PositiveSmallIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Audit retention {self.months} months"


class ArchiveStatus(models.TextChoices):
    RUNNING = "running", "Writing"
    VERIFIED = "verified", "Written and verified"
    FAILED = "failed", "Failed verification"


class AuditArchive(models.Model):
    """One organization's (or the global chain's) events of one month, written to the
    archive store as an export with proof and verified after writing
    (apps.audit.archive). `chains` is what the signed checkpoint lists for each chain:
    {chain_key: {"first_seq", "first_prev_hash", "last_seq", "last_hash", "count"}}."""

    organization = models.ForeignKey(
        "organizations.Organization",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,  # None: the global chain (events of no organization)
        blank=True,
        related_name="+",
    )
    month = models.DateField()  # the first day of the month (UTC)
    status = models.CharField(
        max_length=10, choices=ArchiveStatus.choices, default=ArchiveStatus.RUNNING
    )
    path = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    chains = models.JSONField(default=dict, blank=True)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # When the month's partition was detached and dropped (for every organization).
    dropped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["month", "organization_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "month"],
                name="audit_archive_org_month",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"Audit archive {self.month:%Y-%m} ({self.status})"

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.status == ArchiveStatus.VERIFIED else 0
        return min(100, int(self.rows_done * 100 / self.rows_total))
