"""Custody of the audit signing keys: the ONLY module that reads a private key.

Each organization has one Ed25519 key, generated on first use, that signs the
checkpoints of its exports (`apps.audit.proof`); the installation has one more (of no
organization) for the global chain's archives. `AuditSigningKeypair.private_key`
is an encrypted field under the same key ring as connection secrets; it is
read here, used, and never returned, logged or put in an exception message.
The public key is public by design: the Settings page shows it and
/.well-known/grantry-audit-keys/<key_id> serves it."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import IntegrityError, transaction

from apps.audit.models import AuditSigningKeypair
from apps.audit.writer import audit_record


def key_id_for(public_raw: bytes) -> str:
    """The key's name in checkpoints and URLs: the start of sha256(public key)."""
    return hashlib.sha256(public_raw).hexdigest()[:32]


def signing_key(organization: Any) -> AuditSigningKeypair:
    """The organization's key, created (and audited) on first use. The returned
    row has its private key deferred: nothing outside this module loads it.
    `organization=None`: the installation's key, for the global chain's archives."""
    key = public_key_row(organization)
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    private_raw = private.private_bytes(
        encoding=serialization.Encoding.Raw,
        format=serialization.PrivateFormat.Raw,
        encryption_algorithm=serialization.NoEncryption(),
    )
    try:
        with transaction.atomic():
            created = AuditSigningKeypair.objects.create(
                organization=organization,
                key_id=key_id_for(public_raw),
                public_key=base64.b64encode(public_raw).decode(),
                private_key=base64.b64encode(private_raw).decode(),
            )
            audit_record(
                action="audit.signing_key_created",
                organization=organization,
                target_type="audit_signing_key",
                target_id=created.key_id,
                target_label=f"Ed25519 {created.key_id}",
                metadata={"key_id": created.key_id, "public_key": created.public_key},
            )
    except IntegrityError:
        pass  # another process created it first: use theirs
    key = public_key_row(organization)
    assert key is not None
    return key


def public_key_row(organization: Any) -> AuditSigningKeypair | None:
    """The organization's key with its private half deferred, or None before its first
    signature (the Settings page and the upload check read this, never create a key)."""
    return (
        AuditSigningKeypair.objects.filter(organization=organization).defer("private_key").first()
    )


def public_key_by_id(key_id: str) -> AuditSigningKeypair | None:
    """A key named by a checkpoint, private half deferred: a lookup by key id alone (the
    public /.well-known/ document and `audit_verify`), of no organization in particular."""
    return AuditSigningKeypair.objects.filter(key_id=key_id).defer("private_key").first()


def sign(organization: Any, message: bytes) -> tuple[str, str]:
    """(key_id, base64 signature) of `message` under the organization's key."""
    key = signing_key(organization)
    stored = (
        AuditSigningKeypair.objects.filter(pk=key.pk).values_list("private_key", flat=True).get()
    )
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(stored))
    return key.key_id, base64.b64encode(private.sign(message)).decode()


def public_key_document(key: AuditSigningKeypair) -> dict[str, Any]:
    """What /.well-known/ serves: the raw key (base64) and the same key as a JWK."""
    raw = base64.b64decode(key.public_key)
    return {
        "key_id": key.key_id,
        "algorithm": "Ed25519",
        "public_key": key.public_key,
        "jwk": {
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": key.key_id,
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        },
        "created_at": key.created_at.isoformat(),
    }
