"""The index-lifecycle API (Openverse ingestion server): ``/task`` and ``/stat``.

A task is a Prefect flow run: its id is the flow-run id, and its status, progress, error and
timestamps are read from Prefect, so this API and the Prefect UI always tell the same story.
"""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, status
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from api.deps import PrefectDep, SearchEngineDep, SettingsDep
from deployments import TASK_TAG, deployment_name
from sluice.errors import Conflict, InvalidInput, NotFound
from sluice.schemas import Action, IndexStat, TaskCreate, TaskCreated, TaskPage, TaskStatus
from sluice.search import SearchEngine
from tasks import indices
from tasks.progress import latest_progress

router = APIRouter(tags=["index lifecycle"])

ACTIVE_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]
ERROR_STATES = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
INDEX_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,254}$"  # no wildcards or lists: one name, one answer
BAD_REQUEST_ERRORS = ("InvalidInput", "Conflict")  # exception names that mean the request was at fault


def _preflight(engine: SearchEngine, body: TaskCreate) -> None:
    """Refuse at once what the flow would refuse (it checks again when it runs)."""
    model, action = body.model, body.action
    if action in (Action.REINDEX, Action.PROMOTE) and body.index_suffix:
        indices.check_new_index(engine, indices.index_name(model, body.index_suffix))
        if action is Action.PROMOTE:
            indices.check_new_index(engine, indices.filtered_name(model, body.index_suffix))
    elif action is Action.UPDATE_INDEX:
        indices.check_source(engine, indices.index_name(model, body.index_suffix) if body.index_suffix else model)
    elif action is Action.CREATE_AND_POPULATE_FILTERED_INDEX:
        origin = body.origin_index_suffix
        indices.check_source(engine, indices.index_name(model, origin) if origin else model)
        if suffix := body.destination_index_suffix or origin:
            indices.check_new_index(engine, indices.filtered_name(model, suffix))
    elif action is Action.POINT_ALIAS:
        indices.check_point_alias(engine, indices.index_name(model, body.index_suffix), body.alias)
    elif action is Action.DELETE_INDEX:
        indices.check_delete_index(engine, indices.index_name(model, body.index_suffix))


def _tag_value(run: FlowRun, key: str) -> str | None:
    return next((tag.split(":", 1)[1] for tag in run.tags if tag.startswith(f"{key}:")), None)


def _status(run: FlowRun, progress: float | None) -> TaskStatus:
    state = run.state
    state_type = state.type if state else StateType.SCHEDULED
    message = state.message if state and state_type in ERROR_STATES else None
    done = state_type is StateType.COMPLETED
    return TaskStatus(
        task_id=str(run.id),
        active=state_type in ACTIVE_STATES,
        model=_tag_value(run, "model"),
        action=_tag_value(run, "action"),
        progress=100.0 if done else (progress or 0.0),
        state=state.name if state else "Scheduled",
        start_timestamp=run.start_time.timestamp() if run.start_time else None,
        start_time=run.start_time,
        finish_timestamp=run.end_time.timestamp() if run.end_time else None,
        finish_time=run.end_time,
        error=state_type in ERROR_STATES,
        error_message=message,
        is_bad_request=bool(message and any(f"{name}:" in message for name in BAD_REQUEST_ERRORS)),
        parameters=run.parameters,
    )


async def _read_task(client: PrefectClient, task_id: str) -> FlowRun:
    try:
        run = await client.read_flow_run(UUID(task_id))
    except (ValueError, ObjectNotFound):
        raise NotFound(f"no task {task_id!r}") from None
    if TASK_TAG not in run.tags:
        raise NotFound(f"no task {task_id!r}")
    return run


def _tag_filter(*tags: str, active: bool = False) -> FlowRunFilter:
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE_STATES)) if active else None
    return FlowRunFilter(tags=FlowRunFilterTags(all_=[TASK_TAG, *tags]), state=state)


@router.post("/task", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreated)
async def create_task(
    *, body: TaskCreate, engine: SearchEngineDep, client: PrefectDep, settings: SettingsDep
) -> TaskCreated:
    """Start a lifecycle action as a Prefect flow run; 409 while another runs for the same model."""
    running = await client.read_flow_runs(flow_run_filter=_tag_filter(f"model:{body.model}", active=True), limit=1)
    if running:
        other = running[0]
        raise Conflict(
            f"task {other.id} ({_tag_value(other, 'action')}) is still running for model {body.model!r}; "
            "retry when it has finished"
        )
    await asyncio.to_thread(_preflight, engine, body)
    try:
        deployment = await client.read_deployment_by_name(deployment_name(body.action.value))
    except ObjectNotFound:
        raise InvalidInput(f"{body.action.value} is not served yet: is the runner up (`sluice up`)?") from None
    run = await client.create_flow_run_from_deployment(
        deployment.id,
        parameters=body.flow_parameters(),
        tags=[TASK_TAG, f"model:{body.model}", f"action:{body.action.value}"],
    )
    return TaskCreated(
        message=f"{body.action.value} for {body.model} scheduled",
        task_id=str(run.id),
        status_check=f"{settings.api_url}/task/{run.id}",
    )


@router.get("/task/{task_id}", response_model=TaskStatus)
async def read_task(*, task_id: str, client: PrefectDep) -> TaskStatus:
    """One task's status, progress, error and timestamps, from its flow run."""
    run = await _read_task(client, task_id)
    return _status(run, (await latest_progress(client, [run.id])).get(run.id))


@router.get("/task", response_model=TaskPage)
async def read_tasks(
    *,
    client: PrefectDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
    model: Annotated[str | None, Query(pattern="^(image|audio)$")] = None,
) -> TaskPage:
    """Tasks, newest first, a page at a time."""
    flow_filter = _tag_filter(*([f"model:{model}"] if model else []))
    count = await client.count_flow_runs(flow_run_filter=flow_filter)
    runs = await client.read_flow_runs(
        flow_run_filter=flow_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    progress = await latest_progress(client, [run.id for run in runs])
    return TaskPage(count=count, page=page, page_size=page_size, results=[_status(r, progress.get(r.id)) for r in runs])


@router.delete("/task/{task_id}", status_code=status.HTTP_202_ACCEPTED, response_model=TaskStatus)
async def cancel_task(*, task_id: str, client: PrefectDep) -> TaskStatus:
    """Cancel a task that has not finished; its flow removes any index it had half built."""
    run = await _read_task(client, task_id)
    state_type = run.state.type if run.state else None
    if state_type not in ACTIVE_STATES:
        raise Conflict(f"task {task_id} has already finished ({run.state.name if run.state else 'unknown'})")
    new_state = Cancelling() if state_type is StateType.RUNNING else Cancelled()
    await client.set_flow_run_state(run.id, new_state, force=True)
    run = await client.read_flow_run(run.id)
    return _status(run, (await latest_progress(client, [run.id])).get(run.id))


@router.get("/stat/{name}", response_model=IndexStat)
def read_stat(*, name: Annotated[str, Path(pattern=INDEX_NAME_PATTERN)], engine: SearchEngineDep) -> IndexStat:
    """Whether ``name`` exists, as an index or an alias, what it is tied to, and its size."""
    aliases = engine.get_aliases()
    if name in aliases:
        return IndexStat(exists=True, is_alias=True, alt_names=sorted(aliases[name]), count=engine.count(name))
    if engine.index_exists(name):
        holders = sorted(alias for alias, targets in aliases.items() if name in targets)
        return IndexStat(exists=True, is_alias=False, alt_names=holders, count=engine.count(name))
    return IndexStat(exists=False)
