"""Factories for connector-flow tests: an application ("shop") with an authentication, a source that
uses it, a search destination and an on-demand task; and what a run left behind."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from sluice import connectors as store
from sluice import credentials, db
from sluice.models import ConnectorEvent, ConnectorTask

TENANT = "shop"


def create_shop(url: str) -> None:
    """Migrate the app database at ``url`` and create the tenant the tasks belong to."""
    db.upgrade(url)
    with db.session(url) as session:
        credentials.create_tenant(session, TENANT)


def make_platform_task(url: str, *, auth_type: str, auth_input: dict[str, Any], source_type: str,
                       source_input: dict[str, Any], index: str, action: str = "replace",
                       record_type: str | None = None) -> str:  # fmt: skip
    """A task reading a platform source (with its own authentication) into ``index``; its id."""
    with db.session(url) as session:
        auth = store.create(session, store.AUTHENTICATIONS, TENANT, store.ResourceCreate(
            type=auth_type, name=f"{source_type} login", input=auth_input, platform=source_type))  # fmt: skip
        source = store.create(session, store.SOURCES, TENANT, store.ResourceCreate(
            type=source_type, name="catalog", input=source_input, authenticationID=auth.id))  # fmt: skip
        destination_input = {"indexName": index} | ({"recordType": record_type} if record_type else {})
        destination = store.create(session, store.DESTINATIONS, TENANT, store.ResourceCreate(
            type="search", name="idx", input=destination_input))  # fmt: skip
        task = store.create_task(session, TENANT, store.TaskCreate(
            sourceID=source.id, destinationID=destination.id, trigger={"type": "onDemand"}, action=action))  # fmt: skip
        return task.id


def run_summary(url: str, state) -> dict[str, Any]:
    """The closing ``log`` event of the flow run that ended in ``state`` (rows, indexed, reason...)."""
    with Session(db.get_engine(url)) as session:
        return session.exec(select(ConnectorEvent).where(
            ConnectorEvent.run_id == str(state.state_details.flow_run_id), ConnectorEvent.type == "log")).one().data  # fmt: skip


def task_cursor(url: str, task_id: str) -> dict[str, Any] | None:
    """The source state the task saved after its last successful run."""
    with db.session(url) as session:
        return session.get(ConnectorTask, task_id).cursor
