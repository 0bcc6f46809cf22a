"""The connectors API's resources (Algolia Ingestion API, ``/1/…``), stored per application (tenant).

Authentications keep their whole input encrypted (``sluice.secret_box``); only the parts that are
not secret are kept readable and ever returned.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from sluice import secret_box
from sluice.errors import InvalidInput, NotFound
from sluice.models import ConnectorAuthentication

AuthenticationType = Literal["googleServiceAccount", "basic", "apiKey", "oauth", "algolia"]
Platform = Literal["bigcommerce", "commercetools"]
Order = Literal["asc", "desc"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret_fields: ClassVar[tuple[str, ...]] = ()


class AuthGoogleServiceAccount(_Input):
    clientEmail: str = Field(min_length=1)
    privateKey: str = Field(min_length=1)
    secret_fields: ClassVar[tuple[str, ...]] = ("privateKey",)


class AuthBasic(_Input):
    username: str = Field(min_length=1)
    password: str
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)


class AuthAPIKey(_Input):
    key: str = Field(min_length=1)
    secret_fields: ClassVar[tuple[str, ...]] = ("key",)


class AuthOAuth(_Input):
    url: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    secret_fields: ClassVar[tuple[str, ...]] = ("client_secret",)


class AuthAlgolia(_Input):
    appID: str = Field(min_length=1)
    apiKey: str = Field(min_length=1)
    secret_fields: ClassVar[tuple[str, ...]] = ("apiKey",)


AUTH_INPUTS: dict[str, type[_Input]] = {
    "googleServiceAccount": AuthGoogleServiceAccount,
    "basic": AuthBasic,
    "apiKey": AuthAPIKey,
    "oauth": AuthOAuth,
    "algolia": AuthAlgolia,
}


class AuthenticationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AuthenticationType
    name: str = Field(min_length=1, max_length=1024)
    platform: Platform | None = None
    input: dict[str, Any]


class AuthenticationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AuthenticationType | None = None
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    platform: Platform | None = None
    input: dict[str, Any] | None = None


def _validate_input(auth_type: str, value: dict[str, Any]) -> _Input:
    try:
        return AUTH_INPUTS[auth_type].model_validate(value)
    except ValidationError as exc:
        where = "; ".join(f"input.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{where} (for an authentication of type {auth_type})") from None


def _sealed(auth_type: str, value: dict[str, Any]) -> tuple[dict[str, Any], str]:
    checked = _validate_input(auth_type, value)
    full = checked.model_dump()
    public = {k: v for k, v in full.items() if k not in checked.secret_fields}
    return public, secret_box.seal(full)


def authentication_view(row: ConnectorAuthentication) -> dict[str, Any]:
    """The wire form: secrets never leave (they are left out of ``input``)."""
    view = {"authenticationID": row.id, "type": row.type, "name": row.name, "input": row.input_public,
            "createdAt": rfc3339(row.created_at)}  # fmt: skip
    if row.platform:
        view["platform"] = row.platform
    if row.updated_at:
        view["updatedAt"] = rfc3339(row.updated_at)
    return view


def rfc3339(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def create_authentication(session: Session, tenant: str, body: AuthenticationCreate) -> ConnectorAuthentication:
    public, secret = _sealed(body.type, body.input)
    row = ConnectorAuthentication(tenant=tenant, type=body.type, name=body.name, platform=body.platform,
                                  input_public=public, input_secret=secret)  # fmt: skip
    session.add(row)
    session.commit()
    return row


def get_authentication(session: Session, tenant: str, authentication_id: str) -> ConnectorAuthentication:
    row = session.get(ConnectorAuthentication, authentication_id)
    if row is None or row.tenant != tenant or row.deleted_at is not None:
        raise NotFound(f"Authentication {authentication_id} not found")
    return row


def authentication_secret(row: ConnectorAuthentication) -> dict[str, Any]:
    """The whole input, decrypted: for the flows that log in with it, never for the API."""
    return secret_box.unseal(row.input_secret)


def update_authentication(
    session: Session, tenant: str, authentication_id: str, body: AuthenticationUpdate
) -> ConnectorAuthentication:
    """PATCH: given fields replace stored ones; ``input`` is merged into the stored input, so a
    secret can be rotated alone (changing ``type`` needs a whole input of the new type)."""
    row = get_authentication(session, tenant, authentication_id)
    auth_type = body.type or row.type
    if body.input is not None or auth_type != row.type:
        stored = authentication_secret(row) if auth_type == row.type else {}
        row.input_public, row.input_secret = _sealed(auth_type, stored | (body.input or {}))
    row.type = auth_type
    row.name = body.name or row.name
    if "platform" in body.model_fields_set:
        row.platform = body.platform
    row.updated_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return row


def delete_authentication(session: Session, tenant: str, authentication_id: str) -> datetime:
    """Soft delete: the row stays (runs and history may name it) but is gone from every read."""
    row = get_authentication(session, tenant, authentication_id)
    row.deleted_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return row.deleted_at


def search_authentications(session: Session, tenant: str, ids: list[str]) -> list[ConnectorAuthentication]:
    rows = session.exec(
        select(ConnectorAuthentication).where(
            ConnectorAuthentication.tenant == tenant, col(ConnectorAuthentication.id).in_(ids[:1000]),
            col(ConnectorAuthentication.deleted_at).is_(None),
        )
    ).all()  # fmt: skip
    return list(rows)


AUTH_SORT = {"name": "name", "auth_type": "type", "platform": "platform", "updatedAt": "updated_at",
             "createdAt": "created_at"}  # fmt: skip


def list_authentications(
    session: Session, tenant: str, *, page: int, items_per_page: int, types: list[str], platforms: list[str],
    sort: str, order: Order,
) -> tuple[list[ConnectorAuthentication], dict[str, int]]:  # fmt: skip
    model = ConnectorAuthentication
    clauses = [model.tenant == tenant, col(model.deleted_at).is_(None)]
    if types:
        clauses.append(col(model.type).in_(types))
    if platforms:
        named = [p for p in platforms if p != "none"]
        either = [col(model.platform).in_(named)] if named else []
        if "none" in platforms:
            either.append(col(model.platform).is_(None))
        clauses.append(or_(*either))
    column = getattr(model, AUTH_SORT[sort])
    ordering = column.asc() if order == "asc" else column.desc()
    total = session.exec(select(func.count()).select_from(model).where(*clauses)).one()
    rows = session.exec(
        select(model).where(*clauses).order_by(ordering, model.id).offset((page - 1) * items_per_page)
        .limit(items_per_page)
    ).all()  # fmt: skip
    pagination = {"nbPages": math.ceil(total / items_per_page), "page": page, "nbItems": total,
                  "itemsPerPage": items_per_page}  # fmt: skip
    return list(rows), pagination
