"""Encryption at rest for secrets users give promptloop (provider API keys).

The key comes from PROMPTLOOP_SECRET_KEY, or from `<data_dir>/secret.key`, created on first
use with mode 0600. Several replicas on PostgreSQL must share one key: set the variable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from promptloop.core.errors import InvalidInput

logger = logging.getLogger("promptloop.secrets")
KEY_FILE = "secret.key"


class SecretBox:
    """Encrypts and decrypts short secrets (Fernet: AES-128-CBC with an HMAC-SHA256 tag)."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
            self._key = key
        except ValueError:
            raise InvalidInput(
                "PROMPTLOOP_SECRET_KEY is not a valid key: generate one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
            ) from None

    @classmethod
    def load(cls, *, configured: str | None, data_dir: Path) -> SecretBox:
        """The configured key, else the data directory's key file (created if missing)."""
        if configured:
            return cls(configured.encode())
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
            logger.info("Created the encryption key for secrets at %s", path)
        return cls(path.read_bytes().strip())

    def sign(self, purpose: str, message: bytes) -> bytes:
        """An HMAC-SHA256 tag of `message` under a key derived for `purpose` alone, so that a
        tag made for one purpose is worthless for any other."""
        subkey = hmac.new(self._key, f"promptloop:{purpose}".encode(), hashlib.sha256).digest()
        return hmac.new(subkey, message, hashlib.sha256).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise InvalidInput(
                "A stored secret cannot be decrypted with the current key: was "
                "PROMPTLOOP_SECRET_KEY or secret.key changed? Set the provider key again."
            ) from None
