"""The connectors API (Algolia Ingestion API, seed era): ``/1/…``.

Every route needs ``X-Algolia-Application-Id`` (the application, a Sluice tenant) and
``X-Algolia-API-Key`` (a key of that application holding ``connectors-admin``); anything else is a
403 in Algolia's error shape. Bodies and answers follow ``specs/algolia-ingestion-2024-01-17.yml``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep
from sluice import connectors as store
from sluice.credentials import verify_key
from sluice.errors import Forbidden
from sluice.models import Tenant

PREFIX = "/1"
ROLE = "connectors-admin"
INVALID_CREDENTIALS = "Invalid Application-Id or API-Key"

router = APIRouter(prefix=PREFIX, tags=["connectors"])


def application(
    session: SessionDep,
    app_id: Annotated[str | None, Header(alias="X-Algolia-Application-Id")] = None,
    api_key: Annotated[str | None, Header(alias="X-Algolia-API-Key")] = None,
) -> Tenant:
    """The application these headers prove; 403 for anything less (as Algolia answers)."""
    key = verify_key(session, api_key) if app_id and api_key else None
    if key is None or key.tenant != app_id or ROLE not in key.roles:
        raise Forbidden(INVALID_CREDENTIALS)
    return session.get(Tenant, app_id)


AppDep = Annotated[Tenant, Depends(application)]
PageQuery = Annotated[int, Query(ge=1, le=100_000, description="Page to fetch, from 1.")]
ItemsPerPageQuery = Annotated[int, Query(alias="itemsPerPage", ge=1, le=100)]
OrderQuery = Annotated[Literal["asc", "desc"], Query()]


class IdSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authenticationIDs: list[str] = Field(max_length=1000)


# --- authentications ---------------------------------------------------------------------------------


@router.get("/authentications")
def list_authentications(
    app: AppDep, session: SessionDep,
    items_per_page: ItemsPerPageQuery = 10, page: PageQuery = 1,
    type: Annotated[list[store.AuthenticationType], Query()] = [],  # noqa: A002, B006 - the spec's name
    platform: Annotated[list[Literal["bigcommerce", "commercetools", "none"]], Query()] = [],  # noqa: B006
    sort: Annotated[Literal[tuple(store.AUTH_SORT)], Query()] = "createdAt",  # type: ignore[valid-type]
    order: OrderQuery = "desc",
) -> dict:  # fmt: skip
    rows, pagination = store.list_authentications(
        session, app.name, page=page, items_per_page=items_per_page, types=type, platforms=platform,
        sort=sort, order=order,
    )  # fmt: skip
    return {"authentications": [store.authentication_view(r) for r in rows], "pagination": pagination}


@router.post("/authentications")
def create_authentication(app: AppDep, session: SessionDep, body: store.AuthenticationCreate) -> dict:
    row = store.create_authentication(session, app.name, body)
    return {"authenticationID": row.id, "name": row.name, "createdAt": store.rfc3339(row.created_at)}


@router.post("/authentications/search")
def search_authentications(app: AppDep, session: SessionDep, body: IdSearch) -> list[dict]:
    return [
        store.authentication_view(r) for r in store.search_authentications(session, app.name, body.authenticationIDs)
    ]


@router.get("/authentications/{authentication_id}")
def get_authentication(app: AppDep, session: SessionDep, authentication_id: str) -> dict:
    return store.authentication_view(store.get_authentication(session, app.name, authentication_id))


@router.patch("/authentications/{authentication_id}")
def update_authentication(
    app: AppDep, session: SessionDep, authentication_id: str, body: store.AuthenticationUpdate
) -> dict:
    row = store.update_authentication(session, app.name, authentication_id, body)
    return {"authenticationID": row.id, "name": row.name, "updatedAt": store.rfc3339(row.updated_at)}


@router.delete("/authentications/{authentication_id}")
def delete_authentication(app: AppDep, session: SessionDep, authentication_id: str) -> dict:
    return {"deletedAt": store.rfc3339(store.delete_authentication(session, app.name, authentication_id))}
