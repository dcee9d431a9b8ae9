"""Encryption of secrets at rest (datasource passwords): Fernet (AES-128-CBC + HMAC-SHA256) with a
key from the ``secret_key`` setting, else a 0600 key file under the data dir made on first use."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from common.errors import ConfigError
from common.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


class SecretError(ConfigError):
    """A stored secret cannot be decrypted with this key (another key, or corrupted)."""


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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".secret-key.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
                log.info("crypto: created secret key file %s (mode 0600)", path)
            except FileExistsError:
                pass  # another process made it first: use its key
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("crypto: key file %s had mode %o; tightening to 0600", path, mode)
        os.chmod(path, 0o600)
    text = path.read_text().strip()
    if not text:
        raise ConfigError(f"secret key file {path} is empty")
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
