"""Discovering a source's streams (``POST /1/sources/{id}/discover``): run the tap's discover mode
and keep the streams it lists on the source, for ``GET /1/sources/{id}/discover``.

A discover run is a run of its application (``type: discover``) with one closing ``log`` event; a
failed discover keeps the streams found before.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from sqlmodel import Session

from sluice import connector_runs as runs
from sluice import connectors as store
from sluice.db import get_engine
from sluice.errors import ConfigurationError
from sluice.models import ConnectorSource
from sluice.settings import get_settings
from tasks.sources.base import SourceError
from tasks.sources.registry import source_class


@flow(name=runs.DISCOVER_FLOW, flow_run_name="discover-{source_id}")
def discover_source(source_id: str) -> State:
    """List the streams of one source and keep them on it."""
    with Session(get_engine(get_settings().database_url)) as session:
        row = session.get(ConnectorSource, source_id)
        if row is None or row.deleted_at is not None:
            return Completed(name=runs.SKIPPED, message=f"source {source_id} no longer exists")
        run_id = str(flow_run.get_id())
        try:
            source = source_class(row.type)(row.input, store.source_secret(session, row))
            source.validate_config()
            streams = source.discover()
        except (SourceError, ConfigurationError, KeyError) as exc:
            reason = str(exc).strip("'\"")
            runs.add_event(session, run_id, row, "log", "critical", data={
                "outcome": "failure", "reasonCode": "critical", "reason": reason})  # fmt: skip
            return Failed(message=reason)
        row.streams, row.discovered_at = streams, datetime.now(UTC)
        session.add(row)
        session.commit()
        reason = f"{len(streams)} streams discovered"
        runs.add_event(session, run_id, row, "log", "succeeded", len(streams), {
            "outcome": "success", "reasonCode": "ok", "reason": reason,
            "streams": [s.get("tap_stream_id") or s.get("stream") for s in streams]})  # fmt: skip
        get_run_logger().info(reason)
        return Completed(message=reason)
