"""The encryption keys behind every `encrypt()` model field, and key rotation.

Why this exists: stock django-cryptography derives its AES key from
CRYPTOGRAPHY_KEY but signs every ciphertext with an HMAC keyed by
SECRET_KEY (`FernetSigner` defaults to `settings.SECRET_KEY`). Rotating
SECRET_KEY would then make every stored secret unreadable, and it only knows
one key, so a rotation cannot be done without downtime.

`KeyRing` replaces the cipher object of every encrypted field (installed from
`ConnectionsConfig.ready()`), keeping the same field classes, columns and
migrations:

* both the AES key and the HMAC key derive from GRANTRY_ENCRYPTION_KEY, never
  from SECRET_KEY;
* new values are written under the current key; values are read under the
  current key, then each of GRANTRY_ENCRYPTION_OLD_KEYS, then the stock
  django-cryptography format (for rows written before the key ring existed);
* `rotate_encryption_key` rewrites every row under the current key.

The ciphertext format is django-cryptography's own (FernetBytes).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils.encoding import force_bytes
from django_cryptography.core.signing import BadSignature, FernetSigner
from django_cryptography.fields import EncryptedMixin
from django_cryptography.utils.crypto import FernetBytes, InvalidToken

LEGACY = "legacy"


class UndecryptableSecret(Exception):
    """No configured key opens this value. The message never contains the value."""


def _derive(secret: str, purpose: str) -> bytes:
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=32,
        salt=force_bytes(settings.CRYPTOGRAPHY_SALT) + purpose.encode(),
        iterations=30000,
    )
    return kdf.derive(secret.encode())


@functools.lru_cache(maxsize=16)
def _fernet_for(secret: str) -> FernetBytes:
    # The AES key is derived exactly as django-cryptography derives it
    # (salt CRYPTOGRAPHY_SALT); the signer gets its own key from the same secret.
    return FernetBytes(_derive(secret, ""), FernetSigner(_derive(secret, ":hmac")))


@functools.lru_cache(maxsize=16)
def _legacy_fernet_for(secret: str, secret_key: str) -> FernetBytes:
    return FernetBytes(_derive(secret, ""), FernetSigner(secret_key))


def current_key() -> str:
    return str(settings.GRANTRY_ENCRYPTION_KEY)


_extra_old_keys: list[str] = []


def old_keys() -> list[str]:
    configured = list(getattr(settings, "GRANTRY_ENCRYPTION_OLD_KEYS", []) or [])
    return [k for k in (*_extra_old_keys, *configured) if k and k != current_key()]


@contextlib.contextmanager
def extra_old_keys(keys: list[str]) -> Iterator[None]:
    """Accept `keys` for reading for the duration (rotate_encryption_key --old-key)."""
    _extra_old_keys[:0] = keys
    try:
        yield
    finally:
        del _extra_old_keys[: len(keys)]


class KeyRing:
    """Stands in for django-cryptography's FernetBytes on encrypted fields."""

    def encrypt(self, data: bytes | str) -> bytes:
        return _fernet_for(current_key()).encrypt(data)

    def decrypt(self, data: bytes, ttl: int | None = None) -> bytes:
        plaintext, _ = self.decrypt_with_source(data, ttl)
        return plaintext

    def decrypt_with_source(self, data: bytes, ttl: int | None = None) -> tuple[bytes, str]:
        """The plaintext and which key opened it: "current", "old", or LEGACY."""
        for source, fernet in self._readers():
            try:
                return fernet.decrypt(data, ttl), source
            except (BadSignature, InvalidToken, ValueError):
                continue
        raise UndecryptableSecret("No configured encryption key opens this value.")

    def _readers(self) -> Iterator[tuple[str, FernetBytes]]:
        yield "current", _fernet_for(current_key())
        for key in old_keys():
            yield "old", _fernet_for(key)
        for key in (current_key(), *old_keys()):
            yield LEGACY, _legacy_fernet_for(key, str(settings.SECRET_KEY))


KEYRING = KeyRing()


def encrypted_fields() -> Iterator[tuple[type[models.Model], models.Field[Any, Any]]]:
    """Every encrypted field of every installed model (found by walking fields)."""
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedMixin):
                yield model, field


def install() -> None:
    """Give every encrypted field without an explicit key the key ring."""
    for _model, field in encrypted_fields():
        if getattr(field, "key", None) is None:
            field._fernet = KEYRING  # type: ignore[attr-defined]
