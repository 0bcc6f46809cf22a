"""The connectors API's resources (Algolia Ingestion API, ``/1/…``), stored per application (tenant).

Authentications, destinations and sources share one shape: a ``type``, a ``name``, an ``input``
checked against the model of its type, soft deletes, and the same list/search/get/patch. Each kind
is described once (``Kind``) and served by the same functions. Authentications keep their whole
input encrypted (``sluice.secret_box``); only the parts that are not secret are ever returned.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from sluice import secret_box
from sluice.errors import InvalidInput, NotFound
from sluice.models import (
    ConnectorAuthentication,
    ConnectorDestination,
    ConnectorRecord,
    ConnectorResource,
    ConnectorSource,
    ConnectorTask,
)

Order = Literal["asc", "desc"]
AuthenticationType = Literal["googleServiceAccount", "basic", "apiKey", "oauth", "algolia"]
DestinationType = Literal["search", "insights", "flow"]
SourceType = Literal["bigcommerce", "commercetools", "json", "csv", "bigquery", "docker"]
Platform = Literal["bigcommerce", "commercetools"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret_fields: ClassVar[tuple[str, ...]] = ()


# --- authentication inputs -----------------------------------------------------------------------------


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


# --- destination inputs ----------------------------------------------------------------------------------

# "a.b", "a.[0].b", "a.[*].b": names, array positions or every element, separated by dots.
EXCLUDE_PATH = re.compile(r"^(?:[^.\[\]]+|\[(?:\d+|\*)\])(?:\.(?:[^.\[\]]+|\[(?:\d+|\*)\]))*$")
INDEX_NAME = r"^[^\s/\\*?\"<>|,#]{1,255}$"


class DestinationInput(_Input):
    """Either ``indexPrefix`` or ``indexName`` (with its record type and excluded attributes)."""

    indexPrefix: str | None = Field(default=None, pattern=INDEX_NAME)
    indexName: str | None = Field(default=None, pattern=INDEX_NAME)
    recordType: Literal["product", "variant"] | None = None
    attributesToExclude: list[str] | None = Field(default=None, max_length=1000)

    @field_validator("attributesToExclude")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        bad = [path for path in value or [] if not EXCLUDE_PATH.match(path)]
        if bad:
            raise ValueError(f"not an attribute path (a.b, a.[0].b or a.[*].b): {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> DestinationInput:
        if (self.indexPrefix is None) == (self.indexName is None):
            raise ValueError("give either indexName or indexPrefix")
        if self.indexPrefix is not None and (self.recordType or self.attributesToExclude):
            raise ValueError("recordType and attributesToExclude go with indexName, not indexPrefix")
        return self


# --- source inputs -------------------------------------------------------------------------------------------


class SourceCommercetools(_Input):
    url: str = Field(min_length=1)
    projectKey: str = Field(min_length=1)
    storeKeys: list[str] | None = None
    locales: list[str] | None = None
    fallbackIsInStockValue: bool = True

    @field_validator("locales")
    @classmethod
    def _locales(cls, value: list[str] | None) -> list[str] | None:
        bad = [locale for locale in value or [] if not re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", locale)]
        if bad:
            raise ValueError(f"locales must match ^[a-z]{{2}}(-[A-Z]{{2}})?$ (e.g. fr-FR, en): {', '.join(bad)}")
        return value


class BigCommerceChannel(_Input):
    id: int
    currencies: list[str] | None = None


class BigCommerceMetafield(_Input):
    namespace: str
    key: str


class SourceBigCommerce(_Input):
    storeHash: str = Field(min_length=1)
    channel: BigCommerceChannel | None = None
    customFields: list[str] | None = None
    productMetafields: list[BigCommerceMetafield] | None = None
    variantMetafields: list[BigCommerceMetafield] | None = None


class SourceJSON(_Input):
    url: str = Field(pattern=r"^(https?|file)://")
    uniqueIDColumn: str | None = None
    method: Literal["GET", "POST"] = "GET"


class SourceCSV(SourceJSON):
    mapping: dict[str, Literal["string", "integer", "float", "boolean", "json"]] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if value in ("\r", "\n", "\ufffd", " "):
            raise ValueError("the delimiter cannot be \\r, \\n, U+FFFD or a space")
        return value


class SourceBigQuery(_Input):
    projectID: str = Field(min_length=1)
    datasetID: str = Field(min_length=1)
    dataType: Literal["ga4", "ga360"] | None = None
    table: str | None = None
    tablePrefix: str | None = None
    customSQLRequest: str | None = None
    uniqueIDColumn: str | None = None


class SourceDocker(_Input):
    imageType: Literal["singer", "custom", "airbyte"]
    registry: Literal["dockerhub", "ghcr"]
    image: str = Field(min_length=1)
    version: str = "latest"
    configuration: dict[str, Any]


# --- the kinds -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    model: type[ConnectorResource]
    label: str  # "Authentication"
    id_field: str  # "authenticationID"
    inputs: dict[str, type[_Input]]
    sort: dict[str, str]  # API sort key -> column


AUTHENTICATIONS = Kind(
    ConnectorAuthentication, "Authentication", "authenticationID",
    {"googleServiceAccount": AuthGoogleServiceAccount, "basic": AuthBasic, "apiKey": AuthAPIKey, "oauth": AuthOAuth,
     "algolia": AuthAlgolia},
    {"name": "name", "auth_type": "type", "platform": "platform", "updatedAt": "updated_at", "createdAt": "created_at"},
)  # fmt: skip
DESTINATIONS = Kind(
    ConnectorDestination, "Destination", "destinationID",
    {"search": DestinationInput, "insights": DestinationInput, "flow": DestinationInput},
    {"name": "name", "type": "type", "updatedAt": "updated_at", "createdAt": "created_at"},
)  # fmt: skip
SOURCES = Kind(
    ConnectorSource, "Source", "sourceID",
    {"bigcommerce": SourceBigCommerce, "commercetools": SourceCommercetools, "json": SourceJSON, "csv": SourceCSV,
     "bigquery": SourceBigQuery, "docker": SourceDocker},
    {"name": "name", "type": "type", "updatedAt": "updated_at", "createdAt": "created_at"},
)  # fmt: skip


class ResourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = Field(min_length=1, max_length=1024)
    input: dict[str, Any]
    platform: Platform | None = None  # authentications only
    authenticationID: str | None = Field(default=None, max_length=36)  # destinations and sources only


class ResourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    input: dict[str, Any] | None = None
    platform: Platform | None = None
    authenticationID: str | None = Field(default=None, max_length=36)


def rfc3339(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _checked(kind: Kind, resource_type: str, value: dict[str, Any]) -> _Input:
    if resource_type not in kind.inputs:
        raise InvalidInput(f"type: must be one of {', '.join(kind.inputs)} (got {resource_type!r})")
    try:
        return kind.inputs[resource_type].model_validate(value)
    except ValidationError as exc:
        where = "; ".join(f"input.{'.'.join(str(p) for p in e['loc']) or '(input)'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{where} (for a {kind.label.lower()} of type {resource_type})") from None


def _set_input(kind: Kind, row: ConnectorResource, resource_type: str, value: dict[str, Any]) -> None:
    checked = _checked(kind, resource_type, value)
    full = checked.model_dump(exclude_none=True)
    if kind is AUTHENTICATIONS:
        row.input_public = {k: v for k, v in full.items() if k not in checked.secret_fields}
        row.input_secret = secret_box.seal(full)
    else:
        row.input = full


def _check_authentication(session: Session, tenant: str, kind: Kind, body: ResourceCreate | ResourceUpdate) -> None:
    if body.authenticationID is None:
        return
    if kind is AUTHENTICATIONS:
        raise InvalidInput("authenticationID: not a field of an authentication")
    try:
        get(session, AUTHENTICATIONS, tenant, body.authenticationID)
    except NotFound as exc:  # a bad reference in the body: the request is at fault
        raise InvalidInput(f"authenticationID: {exc}") from None


def view(kind: Kind, row: ConnectorResource) -> dict[str, Any]:
    """The wire form (secrets never leave: they are left out of an authentication's ``input``)."""
    shown = {kind.id_field: row.id, "type": row.type, "name": row.name, "createdAt": rfc3339(row.created_at)}
    if kind is AUTHENTICATIONS:
        shown["input"] = row.input_public
        if row.platform:
            shown["platform"] = row.platform
    else:
        shown["input"] = row.input
        if row.authentication_id:
            shown["authenticationID"] = row.authentication_id
    if row.updated_at:
        shown["updatedAt"] = rfc3339(row.updated_at)
    return shown


def create(session: Session, kind: Kind, tenant: str, body: ResourceCreate) -> ConnectorResource:
    if body.platform is not None and kind is not AUTHENTICATIONS:
        raise InvalidInput("platform: only authentications have a platform")
    _check_authentication(session, tenant, kind, body)
    row = kind.model(tenant=tenant, type=body.type, name=body.name)
    _set_input(kind, row, body.type, body.input)
    if kind is AUTHENTICATIONS:
        row.platform = body.platform
    else:
        row.authentication_id = body.authenticationID
    session.add(row)
    session.commit()
    return row


def _live(session: Session, model: type[ConnectorRecord], label: str, tenant: str, record_id: str):
    """The application's record, unless deleted; else ``NotFound`` (another application's is not found either)."""
    row = session.get(model, record_id)
    if row is None or row.tenant != tenant or row.deleted_at is not None:
        raise NotFound(f"{label} {record_id} not found")
    return row


def _live_by_ids(session: Session, model: type[ConnectorRecord], tenant: str, ids: list[str]) -> list:
    rows = session.exec(
        select(model).where(model.tenant == tenant, col(model.id).in_(ids[:1000]), col(model.deleted_at).is_(None))
        .order_by(model.created_at, model.id)
    ).all()  # fmt: skip
    return list(rows)


def _soft_delete(session: Session, row: ConnectorRecord) -> datetime:
    """The row stays (history may name it) but is gone from every read."""
    row.deleted_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return row.deleted_at


def _in_or_none(column: Any, values: list[str]) -> Any:
    """``column`` is one of ``values``, where the value "none" means it is unset."""
    either = [col(column).in_([v for v in values if v != "none"])]
    if "none" in values:
        either.append(col(column).is_(None))
    return or_(*either)


def get(session: Session, kind: Kind, tenant: str, resource_id: str) -> ConnectorResource:
    return _live(session, kind.model, kind.label, tenant, resource_id)


def authentication_secret(row: ConnectorAuthentication) -> dict[str, Any]:
    """The whole input, decrypted: for the flows that log in with it, never for the API."""
    return secret_box.unseal(row.input_secret)


def source_secret(session: Session, source: ConnectorSource) -> dict[str, Any] | None:
    """The decrypted input of the source's authentication, if it has one."""
    auth = session.get(ConnectorAuthentication, source.authentication_id) if source.authentication_id else None
    return authentication_secret(auth) if auth is not None else None


def update(session: Session, kind: Kind, tenant: str, resource_id: str, body: ResourceUpdate) -> ConnectorResource:
    """PATCH: given fields replace stored ones. An authentication's ``input`` is merged into the
    stored one, so a secret can be rotated alone; changing ``type`` needs a whole input of the new type."""
    row = get(session, kind, tenant, resource_id)
    if body.platform is not None and kind is not AUTHENTICATIONS:
        raise InvalidInput("platform: only authentications have a platform")
    _check_authentication(session, tenant, kind, body)
    resource_type = body.type or row.type
    if body.input is not None or resource_type != row.type:
        if kind is AUTHENTICATIONS:
            stored = authentication_secret(row) if resource_type == row.type else {}
            _set_input(kind, row, resource_type, stored | (body.input or {}))
        else:
            _set_input(kind, row, resource_type, body.input if body.input is not None else row.input)
    row.type, row.name = resource_type, body.name or row.name
    if "platform" in body.model_fields_set and kind is AUTHENTICATIONS:
        row.platform = body.platform
    if "authenticationID" in body.model_fields_set and kind is not AUTHENTICATIONS:
        row.authentication_id = body.authenticationID
    row.updated_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return row


def delete(session: Session, kind: Kind, tenant: str, resource_id: str) -> datetime:
    """Soft delete: the row stays (history may name it) but is gone from every read. Refused while
    a live resource uses it."""
    row = get(session, kind, tenant, resource_id)
    if kind is AUTHENTICATIONS:
        for user_kind in (SOURCES, DESTINATIONS):
            user = session.exec(
                select(user_kind.model.id).where(user_kind.model.authentication_id == resource_id,
                                                 col(user_kind.model.deleted_at).is_(None)).limit(1)
            ).first()  # fmt: skip
            if user is not None:
                raise InvalidInput(f"Authentication {resource_id} is used by {user_kind.label.lower()} {user}: "
                                   f"delete it or give it another authentication first")  # fmt: skip
    else:
        column = ConnectorTask.source_id if kind is SOURCES else ConnectorTask.destination_id
        task = session.exec(
            select(ConnectorTask.id).where(column == resource_id, col(ConnectorTask.deleted_at).is_(None)).limit(1)
        ).first()
        if task is not None:
            raise InvalidInput(f"{kind.label} {resource_id} is used by task {task}: delete the task first")
    return _soft_delete(session, row)


def search(session: Session, kind: Kind, tenant: str, ids: list[str]) -> list[ConnectorResource]:
    return _live_by_ids(session, kind.model, tenant, ids)


def list_page(
    session: Session, kind: Kind, tenant: str, *, page: int, items_per_page: int, sort: str, order: Order,
    types: list[str] = (), platforms: list[str] = (), authentication_ids: list[str] = (),
) -> tuple[list[ConnectorResource], dict[str, int]]:  # fmt: skip
    """One page of live resources, filtered and sorted, with Algolia's ``pagination`` block."""
    model = kind.model
    clauses = [model.tenant == tenant, col(model.deleted_at).is_(None)]
    if types:
        clauses.append(col(model.type).in_(types))
    if platforms:
        clauses.append(_in_or_none(model.platform, platforms))
    if authentication_ids:
        clauses.append(_in_or_none(model.authentication_id, authentication_ids))
    return paged(session, model, clauses, getattr(model, kind.sort[sort]), order, page, items_per_page)


def paged(session: Session, model: type, clauses: list, column: Any, order: Order, page: int,
           items_per_page: int) -> tuple[list, dict[str, int]]:  # fmt: skip
    """One page of ``model`` rows and Algolia's ``pagination`` block (id breaks ties: stable pages)."""
    total = session.exec(select(func.count()).select_from(model).where(*clauses)).one()
    rows = session.exec(
        select(model).where(*clauses).order_by(column.asc() if order == "asc" else column.desc(), model.id)
        .offset((page - 1) * items_per_page).limit(items_per_page)
    ).all()  # fmt: skip
    return list(rows), pagination_of(total, page, items_per_page)


def pagination_of(total: int, page: int, items_per_page: int) -> dict[str, int]:
    return {"nbPages": math.ceil(total / items_per_page), "page": page, "nbItems": total,
            "itemsPerPage": items_per_page}  # fmt: skip


# --- tasks -------------------------------------------------------------------------------------------------------

ActionType = Literal["replace", "save", "partial"]
TriggerType = Literal["onDemand", "schedule", "subscription"]
TASK_SORT = {"enabled": "enabled", "triggerType": "trigger_type", "action": "action", "updatedAt": "updated_at",
             "createdAt": "created_at"}  # fmt: skip


def _cron(value: str) -> str:
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ValueError(f"not a 5-field cron expression: {value!r}")
    return value


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: TriggerType
    cron: str | None = None

    @model_validator(mode="after")
    def _cron_for_schedules(self) -> TriggerIn:
        if self.type == "schedule":
            if self.cron is None:
                raise ValueError("a schedule trigger needs a cron expression")
            _cron(self.cron)
        elif self.cron is not None:
            raise ValueError(f"an {self.type} trigger has no cron expression")
        return self


class TriggerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str

    @field_validator("cron")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _cron(value)


class OnDemandDateUtilsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    startDate: datetime
    endDate: datetime

    @model_validator(mode="after")
    def _ordered(self) -> OnDemandDateUtilsInput:
        if self.endDate < self.startDate:
            raise ValueError("endDate is before startDate")
        return self


class ScheduleDateUtilsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeframe: int = Field(ge=1, le=30)


TaskInput = OnDemandDateUtilsInput | ScheduleDateUtilsInput


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sourceID: str = Field(max_length=36)
    destinationID: str = Field(max_length=36)
    trigger: TriggerIn
    action: ActionType
    enabled: bool = True
    failureThreshold: int | None = Field(default=None, ge=0, le=100)
    input: TaskInput | None = None


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destinationID: str | None = Field(default=None, max_length=36)
    trigger: TriggerUpdate | None = None
    input: TaskInput | None = None
    enabled: bool | None = None
    failureThreshold: int | None = Field(default=None, ge=0, le=100)


def _reference(session: Session, kind: Kind, tenant: str, field: str, resource_id: str) -> None:
    try:
        get(session, kind, tenant, resource_id)
    except NotFound as exc:  # a bad reference in the body: the request is at fault
        raise InvalidInput(f"{field}: {exc}") from None


def _task_input(value: TaskInput | None) -> dict[str, Any] | None:
    return value.model_dump(mode="json") if value is not None else None


def next_run(cron: str, after: datetime | None = None) -> datetime:
    return croniter(cron, after or datetime.now(UTC)).get_next(datetime)


def task_view(row: ConnectorTask) -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": row.trigger_type}
    if row.cron:
        trigger |= {"cron": row.cron, "nextRun": rfc3339(next_run(row.cron))}
    if row.last_run:
        trigger["lastRun"] = rfc3339(row.last_run)
    shown = {"taskID": row.id, "sourceID": row.source_id, "destinationID": row.destination_id, "trigger": trigger,
             "enabled": row.enabled, "action": row.action, "createdAt": rfc3339(row.created_at)}  # fmt: skip
    if row.input is not None:
        shown["input"] = row.input
    if row.failure_threshold is not None:
        shown["failureThreshold"] = row.failure_threshold
    shown["updatedAt"] = rfc3339(row.updated_at or row.created_at)  # required by Algolia's clients
    return shown


def create_task(session: Session, tenant: str, body: TaskCreate) -> ConnectorTask:
    _reference(session, SOURCES, tenant, "sourceID", body.sourceID)
    _reference(session, DESTINATIONS, tenant, "destinationID", body.destinationID)
    row = ConnectorTask(
        tenant=tenant, source_id=body.sourceID, destination_id=body.destinationID, trigger_type=body.trigger.type,
        cron=body.trigger.cron, action=body.action, enabled=body.enabled, failure_threshold=body.failureThreshold,
        input=_task_input(body.input),
    )  # fmt: skip
    session.add(row)
    session.commit()
    return row


def get_task(session: Session, tenant: str, task_id: str) -> ConnectorTask:
    return _live(session, ConnectorTask, "Task", tenant, task_id)


def update_task(session: Session, tenant: str, task_id: str, body: TaskUpdate) -> ConnectorTask:
    row = get_task(session, tenant, task_id)
    if body.destinationID is not None:
        _reference(session, DESTINATIONS, tenant, "destinationID", body.destinationID)
        row.destination_id = body.destinationID
    if body.trigger is not None:
        if row.trigger_type != "schedule":
            raise InvalidInput(f"trigger.cron: task {task_id} is triggered {row.trigger_type}, not by a schedule")
        row.cron = body.trigger.cron
    if "input" in body.model_fields_set:
        row.input = _task_input(body.input)
    if body.enabled is not None:
        row.enabled = body.enabled
        row.consecutive_failures = 0 if body.enabled else row.consecutive_failures
    if "failureThreshold" in body.model_fields_set:
        row.failure_threshold = body.failureThreshold
    row.updated_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return row


def set_task_enabled(session: Session, tenant: str, task_id: str, enabled: bool) -> ConnectorTask:
    return update_task(session, tenant, task_id, TaskUpdate(enabled=enabled))


def delete_task(session: Session, tenant: str, task_id: str) -> datetime:
    return _soft_delete(session, get_task(session, tenant, task_id))


def search_tasks(session: Session, tenant: str, ids: list[str]) -> list[ConnectorTask]:
    return _live_by_ids(session, ConnectorTask, tenant, ids)


def list_tasks(
    session: Session, tenant: str, *, page: int, items_per_page: int, sort: str, order: Order,
    actions: list[str], enabled: bool | None, source_ids: list[str], destination_ids: list[str],
    trigger_types: list[str],
) -> tuple[list[ConnectorTask], dict[str, int]]:  # fmt: skip
    model = ConnectorTask
    clauses = [model.tenant == tenant, col(model.deleted_at).is_(None)]
    for column, values in ((model.action, actions), (model.source_id, source_ids),
                           (model.destination_id, destination_ids), (model.trigger_type, trigger_types)):  # fmt: skip
        if values:
            clauses.append(col(column).in_(values))
    if enabled is not None:
        clauses.append(model.enabled == enabled)
    return paged(session, model, clauses, getattr(model, TASK_SORT[sort]), order, page, items_per_page)
