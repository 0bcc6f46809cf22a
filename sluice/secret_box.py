"""Encryption at rest for connector secrets (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from ``SLUICE_SECRET_KEY`` (a Fernet key), else from ``DATA_DIR/secret.key``, which is
created on first use, readable by its owner only. Lose the key and the stored secrets are lost
with it: back it up with the app database.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from sluice.errors import ConfigurationError
from sluice.settings import Settings, get_settings


def _key(settings: Settings) -> bytes:
    if settings.SECRET_KEY is not None:
        return settings.SECRET_KEY.get_secret_value().encode()
    path = settings.DATA_DIR / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once never write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
    return path.read_bytes().strip()


def _fernet(settings: Settings | None = None) -> Fernet:
    try:
        return Fernet(_key(settings or get_settings()))
    except ValueError as exc:
        raise ConfigurationError(f"SLUICE_SECRET_KEY / secret.key is not a Fernet key: {exc}") from exc


def seal(value: dict[str, Any], settings: Settings | None = None) -> str:
    return _fernet(settings).encrypt(orjson.dumps(value)).decode()


def unseal(token: str, settings: Settings | None = None) -> dict[str, Any]:
    try:
        return orjson.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken as exc:
        raise ConfigurationError("a stored secret cannot be decrypted with this secret key") from exc


def sign(message: str, settings: Settings | None = None) -> str:
    """An unguessable token for ``message`` (HMAC-SHA256 under the same key): webhook URLs carry it."""
    return hmac.new(_key(settings or get_settings()), b"sluice-sign\0" + message.encode(), hashlib.sha256).hexdigest()


def verify(message: str, token: str, settings: Settings | None = None) -> bool:
    return hmac.compare_digest(sign(message, settings), token)
