"""Runs and events of connector tasks (Algolia's observability views), and their Prefect side.

A run is a Prefect flow run of ``run-connector-task``: its ``runID`` is the flow-run id and its
``status``/``outcome`` are read from the flow run's state, so the API and the Prefect UI agree.
Runs carry tags ``app:<tenant>`` and ``task:<taskID>`` (a scheduled run adds them as it starts).
Events are rows of the app database, written by the flow as it works; the run's closing ``log``
event holds its ``reasonCode`` and ``reason``.

Schedules: each ``schedule`` task is one schedule (slug ``task-<id>``) on the one deployment,
active while the task is enabled. The app database is the truth: ``sync_schedules`` makes the
deployment's schedules match it (Prefect drops them whenever the runner re-applies the deployment).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from sqlalchemy import func
from sqlmodel import Session, col, select

from sluice.connectors import paged, pagination_of, rfc3339
from sluice.errors import InvalidInput, NotFound
from sluice.models import ConnectorEvent, ConnectorSource, ConnectorTask
from tasks.progress import latest_progress

FLOW = "run-connector-task"
DEPLOYMENT = f"{FLOW}/sluice"
DISCOVER_FLOW = "discover-source"
DISCOVER_DEPLOYMENT = f"{DISCOVER_FLOW}/sluice"
TAG = "connector-task"
SKIPPED = "Skipped"  # the state name of a run that had nothing to do (task disabled or deleted)
RUN_WINDOW, EVENT_WINDOW = timedelta(days=7), timedelta(hours=3)
STATUS_SORT_LIMIT = 10_000  # runs sorted by status are sorted here, not by Prefect
PREFECT_READ_LIMIT = 200  # the most flow runs the Prefect API returns at once (its default api.default_limit)

# Run status by Prefect state name (the UI shows the same names).
STATE_NAMES: dict[str, tuple[str, ...]] = {
    "created": ("Scheduled", "Late", "AwaitingRetry", "AwaitingConcurrencySlot", "Pending"),
    "started": ("Running", "Retrying", "Cancelling"),
    "idled": ("Paused", "Suspended"),
    "finished": ("Completed", "Cached", "Failed", "Crashed", "Cancelled", "TimedOut"),
    "skipped": (SKIPPED,),
}
STATUS_OF = {name: status for status, names in STATE_NAMES.items() for name in names}
RUN_STATUSES = tuple(STATE_NAMES)
EVENT_STATUSES = ("created", "started", "retried", "failed", "succeeded", "critical")
EVENT_TYPES = ("fetch", "record", "log", "transform")
RUN_TYPE = {"replace": "reindex", "save": "update", "partial": "update"}

logger = logging.getLogger("sluice.connectors")


def run_tags(task: ConnectorTask) -> list[str]:
    return ["sluice", TAG, f"app:{task.tenant}", f"task:{task.id}", f"type:{RUN_TYPE[task.action]}"]


def discover_tags(source: ConnectorSource) -> list[str]:
    """A discover run is a run of the application too (``type: discover``); it names no task."""
    return ["sluice", TAG, f"app:{source.tenant}", f"source:{source.id}", "type:discover"]


def _tag(run: FlowRun, key: str) -> str | None:
    return next((tag.split(":", 1)[1] for tag in run.tags if tag.startswith(f"{key}:")), None)


def parse_date(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 query parameter, in UTC (SQLite compares stored UTC times as text, ignoring
    offsets); 400 naming it when it is not one."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset taking it out of years 1-9999
        raise InvalidInput(f"{name}: not an RFC 3339 date (e.g. 2024-01-17T10:00:00Z): {value!r}") from None


def window(start: str | None, end: str | None, default: timedelta) -> tuple[datetime, datetime]:
    """The query window: ``endDate`` defaults to now and ``startDate`` to ``endDate - default``."""
    end_at = parse_date(end, "endDate") or datetime.now(UTC)
    try:
        start_at = parse_date(start, "startDate") or end_at - default
    except OverflowError:
        raise InvalidInput(f"endDate {rfc3339(end_at)} is too early without a startDate") from None
    if start_at > end_at:
        raise InvalidInput("startDate is after endDate")
    return start_at, end_at


def window_view(start: datetime, end: datetime) -> dict[str, str]:
    return {"startDate": rfc3339(start), "endDate": rfc3339(end)}


# --- events ---------------------------------------------------------------------------------------


def new_event(run_id: str, owner: ConnectorTask | ConnectorSource, type_: str, status: str, batch_size: int = 0,
              data: dict[str, Any] | None = None, parent_id: str | None = None) -> ConnectorEvent:  # fmt: skip
    """An event of a run of ``owner`` (the task it syncs, or the source a discover run lists), not yet
    stored; its id and ``publishedAt`` are set now."""
    return ConnectorEvent(run_id=run_id, tenant=owner.tenant, task_id=owner.id, type=type_, status=status,
                          batch_size=batch_size, data=data, parent_id=parent_id)  # fmt: skip


def add_event(session: Session, *args: Any, **kwargs: Any) -> ConnectorEvent:
    """``new_event``, stored at once."""
    event = new_event(*args, **kwargs)
    session.add(event)
    session.commit()
    return event


def event_view(event: ConnectorEvent) -> dict[str, Any]:
    shown = {"eventID": event.id, "runID": event.run_id, "status": event.status, "type": event.type,
             "batchSize": event.batch_size, "publishedAt": rfc3339(event.published_at)}  # fmt: skip
    if event.parent_id:
        shown["parentID"] = event.parent_id
    if event.data is not None:
        shown["data"] = event.data
    return shown


EVENT_SORT = {"status": "status", "type": "type", "publishedAt": "published_at"}


def list_events(
    session: Session, tenant: str, run_id: str, *, page: int, items_per_page: int, statuses: list[str],
    types: list[str], sort: str, order: str, start: datetime, end: datetime,
) -> tuple[list[ConnectorEvent], dict[str, int]]:  # fmt: skip
    clauses = [ConnectorEvent.tenant == tenant, ConnectorEvent.run_id == run_id,
               col(ConnectorEvent.published_at) >= start, col(ConnectorEvent.published_at) <= end]  # fmt: skip
    if statuses:
        clauses.append(col(ConnectorEvent.status).in_(statuses))
    if types:
        clauses.append(col(ConnectorEvent.type).in_(types))
    column = getattr(ConnectorEvent, EVENT_SORT[sort])
    return paged(session, ConnectorEvent, clauses, column, order, page, items_per_page)


def get_event(session: Session, tenant: str, run_id: str, event_id: str) -> ConnectorEvent:
    event = session.get(ConnectorEvent, event_id)
    if event is None or event.tenant != tenant or event.run_id != run_id:
        raise NotFound(f"Event {event_id} not found in run {run_id}")
    return event


def _closing_events(session: Session, run_ids: list[str]) -> dict[str, ConnectorEvent]:
    rows = session.exec(
        select(ConnectorEvent).where(
            col(ConnectorEvent.run_id).in_(run_ids), ConnectorEvent.type == "log", ConnectorEvent.parent_id.is_(None)
        )  # fmt: skip
    ).all()
    return {row.run_id: row for row in rows}


def _event_counts(session: Session, run_ids: list[str]) -> dict[str, int]:
    rows = session.exec(
        select(ConnectorEvent.run_id, func.count()).where(col(ConnectorEvent.run_id).in_(run_ids))
        .group_by(ConnectorEvent.run_id)
    ).all()  # fmt: skip
    return dict(rows)


# --- runs --------------------------------------------------------------------------------------------


def run_status(run: FlowRun) -> str:
    state = run.state
    if state is None:
        return "created"
    if state.name in STATUS_OF:
        return STATUS_OF[state.name]
    return "finished" if state.is_final() else "started" if state.type is StateType.RUNNING else "created"


def expected_events(status: str, events: int, percent: float | None) -> int:
    """Events a run will have published in all: known once it ended; while it works, extrapolated
    from how far through its source it is (the closing event is always still to come)."""
    if status in ("finished", "skipped"):
        return events
    if percent and 0 < percent < 100:
        return max(events + 1, round(events * 100 / percent) + 1)
    return events + 1


def run_view(run: FlowRun, closing: ConnectorEvent | None, events: int, percent: float | None = None) -> dict[str, Any]:
    status = run_status(run)
    state_type = run.state.type if run.state else StateType.SCHEDULED
    shown: dict[str, Any] = {
        "runID": str(run.id), "appID": _tag(run, "app") or "", "taskID": _tag(run, "task") or "",
        "status": status, "type": _tag(run, "type") or "reindex", "createdAt": rfc3339(run.created),
        "progress": {"expectedNbOfEvents": expected_events(status, events, percent), "receivedNbOfEvents": events},
    }  # fmt: skip
    summary = (closing.data or {}) if closing else {}
    # No "processing" outcome while a run works: the seed spec lists it, today's clients reject it.
    if status == "skipped" or state_type is StateType.COMPLETED:
        shown["outcome"] = summary.get("outcome", "success")
    elif state_type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        shown["outcome"] = "failure"
    if "reasonCode" in summary:
        shown["reasonCode"], shown["reason"] = summary["reasonCode"], summary.get("reason", "")
    elif state_type in (StateType.CRASHED, StateType.FAILED, StateType.CANCELLED) or status == "skipped":
        shown["reasonCode"] = "ok" if status == "skipped" else "internal"
        shown["reason"] = (run.state.message if run.state else None) or f"the run ended {run.state.name.lower()}"
    if "failureThreshold" in summary:
        shown["failureThreshold"] = summary["failureThreshold"]
    if run.start_time:
        shown["startedAt"] = rfc3339(run.start_time)
    if run.end_time:
        shown["finishedAt"] = rfc3339(run.end_time)
    return shown


async def _views(client: PrefectClient, session: Session, runs: list[FlowRun]) -> list[dict[str, Any]]:
    ids = [str(run.id) for run in runs]
    closing, counts = _closing_events(session, ids), _event_counts(session, ids)
    working = [run.id for run in runs if run_status(run) not in ("finished", "skipped")]
    percents = await latest_progress(client, working)
    return [run_view(run, closing.get(str(run.id)), counts.get(str(run.id), 0), percents.get(run.id)) for run in runs]


def _run_filter(tenant: str, task_ids: list[str], statuses: list[str], start: datetime, end: datetime) -> FlowRunFilter:
    tags = FlowRunFilterTags(all_=[TAG, f"app:{tenant}"], any_=[f"task:{t}" for t in task_ids] or None)
    names = [name for status in statuses for name in STATE_NAMES[status]]
    return FlowRunFilter(
        tags=tags,
        expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=end),
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=names)) if names else None,
    )


RUN_SORT = {("createdAt", "asc"): FlowRunSort.EXPECTED_START_TIME_ASC,
            ("createdAt", "desc"): FlowRunSort.EXPECTED_START_TIME_DESC,
            ("updatedAt", "asc"): FlowRunSort.START_TIME_ASC,
            ("updatedAt", "desc"): FlowRunSort.START_TIME_DESC}  # fmt: skip


async def list_runs(
    client: PrefectClient, session: Session, tenant: str, *, page: int, items_per_page: int, statuses: list[str],
    task_ids: list[str], sort: str, order: str, start: datetime, end: datetime,
) -> tuple[list[dict[str, Any]], dict[str, int]]:  # fmt: skip
    flow_filter = _run_filter(tenant, task_ids, statuses, start, end)
    total = await client.count_flow_runs(flow_run_filter=flow_filter)
    offset = (page - 1) * items_per_page
    if sort == "status":  # Prefect cannot sort by our status: sort the window here
        if total > STATUS_SORT_LIMIT:
            raise InvalidInput(f"{total} runs in the window: narrow it (startDate/endDate) to sort by status")
        runs: list[FlowRun] = []
        while len(runs) < total:  # Prefect answers at most PREFECT_READ_LIMIT runs a request
            batch = await client.read_flow_runs(flow_run_filter=flow_filter, offset=len(runs), limit=PREFECT_READ_LIMIT,
                                                sort=FlowRunSort.EXPECTED_START_TIME_DESC)  # fmt: skip
            runs.extend(batch)
            if len(batch) < PREFECT_READ_LIMIT:
                break
        runs.sort(key=lambda run: RUN_STATUSES.index(run_status(run)), reverse=order == "desc")  # lifecycle order
        runs = runs[offset : offset + items_per_page]
    else:
        runs = await client.read_flow_runs(flow_run_filter=flow_filter, sort=RUN_SORT[sort, order], offset=offset,
                                           limit=items_per_page)  # fmt: skip
    return await _views(client, session, runs), pagination_of(total, page, items_per_page)


async def read_run(client: PrefectClient, tenant: str, run_id: str) -> FlowRun:
    """The application's run; another application's (or any other flow run) is not found, nor an id
    in another form than the one runs are shown with (events are stored under that one)."""
    try:
        if str(UUID(run_id)) != run_id:
            raise ValueError(run_id)
        run = await client.read_flow_run(UUID(run_id))
    except (ValueError, ObjectNotFound):
        raise NotFound(f"Run {run_id} not found") from None
    if TAG not in run.tags or _tag(run, "app") != tenant:
        raise NotFound(f"Run {run_id} not found")
    return run


async def get_run(client: PrefectClient, session: Session, tenant: str, run_id: str) -> dict[str, Any]:
    return (await _views(client, session, [await read_run(client, tenant, run_id)]))[0]


async def start_run(client: PrefectClient, task: ConnectorTask, trigger: str) -> FlowRun:
    """A flow run of the task, created now; the runner picks it up within a second or two."""
    deployment = await client.read_deployment_by_name(DEPLOYMENT)
    return await client.create_flow_run_from_deployment(
        deployment.id, parameters={"task_id": task.id, "trigger": trigger}, tags=run_tags(task)
    )


async def start_discover(client: PrefectClient, source: ConnectorSource) -> FlowRun:
    deployment = await client.read_deployment_by_name(DISCOVER_DEPLOYMENT)
    return await client.create_flow_run_from_deployment(
        deployment.id, parameters={"source_id": source.id}, tags=discover_tags(source)
    )


async def live_run(client: PrefectClient, task: ConnectorTask) -> FlowRun | None:
    """A run of the task that has not started yet (subscription events coalesce into it)."""
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[TAG, f"task:{task.id}"]),
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=list(STATE_NAMES["created"]))),
        ),
        limit=1,
    )
    return runs[0] if runs else None


# --- schedules -------------------------------------------------------------------------------------


def schedule_slug(task_id: str) -> str:
    return f"task-{task_id}"


def sync_schedules(client: SyncPrefectClient, session: Session) -> dict[str, int] | None:
    """Make the deployment's schedules match the app database's schedule tasks: one per live task,
    active while it is enabled. Returns counts of what changed; None before the deployment exists."""
    try:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    except ObjectNotFound:
        return None
    tasks = session.exec(
        select(ConnectorTask).where(ConnectorTask.trigger_type == "schedule", col(ConnectorTask.deleted_at).is_(None))
    ).all()
    wanted = {schedule_slug(t.id): t for t in tasks}
    existing = {s.slug: s for s in client.read_deployment_schedules(deployment.id) if s.slug}
    changed = {"created": 0, "updated": 0, "deleted": 0}
    for slug, schedule in existing.items():
        if slug.startswith("task-") and slug not in wanted:
            client.delete_deployment_schedule(deployment.id, schedule.id)
            changed["deleted"] += 1
    create = []
    for slug, task in wanted.items():
        cron = CronSchedule(cron=task.cron, timezone="UTC")
        parameters = {"task_id": task.id, "trigger": "schedule"}
        have = existing.get(slug)
        if have is None:
            create.append(
                DeploymentScheduleCreate(schedule=cron, active=task.enabled, parameters=parameters, slug=slug)
            )
        elif have.active != task.enabled or getattr(have.schedule, "cron", None) != task.cron:
            client.update_deployment_schedule(deployment.id, have.id, active=task.enabled, schedule=cron)
            changed["updated"] += 1
    if create:
        client.create_deployment_schedules(deployment.id, create)
        changed["created"] = len(create)
    return changed
