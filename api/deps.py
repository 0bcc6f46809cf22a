"""Dependencies, declared once as Annotated aliases so routes name only what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Header, Query
from prefect.client.orchestration import PrefectClient, get_client
from sqlmodel import Session

from blocks.search_engine import engine_from_settings
from sluice import db
from sluice.credentials import get_tenant, verify_key
from sluice.errors import Forbidden, Unauthorized
from sluice.models import Tenant
from sluice.search import SearchEngine
from sluice.settings import Settings, get_settings


def get_search_engine(settings: Annotated[Settings, Depends(get_settings)]) -> SearchEngine:
    return engine_from_settings(settings)


async def get_prefect() -> AsyncIterator[PrefectClient]:
    async with get_client() as client:
        yield client


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with db.session(settings.database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def tenant_with_role(role: str):
    """A dependency: the ``?tenant=`` the caller's key (``X-Auth`` or ``Authorization: Bearer``)
    holds ``role`` for; 401 without valid credentials, 403 for another tenant or role."""

    def dependency(
        session: SessionDep,
        tenant: Annotated[str, Query(min_length=1, max_length=64)],
        authorization: Annotated[str | None, Header()] = None,
        x_auth: Annotated[str | None, Header()] = None,
    ) -> Tenant:
        scheme, _, token = (authorization or "").partition(" ")
        presented = x_auth or (token if scheme.lower() == "bearer" else None)
        if not presented:
            raise Unauthorized("credentials required: an API key in X-Auth or a bearer token in Authorization")
        key = verify_key(session, presented)
        if key is None:
            raise Unauthorized("invalid or revoked credentials")
        if key.tenant != tenant or role not in key.roles:
            raise Forbidden(f"these credentials do not hold the {role} role for tenant {tenant!r}")
        return get_tenant(session, tenant)

    return dependency


SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchEngineDep = Annotated[SearchEngine, Depends(get_search_engine)]
PrefectDep = Annotated[PrefectClient, Depends(get_prefect)]
