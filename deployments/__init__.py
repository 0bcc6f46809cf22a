"""Every deployment Sluice serves, declared in one place, and the runner that serves them."""

from __future__ import annotations

import logging
import threading
import time

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from blocks.search_engine import register_engine_blocks
from flows.discover_source import discover_source
from flows.finetune_collection import finetune_collection
from flows.index_lifecycle import FLOWS
from flows.ingest_documents import process_documents
from flows.run_connector_task import run_connector_task
from sluice import connector_runs, db
from sluice.settings import get_settings

DEPLOYMENT = "sluice"
TASK_TAG = "sluice-task"  # marks the flow runs the /task API created and lists
PROCESSOR = f"{process_documents.name}/{DEPLOYMENT}"
KEEPER_INTERVAL = 5.0  # seconds between checks that the document processor runs
SCHEDULES_INTERVAL = 30.0  # seconds between re-syncs of task schedules (the API also syncs on each change)
LIVE_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]

logger = logging.getLogger("sluice.deployments")


def deployment_name(action: str) -> str:
    """``flow-name/deployment-name`` of the deployment that runs ``action``."""
    return f"{FLOWS[action].name}/{DEPLOYMENT}"


def lifecycle_deployments() -> list:
    return [
        flow.to_deployment(name=DEPLOYMENT, tags=["sluice", "index-lifecycle"], description=flow.description)
        for flow in FLOWS.values()
    ]


def processor_deployment():
    # One run at a time: the processor's claims assume it is alone (see flows/ingest_documents.py).
    return process_documents.to_deployment(
        name=DEPLOYMENT, tags=["sluice", "document-ingestion"], description=process_documents.description,
        concurrency_limit=1,
    )  # fmt: skip


def connector_deployments() -> list:
    # Schedules are not declared here: they belong to tasks, and sync_task_schedules adds them.
    return [
        flow.to_deployment(name=DEPLOYMENT, tags=["sluice", "connectors"], description=flow.description)
        for flow in (run_connector_task, discover_source)
    ]


def collection_deployments() -> list:
    return [finetune_collection.to_deployment(name=DEPLOYMENT, tags=["sluice", "image-collections"],
                                              description=finetune_collection.description)]  # fmt: skip


def sync_task_schedules() -> dict[str, int] | None:
    """One schedule per connector schedule-task (applying the deployment dropped them all)."""
    with get_client(sync_client=True) as client, db.session(get_settings().database_url) as session:
        return connector_runs.sync_schedules(client, session)


def ensure_processor_running() -> bool | None:
    """Start a run of the document processor unless one is live or its deployment is paused.
    True when it started one, False when none was needed, None before the deployment exists."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(PROCESSOR)
        except ObjectNotFound:
            return None
        if deployment.paused:
            return False
        live = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE_STATES))),
            limit=1,
        )
        if live:
            return False
        client.create_flow_run_from_deployment(deployment.id, tags=["sluice"])
        return True


def _keep_running(stop: threading.Event) -> None:
    """Keep the document processor running and the task schedules in line with the app database."""
    interval, synced_at = 1.0, 0.0  # 1 s until serve() has registered the deployments
    while not stop.wait(interval):
        try:
            started = ensure_processor_running()
            if time.monotonic() - synced_at > SCHEDULES_INTERVAL:
                changed = sync_task_schedules()
                if changed is not None:
                    synced_at = time.monotonic()
                    if any(changed.values()):
                        logger.info("task schedules synced: %s", changed)
        except Exception as exc:  # the Prefect server restarting must not kill the runner
            logger.warning("could not check the document processor or the task schedules: %s", exc)
            continue
        if started:
            logger.info("started the document processor (%s)", PROCESSOR)
        if started is not None:
            interval = KEEPER_INTERVAL


def serve_all(limit: int = 8) -> None:
    """Register the block types and every deployment, keep the document processor running, then run
    flow runs until stopped (blocks). Pause the processor's deployment in the UI to stop processing."""
    register_engine_blocks()
    stop = threading.Event()
    threading.Thread(target=_keep_running, args=(stop,), name="keeper", daemon=True).start()
    try:
        serve(
            *lifecycle_deployments(),
            processor_deployment(),
            *connector_deployments(),
            *collection_deployments(),
            limit=limit,
        )
    finally:
        stop.set()
