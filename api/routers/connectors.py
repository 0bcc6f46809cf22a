"""The connectors API (Algolia Ingestion API, seed era): ``/1/…``.

Every route needs ``X-Algolia-Application-Id`` (the application, a Sluice tenant) and
``X-Algolia-API-Key`` (a key of that application holding ``connectors-admin``); anything else is a
403 in Algolia's error shape. Bodies and answers follow ``specs/algolia-ingestion-2024-01-17.yml``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.deps import PrefectDep, SessionDep, SettingsDep
from sluice import connector_runs as runs
from sluice import connectors as store
from sluice import secret_box
from sluice.credentials import verify_key
from sluice.errors import Forbidden, InvalidInput, NotFound, RateLimited
from sluice.models import ConnectorTask, Tenant

PREFIX = "/1"
ROLE = "connectors-admin"
INVALID_CREDENTIALS = "Invalid Application-Id or API-Key"

logger = logging.getLogger("sluice.connectors")
_limiter = MovingWindowRateLimiter(MemoryStorage())  # per API process, as each Algolia host counts its own


def rate_limit(request: Request, settings: SettingsDep) -> None:
    """Per client IP, as Algolia documents: 200 requests a minute; runs and events 200 per 30 s.
    Checked before the credentials, so guessing keys is limited too."""
    observability = request.url.path.startswith((f"{PREFIX}/runs", f"{PREFIX}/events"))
    notation = settings.CONNECTORS_OBSERVABILITY_RATE_LIMIT if observability else settings.CONNECTORS_RATE_LIMIT
    item = parse(notation)
    client = request.client.host if request.client else "unknown"
    scope = ("observability" if observability else "api", client)
    if not _limiter.hit(item, *scope):
        reset = _limiter.get_window_stats(item, *scope).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"Too many requests: at most {notation} per client; retry in {retry_after} s", retry_after)


router = APIRouter(prefix=PREFIX, tags=["connectors"], dependencies=[Depends(rate_limit)])


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
# Array parameters are comma-separated (the spec's style: form, explode: false); repeating works too.
CsvQuery = Annotated[list[str], Query(description="Comma-separated values.")]


def _csv(values: list[str], name: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item for value in values for item in value.split(",") if item]
    bad = [item for item in items if allowed is not None and item not in allowed]
    if bad:
        raise InvalidInput(f"{name}: {', '.join(map(repr, bad))} not one of {', '.join(allowed)}")
    return items


def _listed(kind: store.Kind, plural: str, session, app: Tenant, page: int, items_per_page: int, sort: str,
            order: str, **filters: Any) -> dict:  # fmt: skip
    rows, pagination = store.list_page(session, kind, app.name, page=page, items_per_page=items_per_page,
                                       sort=sort, order=order, **filters)  # fmt: skip
    return {plural: [store.view(kind, row) for row in rows], "pagination": pagination}


@router.get("/authentications")
def list_authentications(
    app: AppDep, session: SessionDep, items_per_page: ItemsPerPageQuery = 10, page: PageQuery = 1,
    type: CsvQuery = [],  # noqa: A002, B006 - the spec's names
    platform: CsvQuery = [],  # noqa: B006
    sort: Literal["name", "auth_type", "platform", "updatedAt", "createdAt"] = "createdAt", order: OrderQuery = "desc",
) -> dict:  # fmt: skip
    return _listed(store.AUTHENTICATIONS, "authentications", session, app, page, items_per_page, sort, order,
                   types=_csv(type, "type", tuple(store.AUTHENTICATIONS.inputs)),
                   platforms=_csv(platform, "platform", ("bigcommerce", "commercetools", "none")))  # fmt: skip


@router.get("/destinations")
def list_destinations(
    app: AppDep, session: SessionDep, items_per_page: ItemsPerPageQuery = 10, page: PageQuery = 1,
    type: CsvQuery = [],  # noqa: A002, B006
    authentication_id: Annotated[list[str], Query(alias="authenticationID")] = [],  # noqa: B006
    sort: Literal["name", "type", "updatedAt", "createdAt"] = "createdAt", order: OrderQuery = "desc",
) -> dict:  # fmt: skip
    return _listed(store.DESTINATIONS, "destinations", session, app, page, items_per_page, sort, order,
                   types=_csv(type, "type", tuple(store.DESTINATIONS.inputs)),
                   authentication_ids=_csv(authentication_id, "authenticationID"))  # fmt: skip


@router.get("/sources")
def list_sources(
    app: AppDep, session: SessionDep, items_per_page: ItemsPerPageQuery = 10, page: PageQuery = 1,
    type: CsvQuery = [],  # noqa: A002, B006
    authentication_id: Annotated[list[str], Query(alias="authenticationID", description="'none': without one.")] = [],  # noqa: B006
    sort: Literal["name", "type", "updatedAt", "createdAt"] = "createdAt", order: OrderQuery = "desc",
) -> dict:  # fmt: skip
    return _listed(store.SOURCES, "sources", session, app, page, items_per_page, sort, order,
                   types=_csv(type, "type", tuple(store.SOURCES.inputs)),
                   authentication_ids=_csv(authentication_id, "authenticationID"))  # fmt: skip


def _resource_routes(kind: store.Kind, path: str) -> None:
    """create, search by ids, get, PATCH and soft DELETE: the same for every kind."""
    ids_field = kind.id_field + "s"
    item = f"{path}/{{resource_id}}"

    def created(row) -> dict:
        return {kind.id_field: row.id, "name": row.name, "createdAt": store.rfc3339(row.created_at)}

    def create(app: AppDep, session: SessionDep, body: store.ResourceCreate) -> dict:
        return created(store.create(session, kind, app.name, body))

    search_body = create_model(f"{kind.label}Search", __config__=ConfigDict(extra="forbid"),
                               **{ids_field: (list[str], Field(max_length=1000))})  # fmt: skip

    def search(app: AppDep, session: SessionDep, body: BaseModel) -> list[dict]:
        ids = getattr(body, ids_field)
        return [store.view(kind, row) for row in store.search(session, kind, app.name, ids)]

    search.__annotations__["body"] = search_body  # a class per kind, not a name FastAPI could look up

    def read(app: AppDep, session: SessionDep, resource_id: str) -> dict:
        return store.view(kind, store.get(session, kind, app.name, resource_id))

    def patch(app: AppDep, session: SessionDep, resource_id: str, body: store.ResourceUpdate) -> dict:
        row = store.update(session, kind, app.name, resource_id, body)
        return {kind.id_field: row.id, "name": row.name, "updatedAt": store.rfc3339(row.updated_at)}

    def remove(app: AppDep, session: SessionDep, resource_id: str) -> dict:
        return {"deletedAt": store.rfc3339(store.delete(session, kind, app.name, resource_id))}

    label = kind.label
    router.add_api_route(path, create, methods=["POST"], name=f"create{label}")
    router.add_api_route(f"{path}/search", search, methods=["POST"], name=f"search{label}s")
    router.add_api_route(item, read, methods=["GET"], name=f"get{label}")
    router.add_api_route(item, patch, methods=["PATCH"], name=f"update{label}")
    router.add_api_route(item, remove, methods=["DELETE"], name=f"delete{label}")


for _kind, _path in ((store.AUTHENTICATIONS, "/authentications"), (store.DESTINATIONS, "/destinations"),
                     (store.SOURCES, "/sources")):  # fmt: skip
    _resource_routes(_kind, _path)


# --- tasks ----------------------------------------------------------------------------------------------------


class TaskSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    taskIDs: list[str] = Field(max_length=1000)


@router.get("/tasks")
def list_tasks(
    app: AppDep, session: SessionDep, items_per_page: ItemsPerPageQuery = 10, page: PageQuery = 1,
    action: CsvQuery = [],  # noqa: B006
    enabled: bool | None = None,
    source_id: Annotated[list[str], Query(alias="sourceID")] = [],  # noqa: B006
    destination_id: Annotated[list[str], Query(alias="destinationID")] = [],  # noqa: B006
    trigger_type: Annotated[list[str], Query(alias="triggerType")] = [],  # noqa: B006
    sort: Literal["enabled", "triggerType", "action", "updatedAt", "createdAt"] = "createdAt",
    order: OrderQuery = "desc",
) -> dict:  # fmt: skip
    rows, pagination = store.list_tasks(
        session, app.name, page=page, items_per_page=items_per_page, sort=sort, order=order,
        actions=_csv(action, "action", ("replace", "save", "partial")), enabled=enabled,
        source_ids=_csv(source_id, "sourceID"), destination_ids=_csv(destination_id, "destinationID"),
        trigger_types=_csv(trigger_type, "triggerType", ("onDemand", "schedule", "subscription")),
    )  # fmt: skip
    return {"tasks": [store.task_view(row) for row in rows], "pagination": pagination}


def _rescheduled(session, row: ConnectorTask) -> ConnectorTask:
    """Bring Prefect's schedules in line at once after a schedule task changed. Best effort: the
    change is stored, and the runner re-syncs every half minute if Prefect cannot be reached now."""
    if row.trigger_type == "schedule" and PREFECT_API_URL.value():  # no Prefect API configured: nothing to sync
        try:
            with get_client(sync_client=True) as client:
                runs.sync_schedules(client, session)
        except Exception as exc:  # noqa: BLE001 - the stored task is the truth; the runner catches up
            logger.warning("could not sync the schedule of task %s now: %s", row.id, exc)
    return row


@router.post("/tasks")
def create_task(app: AppDep, session: SessionDep, body: store.TaskCreate) -> dict:
    row = _rescheduled(session, store.create_task(session, app.name, body))
    return {"taskID": row.id, "createdAt": store.rfc3339(row.created_at)}


@router.post("/tasks/search")
def search_tasks(app: AppDep, session: SessionDep, body: TaskSearch) -> list[dict]:
    return [store.task_view(row) for row in store.search_tasks(session, app.name, body.taskIDs)]


@router.get("/tasks/{task_id}")
def get_task(app: AppDep, session: SessionDep, task_id: str) -> dict:
    return store.task_view(store.get_task(session, app.name, task_id))


def _updated(row) -> dict:
    return {"taskID": row.id, "updatedAt": store.rfc3339(row.updated_at)}


@router.patch("/tasks/{task_id}")
def update_task(app: AppDep, session: SessionDep, task_id: str, body: store.TaskUpdate) -> dict:
    return _updated(_rescheduled(session, store.update_task(session, app.name, task_id, body)))


@router.put("/tasks/{task_id}/enable")
def enable_task(app: AppDep, session: SessionDep, task_id: str) -> dict:
    return _updated(_rescheduled(session, store.set_task_enabled(session, app.name, task_id, True)))


@router.put("/tasks/{task_id}/disable")
def disable_task(app: AppDep, session: SessionDep, task_id: str) -> dict:
    return _updated(_rescheduled(session, store.set_task_enabled(session, app.name, task_id, False)))


@router.delete("/tasks/{task_id}")
def delete_task(app: AppDep, session: SessionDep, task_id: str) -> dict:
    deleted_at = store.delete_task(session, app.name, task_id)
    _rescheduled(session, session.get(ConnectorTask, task_id))
    return {"deletedAt": store.rfc3339(deleted_at)}


# --- running tasks ---------------------------------------------------------------------------------------


@router.post("/tasks/{task_id}/run")
async def run_task(app: AppDep, session: SessionDep, prefect: PrefectDep, task_id: str) -> dict:
    """Start a run now, whatever the trigger (a disabled task runs too: disabling stops its schedule)."""
    run = await runs.start_run(prefect, store.get_task(session, app.name, task_id), "onDemand")
    return {"runID": str(run.id), "createdAt": store.rfc3339(run.created)}


@router.get("/tasks/{task_id}/webhook")
def get_webhook(app: AppDep, session: SessionDep, settings: SettingsDep, request: Request, task_id: str) -> dict:
    """The URL a subscription task listens on (Sluice's own; not in Algolia's spec): on the address
    the caller used, unless ``SLUICE_API_URL`` names the public one."""
    row = store.get_task(session, app.name, task_id)
    if row.trigger_type != "subscription":
        raise InvalidInput(f"task {task_id} is triggered {row.trigger_type}; only subscription tasks have a webhook")
    base = (settings.API_URL or str(request.base_url)).rstrip("/")
    token = secret_box.sign(f"webhook:{row.id}")
    return {"taskID": row.id, "url": f"{base}{PREFIX}/webhooks/tasks/{row.id}?token={token}"}


@router.post("/webhooks/tasks/{task_id}", status_code=202)
async def subscription_event(session: SessionDep, prefect: PrefectDep, task_id: str,
                             token: Annotated[str, Query(max_length=128)] = "") -> dict:  # fmt: skip
    """An event for a subscription task: its run starts (events arriving before it starts join it).
    The token in the URL is the credential, so senders that cannot set headers can call it."""
    # hmac.compare_digest refuses non-ASCII strings (TypeError): such a token is simply wrong.
    if not token.isascii() or not secret_box.verify(f"webhook:{task_id}", token):
        raise Forbidden(INVALID_CREDENTIALS)
    row = session.get(ConnectorTask, task_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"Task {task_id} not found")
    if row.trigger_type != "subscription" or not row.enabled:
        raise InvalidInput(f"task {task_id} is not an enabled subscription task")
    run = await runs.live_run(prefect, row) or await runs.start_run(prefect, row, "subscription")
    return {"runID": str(run.id), "createdAt": store.rfc3339(run.created)}


@router.post("/sources/{source_id}/discover")
async def discover_source(app: AppDep, session: SessionDep, prefect: PrefectDep, source_id: str) -> dict:
    """Start a discover run: the tap lists its streams (Docker sources of type singer or airbyte)."""
    row = store.get(session, store.SOURCES, app.name, source_id)
    if row.type != "docker" or row.input.get("imageType") == "custom":
        raise InvalidInput(f"source {source_id} has no streams to discover: only singer and airbyte images have them")
    run = await runs.start_discover(prefect, row)
    return {"runID": str(run.id), "createdAt": store.rfc3339(run.created)}


@router.get("/sources/{source_id}/discover")
def discovered_streams(app: AppDep, session: SessionDep, source_id: str) -> dict:
    """The streams the last successful discover run found."""
    row = store.get(session, store.SOURCES, app.name, source_id)
    if row.streams is None:
        raise NotFound(f"Source {source_id} has not been discovered yet: POST /1/sources/{source_id}/discover")
    return {"streams": row.streams}


# --- observability: runs and events ------------------------------------------------------------------------


@router.get("/runs")
async def list_runs(
    app: AppDep, session: SessionDep, prefect: PrefectDep, items_per_page: ItemsPerPageQuery = 10,
    page: PageQuery = 1, status: CsvQuery = [],  # noqa: B006
    task_id: Annotated[list[str], Query(alias="taskID")] = [],  # noqa: B006
    sort: Literal["status", "updatedAt", "createdAt"] = "createdAt", order: OrderQuery = "desc",
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
) -> dict:  # fmt: skip
    start, end = runs.window(start_date, end_date, runs.RUN_WINDOW)
    found, pagination = await runs.list_runs(
        prefect, session, app.name, page=page, items_per_page=items_per_page,
        statuses=_csv(status, "status", runs.RUN_STATUSES), task_ids=_csv(task_id, "taskID"), sort=sort,
        order=order, start=start, end=end,
    )  # fmt: skip
    return {"runs": found, "pagination": pagination, "window": runs.window_view(start, end)}


@router.get("/runs/{run_id}")
async def get_run(app: AppDep, session: SessionDep, prefect: PrefectDep, run_id: str) -> dict:
    return await runs.get_run(prefect, session, app.name, run_id)


@router.get("/runs/{run_id}/events")
async def list_events(
    app: AppDep, session: SessionDep, prefect: PrefectDep, run_id: str, items_per_page: ItemsPerPageQuery = 10,
    page: PageQuery = 1, status: CsvQuery = [],  # noqa: B006
    type: CsvQuery = [],  # noqa: A002, B006
    sort: Literal["status", "type", "publishedAt"] = "publishedAt", order: OrderQuery = "desc",
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
) -> dict:  # fmt: skip
    await runs.read_run(prefect, app.name, run_id)  # 404 for a run that is not the application's
    start, end = runs.window(start_date, end_date, runs.EVENT_WINDOW)
    found, pagination = runs.list_events(
        session, app.name, run_id, page=page, items_per_page=items_per_page,
        statuses=_csv(status, "status", runs.EVENT_STATUSES), types=_csv(type, "type", runs.EVENT_TYPES),
        sort=sort, order=order, start=start, end=end,
    )  # fmt: skip
    return {"events": [runs.event_view(e) for e in found], "pagination": pagination,
            "window": runs.window_view(start, end)}  # fmt: skip


@router.get("/runs/{run_id}/events/{event_id}")
def get_event(app: AppDep, session: SessionDep, run_id: str, event_id: str) -> dict:
    return runs.event_view(runs.get_event(session, app.name, run_id, event_id))
