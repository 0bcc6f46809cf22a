"""Tenants, indexes and API keys (SQLite and PostgreSQL), the CLI that manages them, and the
auth dependency every ingestion route will use."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.deps import get_session, tenant_with_role
from api.main import app as sluice_app
from sluice import credentials, db
from sluice.errors import Conflict, InvalidInput, NotFound
from sluice.models import Tenant


@pytest.fixture
def session(database_url):
    with db.session(database_url) as session:
        yield session


def test_create_key_stores_only_a_hash_and_verifies(session):
    credentials.create_tenant(session, "acme")

    row, key = credentials.create_key(session, "acme", ["ingestion-manager"], name="ci")

    secret = key.split("_", 2)[2]  # sk_<id>_<secret>; the secret itself may contain "_"
    stored = session.exec(text("SELECT secret_hash FROM api_key")).scalar_one()
    assert secret not in stored and stored.startswith("$argon2")
    assert credentials.verify_key(session, key).key_id == row.key_id
    assert credentials.verify_key(session, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert credentials.verify_key(session, "sk_nope") is None
    assert credentials.verify_key(session, f"sk_{'x' * 12}_{secret}") is None


def test_revoked_key_no_longer_verifies(session):
    credentials.create_tenant(session, "acme")
    row, key = credentials.create_key(session, "acme", ["ingestion-manager"])

    credentials.revoke_key(session, row.key_id)

    assert credentials.verify_key(session, key) is None


def test_create_refuses_bad_names_duplicates_and_unknown_roles(session):
    credentials.create_tenant(session, "acme")

    with pytest.raises(Conflict):
        credentials.create_tenant(session, "acme")
    with pytest.raises(InvalidInput, match="tenant"):
        credentials.create_tenant(session, "Not OK")
    with pytest.raises(InvalidInput, match="roles"):
        credentials.create_key(session, "acme", ["admin"])
    with pytest.raises(NotFound):
        credentials.create_key(session, "ghost", ["ingestion-manager"])
    with pytest.raises(NotFound):
        credentials.create_index(session, "ghost", "main", [])


def test_first_index_is_default_and_a_new_default_replaces_it(session):
    credentials.create_tenant(session, "acme")

    first = credentials.create_index(session, "acme", "main", ["colour", "colour"])
    second = credentials.create_index(session, "acme", "archive", [])
    third = credentials.create_index(session, "acme", "v2", ["size"], default=True)

    session.refresh(first)
    assert first.allowed_metadata_keys == ["colour"]
    assert (first.is_default, second.is_default, third.is_default) == (False, False, True)
    with pytest.raises(Conflict):
        credentials.create_index(session, "acme", "main", [])


# --- the auth dependency ---------------------------------------------------------------------


@pytest.fixture
def guarded(database_url):
    with db.session(database_url) as session:
        for name in ("acme", "globex"):
            credentials.create_tenant(session, name)
        _, acme_key = credentials.create_key(session, "acme", ["ingestion-manager"])
    app = FastAPI()

    @app.get("/guarded")
    def guarded_route(tenant: Annotated[Tenant, Depends(tenant_with_role("ingestion-manager"))]) -> dict:
        return {"tenant": tenant.name}

    # The real error handlers, on a route that only proves who the caller is.
    app.exception_handlers.update(sluice_app.exception_handlers)

    def session_override():
        with db.session(database_url) as session:
            yield session

    app.dependency_overrides[get_session] = session_override
    with TestClient(app) as client:
        yield client, acme_key


def test_auth_accepts_x_auth_and_bearer_for_the_keys_tenant(guarded):
    client, key = guarded

    assert client.get("/guarded?tenant=acme", headers={"X-Auth": key}).json() == {"tenant": "acme"}
    assert client.get("/guarded?tenant=acme", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "tenant", "status"),
    [
        ({}, "acme", 401),
        ({"X-Auth": "sk_wrong_key"}, "acme", 401),
        ({"Authorization": "Basic abc"}, "acme", 401),
        ("KEY", "globex", 403),
        ("KEY", "ghost", 403),
    ],
)
def test_auth_refuses_missing_invalid_and_cross_tenant_credentials(guarded, headers, tenant, status):
    client, key = guarded
    headers = {"X-Auth": key} if headers == "KEY" else headers

    response = client.get(f"/guarded?tenant={tenant}", headers=headers)

    assert response.status_code == status
    assert response.json()["message"]


def test_cli_creates_tenants_indexes_and_keys(tmp_path):
    def sluice(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sluice.cli", *args, "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    assert sluice("tenants", "create", "acme").returncode == 0
    assert sluice("tenants", "add-index", "acme", "main", "--metadata-key", "colour").returncode == 0
    created = sluice("keys", "create", "acme")
    duplicate = sluice("tenants", "create", "acme")

    key = created.stdout.strip()
    assert created.returncode == 0 and key.startswith("sk_")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert "main (default): colour" in sluice("tenants", "list").stdout
    with db.session(f"sqlite:///{tmp_path / 'app.sqlite3'}") as session:
        assert credentials.verify_key(session, key).tenant == "acme"
