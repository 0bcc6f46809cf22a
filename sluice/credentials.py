"""Tenants, their document indexes and API keys: created from the CLI, checked on every request.

A key reads ``sk_<key_id>_<secret>``. Only an argon2 hash of the secret is stored; ``key_id``
finds the row without scanning, so checking a key costs one lookup and one hash verification.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from sluice.errors import Conflict, InvalidInput, NotFound
from sluice.models import ROLES, ApiKey, DocumentIndex, Tenant

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KEY_PATTERN = re.compile(r"^sk_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,100})$")
_hasher = PasswordHasher()
MAX_PROVEN = 10_000
_proven: dict[str, tuple[str, bytes]] = {}  # key_id -> (argon2 hash, sha256 of the secret it verified)


def _check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.match(value):
        raise InvalidInput(f"{what} {value!r}: use 1–64 lowercase letters, digits, '-' or '_'")
    return value


def create_tenant(session: Session, name: str) -> Tenant:
    if session.get(Tenant, _check_name(name, "tenant")):
        raise Conflict(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.commit()
    return tenant


def get_tenant(session: Session, name: str) -> Tenant:
    tenant = session.get(Tenant, name)
    if tenant is None:
        raise NotFound(f"no tenant {name!r}")
    return tenant


def create_index(
    session: Session, tenant: str, index_id: str, metadata_keys: list[str], default: bool = False
) -> DocumentIndex:
    """A document index for ``tenant``; the first one becomes the default."""
    get_tenant(session, tenant)
    _check_name(index_id, "index_id")
    existing = session.exec(select(DocumentIndex).where(DocumentIndex.tenant == tenant)).all()
    if any(ix.index_id == index_id for ix in existing):
        raise Conflict(f"tenant {tenant!r} already has an index {index_id!r}")
    if default or not existing:
        for other in existing:
            other.is_default = False
            session.add(other)
    index = DocumentIndex(
        tenant=tenant, index_id=index_id, is_default=default or not existing,
        allowed_metadata_keys=sorted(set(metadata_keys)),
    )  # fmt: skip
    session.add(index)
    session.commit()
    return index


def create_key(session: Session, tenant: str, roles: list[str], name: str = "") -> tuple[ApiKey, str]:
    """A new key for ``tenant``; returns the row and the only copy of the plain key."""
    get_tenant(session, tenant)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise InvalidInput(f"roles must be some of {', '.join(ROLES)}; got {', '.join(unknown) or 'none'}")
    key_id = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    row = ApiKey(key_id=key_id, tenant=tenant, name=name, secret_hash=_hasher.hash(secret), roles=sorted(set(roles)))
    session.add(row)
    session.commit()
    return row, f"sk_{key_id}_{secret}"


def revoke_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no key {key_id!r}")
    row.revoked_at = row.revoked_at or datetime.now(UTC)
    session.add(row)
    session.commit()
    return row


def verify_key(session: Session, presented: str) -> ApiKey | None:
    """The live key row ``presented`` proves, or None (malformed, unknown, wrong secret, revoked)."""
    match = KEY_PATTERN.match(presented.strip())
    if not match:
        return None
    row = session.get(ApiKey, match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    # argon2 costs tens of milliseconds by design; a secret already proven against this very hash
    # is recognised by a fast digest instead. The row is still read, so revocation is immediate.
    digest = hashlib.sha256(match.group(2).encode()).digest()
    proven = _proven.get(row.key_id)
    if proven is not None and proven[0] == row.secret_hash and hmac.compare_digest(proven[1], digest):
        return row
    try:
        _hasher.verify(row.secret_hash, match.group(2))
    except (VerificationError, InvalidHashError):
        return None
    if len(_proven) >= MAX_PROVEN:
        _proven.pop(next(iter(_proven)))
    _proven[row.key_id] = (row.secret_hash, digest)
    return row
