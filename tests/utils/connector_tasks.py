"""Factories for connector-flow tests: an application ("shop") with an authentication, a source that
uses it, a search destination and an on-demand task; and what a run left behind."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from sluice import credentials, db
from sluice.models import ConnectorEvent, ConnectorTask

TENANT = "shop"


def create_shop(url: str) -> None:
    """Migrate the app database at ``url`` and create the tenant the tasks belong to."""
    db.upgrade(url)
    with db.session(url) as session:
        credentials.create_tenant(session, TENANT)


def api_task(url: str, *, source_type: str, source_input: dict[str, Any], index: str, action: str = "replace",
             auth_type: str | None = None, auth_input: dict[str, Any] | None = None, record_type: str | None = None,
             task_input: dict[str, Any] | None = None) -> str:  # fmt: skip
    """A task made through the connectors API, as a user makes it: an authentication (when given),
    a source using it, a search destination on ``index`` and an on-demand task. Returns its id."""
    from fastapi.testclient import TestClient

    from api.main import app

    with db.session(url) as session:
        key = credentials.create_key(session, TENANT, ["connectors-admin"])[1]
    headers = {"X-Algolia-Application-Id": TENANT, "X-Algolia-API-Key": key}
    with TestClient(app) as client:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        source = {"type": source_type, "name": "catalog", "input": source_input}
        if auth_type is not None:
            auth = post("/1/authentications", {"type": auth_type, "name": f"{source_type} login", "input": auth_input,
                                               **({"platform": source_type} if source_type in ("bigcommerce", "commercetools") else {})})  # fmt: skip
            source["authenticationID"] = auth["authenticationID"]
        source_id = post("/1/sources", source)["sourceID"]
        destination = post("/1/destinations", {"type": "search", "name": "idx", "input": {
            "indexName": index, **({"recordType": record_type} if record_type else {})}})["destinationID"]  # fmt: skip
        task = {"sourceID": source_id, "destinationID": destination, "trigger": {"type": "onDemand"}, "action": action}
        return post("/1/tasks", task | ({"input": task_input} if task_input else {}))["taskID"]


def make_platform_task(url: str, *, auth_type: str, auth_input: dict[str, Any], source_type: str,
                       source_input: dict[str, Any], index: str, action: str = "replace",
                       record_type: str | None = None) -> str:  # fmt: skip
    """A task reading a platform source (with its own authentication) into ``index``; its id."""
    return api_task(
        url,
        source_type=source_type,
        source_input=source_input,
        index=index,
        action=action,
        auth_type=auth_type,
        auth_input=auth_input,
        record_type=record_type,
    )


def run_summary(url: str, state) -> dict[str, Any]:
    """The closing ``log`` event of the flow run that ended in ``state`` (rows, indexed, reason...)."""
    with Session(db.get_engine(url)) as session:
        return session.exec(select(ConnectorEvent).where(
            ConnectorEvent.run_id == str(state.state_details.flow_run_id), ConnectorEvent.type == "log")).one().data  # fmt: skip


def task_cursor(url: str, task_id: str) -> dict[str, Any] | None:
    """The source state the task saved after its last successful run."""
    with db.session(url) as session:
        return session.get(ConnectorTask, task_id).cursor
