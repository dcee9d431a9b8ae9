"""Encryption of secrets at rest (datasource passwords): Fernet (AES-128-CBC + HMAC-SHA256) with a
key from the ``secret_key`` setting, else a 0600 key file under the data dir made on first use."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core import secret_files
from core.errors import SecretError
from core.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


def key_file(settings: Settings) -> Path:
    return settings.data_path / KEY_FILE


def _fernet_key(material: str) -> bytes:
    """A Fernet key as given (urlsafe base64 of 32 bytes), or derived from any passphrase."""
    raw = material.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, or create it atomically (0600, random) when missing."""
    text = secret_files.read_or_create(path, lambda: Fernet.generate_key().decode(), "secret key")
    return _fernet_key(text)


class SecretBox:
    """Encrypts and decrypts short secrets; the key never leaves this object."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "SecretBox(***)"

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key:
            return cls(_fernet_key(settings.secret_key))
        return cls(load_or_create_key(key_file(settings)))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise SecretError(
                "a stored secret cannot be decrypted: the secret key differs from the one it was"
                " encrypted with (set the same DAGKEEPER_SECRET_KEY on every node)"
            ) from exc
