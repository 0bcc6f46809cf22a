"""A connector task run, for every source type: read the source in chunks, shape the records,
write them into the destination index.

Every chunk is a task run in the Prefect UI (``chunk-N``) and three events in the API
(``fetch`` → ``transform`` → ``record``); the run ends with a ``log`` event holding its outcome.
``replace`` fills a fresh index and swaps it in only when the run succeeds, so a failed run leaves
the live index as it was. A run fails when the share of failed records exceeds the task's
``failureThreshold`` (0 when unset); after ``MAX_CRITICAL_FAILURES`` runs in a row that could not
read or write at all, the task is disabled, as Algolia does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from sqlalchemy.engine import Engine
from sqlmodel import Session

from blocks.search_engine import engine_from_settings
from sluice import connector_runs as runs
from sluice import connectors as store
from sluice.db import get_engine
from sluice.errors import ConfigurationError, EngineUnavailable, InvalidInput, NotFound
from sluice.models import ConnectorEvent, ConnectorTask
from sluice.search import BulkResult
from sluice.settings import get_settings
from tasks.destinations import IndexWriter, alias_name
from tasks.progress import progress_artifact
from tasks.sources.base import SourceError
from tasks.sources.registry import source_class
from tasks.transform import Chunk, Transform

MAX_CRITICAL_FAILURES = 5
SAMPLE = 10  # errors kept per event


@dataclass
class EventLog:
    """The run's events, stamped as they happen and stored by ``flush`` (once per chunk: one commit,
    not three)."""

    db: Engine
    run_id: str
    task: ConnectorTask
    pending: list[ConnectorEvent] = field(default_factory=list)

    def add(self, type_: str, status: str, batch_size: int = 0, data: dict[str, Any] | None = None,
            parent_id: str | None = None) -> str:  # fmt: skip
        self.pending.append(runs.new_event(self.run_id, self.task, type_, status, batch_size, data, parent_id))
        return self.pending[-1].id

    def flush(self) -> None:
        if self.pending:
            with Session(self.db) as session:
                session.add_all(self.pending)
                session.commit()
            self.pending.clear()


@dataclass
class Totals:
    rows: int = 0
    failed: int = 0
    indexed: int = 0
    errors: list[str] = field(default_factory=list)

    def percent_failed(self) -> float:
        return 100.0 * self.failed / self.rows if self.rows else 0.0


@task(name="sync-chunk", cache_policy=NONE, task_run_name="chunk-{number}")
def sync_chunk(rows: Chunk, number: int, transform: Transform, writer: IndexWriter, log: EventLog,
               totals: Totals) -> int:  # fmt: skip
    """Shape and write one chunk; returns the records written. (Its events are stored at the end, or
    with the run's closing event when writing fails.)"""
    fetched = log.add("fetch", "succeeded", len(rows), {"chunk": number})
    records, errors = transform.records(rows)
    if writer.action == "partial":  # a partial update names the record it changes
        errors += [f"record {r.get('objectID')!r}: a partial update needs an objectID (uniqueIDColumn)"
                   for r in records if not r.get("objectID")]  # fmt: skip
        records = [r for r in records if r.get("objectID")]
    status = "failed" if errors else "succeeded"
    data = {"transformed": len(records), "failed": len(errors), "errors": errors[:SAMPLE]}
    shaped = log.add("transform", status, len(records), data, fetched)
    result = writer.write(records) if records else BulkResult()
    refused = [f"{e.id}: {e.status} {e.reason}" for e in result.errors]
    log.add("record", "failed" if refused else "succeeded", len(records),
            {"indexed": result.succeeded, "failed": len(refused), "errors": refused[:SAMPLE],
             "samples": [r.get("objectID") for r in records[:3]]}, shaped)  # fmt: skip
    totals.rows += len(rows)
    totals.failed += len(errors) + len(refused)
    totals.indexed += result.succeeded
    totals.errors.extend((errors + refused)[: max(0, SAMPLE - len(totals.errors))])
    log.flush()
    return result.succeeded


def _load(db: Engine, task_id: str) -> tuple[ConnectorTask, Any, Any, dict[str, Any] | None] | None:
    """The task, its source and destination, and the source's decrypted credentials; None when the
    task (or what it uses) was deleted."""
    with Session(db) as session:
        row = session.get(ConnectorTask, task_id)
        if row is None or row.deleted_at is not None:
            return None
        try:
            source = store.get(session, store.SOURCES, row.tenant, row.source_id)
            destination = store.get(session, store.DESTINATIONS, row.tenant, row.destination_id)
        except NotFound:
            return None
        secret = store.source_secret(session, source)
        session.expunge_all()
        return row, source, destination, secret


def _tag_run(task_row: ConnectorTask) -> None:
    """A scheduled run was created by Prefect's scheduler without our tags: add them, so the run
    shows in its application's ``/1/runs``."""
    run_id = flow_run.get_id()
    wanted = runs.run_tags(task_row)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if not set(wanted) <= set(run.tags):
            client.update_flow_run(run_id, tags=sorted(set(run.tags) | set(wanted)))


def _finish(db: Engine, task_id: str, critical: bool, state: dict[str, Any] | None = None) -> bool:
    """Record the run on the task (and, after a success, where an incremental source got to);
    returns True when the task was disabled for failing too often."""
    with Session(db) as session:
        row = session.get(ConnectorTask, task_id)
        row.last_run = datetime.now(UTC)
        if state is not None:
            row.cursor = state
        row.consecutive_failures = row.consecutive_failures + 1 if critical else 0
        disabled = critical and row.enabled and row.consecutive_failures >= MAX_CRITICAL_FAILURES
        if disabled:
            row.enabled, row.updated_at = False, datetime.now(UTC)
        session.add(row)
        session.commit()
        if disabled and row.trigger_type == "schedule":
            with get_client(sync_client=True) as client:
                runs.sync_schedules(client, session)
    return disabled


@flow(name=runs.FLOW, flow_run_name="task-{task_id}")
def run_connector_task(task_id: str, trigger: str = "onDemand") -> State:
    """Sync one connector task's source into its destination index."""
    logger = get_run_logger()
    settings = get_settings()
    db = get_engine(settings.database_url)
    loaded = _load(db, task_id)
    if loaded is None:
        return Completed(name=runs.SKIPPED, message=f"task {task_id} no longer exists")
    task_row, source_row, destination_row, secret = loaded
    _tag_run(task_row)
    log = EventLog(db, str(flow_run.get_id()), task_row)
    if trigger == "schedule" and not task_row.enabled:
        log.add("log", "succeeded", data={"outcome": "success", "reasonCode": "ok",
                                          "reason": "skipped: the task is disabled"})  # fmt: skip
        log.flush()
        return Completed(name=runs.SKIPPED, message="the task is disabled")

    threshold = task_row.failure_threshold or 0
    destination = destination_row.input
    index_name = destination.get("indexName") or destination.get("indexPrefix", "") + source_row.name
    engine = engine_from_settings(settings)
    writer = IndexWriter(engine, alias_name(task_row.tenant, index_name), task_row.action,
                         str(flow_run.get_id()).replace("-", ""))  # fmt: skip
    totals, failure, source = Totals(), None, None
    progress = progress_artifact(f"Syncing source {source_row.name!r} into {index_name!r} ({task_row.action})")
    try:
        # A replace rebuilds the whole index, so it reads the whole source: no resuming from a cursor.
        state = task_row.cursor if task_row.action != "replace" else None
        source = source_class(source_row.type)(source_row.input, secret, task_input=task_row.input, state=state,
                                               scheduled=trigger == "schedule")  # fmt: skip
        source.record_type = destination.get("recordType") or "product"
        source.validate_config()
        transform = Transform(mapping=source_row.input.get("mapping") or {},
                              unique_id_column=source_row.input.get("uniqueIDColumn"),
                              exclude=destination.get("attributesToExclude") or [])  # fmt: skip
        for number, rows in enumerate(source.get_docs(settings.CONNECTOR_CHUNK_SIZE), start=1):
            sync_chunk(quote(rows), number, quote(transform), quote(writer), quote(log), quote(totals))
            logger.info("chunk %d: %d rows read, %d records written so far", number, totals.rows, totals.indexed)
            if (fraction := source.progress()) is not None:  # sources of unknown size show 0 until done
                progress(min(99.0, 100 * fraction))
    except (SourceError, ConfigurationError, InvalidInput, EngineUnavailable, KeyError) as exc:
        failure = "critical", str(exc).strip("'\"") or type(exc).__name__
    except Exception as exc:  # a bug of ours: still report it and clean up, but never disable the task for it
        logger.exception("the run failed unexpectedly")
        failure = "internal", f"{type(exc).__name__}: {exc}"

    summary: dict[str, Any] = {"failureThreshold": threshold, "rows": totals.rows, "indexed": totals.indexed,
                               "failed": totals.failed, "errors": totals.errors, "index": index_name}  # fmt: skip
    if failure is not None:
        code, reason = failure
    elif totals.percent_failed() > threshold:
        code = "too_many_errors"
        reason = (f"{totals.failed} of {totals.rows} records failed ({totals.percent_failed():.1f}%), "
                  f"above the failure threshold of {threshold}%")  # fmt: skip
    elif totals.rows == 0:
        code, reason = "no_events", "the source gave no records"
    else:
        code, reason = "ok", f"{totals.indexed} records written to {index_name}"

    ok = code in ("ok", "no_events")
    try:
        if ok and (totals.rows or task_row.action != "replace"):
            writer.commit()
        else:  # a failed (or empty) replace leaves the live index as it was
            writer.abort()
            if code == "no_events":
                reason += "; the index was left as it was"
    except EngineUnavailable as exc:  # a new index left behind is never served (the alias did not move)
        code, reason, ok = "critical", f"the search engine is unavailable: {exc}", False
    except Exception as exc:  # e.g. an index squatting the alias name: the live data is untouched
        logger.exception("could not finish writing")
        code, reason, ok = "internal", f"{type(exc).__name__}: {exc}", False
        writer.abort()

    saved = source.state if ok and source is not None and task_row.action != "replace" else None
    disabled = _finish(db, task_id, critical=code == "critical", state=saved)
    if disabled:
        reason += f"; the task failed {MAX_CRITICAL_FAILURES} times in a row and is now disabled"
    summary |= {"outcome": "success" if ok else "failure", "reasonCode": code, "reason": reason}
    log.add("log", "succeeded" if ok else ("critical" if code == "critical" else "failed"), 0, summary)
    log.flush()
    progress(100)
    logger.info("%s: %s", code, reason)
    return Completed(message=reason) if ok else Failed(message=reason)
