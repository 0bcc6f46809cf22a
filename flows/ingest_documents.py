"""Document processing for the ingestion API: one long-running flow that takes stored work from the
app database and brings the search index in line with it.

Why one long run and not a flow run per request: starting a flow run costs seconds, and the API
promises documents indexed within a few seconds at a thousand documents a second. The API only
stores the batch (durably, in one transaction) and returns; this flow notices it within
``PROCESS_POLL_INTERVAL`` and works in passes. Every pass that finds work is a task run in the
Prefect UI, named for what it did. ``sluice up`` keeps exactly one run of this flow going.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote
from sqlmodel import Session, col, select

from blocks.search_engine import engine_from_settings
from sluice.db import get_engine
from sluice.errors import EngineUnavailable
from sluice.models import Document
from sluice.search import SearchEngine
from sluice.settings import Settings, get_settings
from tasks import documents as steps

MAX_BACKOFF = 30.0


@task(name="index-documents", cache_policy=NONE, task_run_name="index-{count}-documents")
def index_documents(work: list[steps.Work], count: int, engine: SearchEngine, known: set[str]) -> str:
    """Fetch, extract and index one pass of claimed documents; record each outcome."""
    settings = get_settings()
    db_engine = get_engine(settings.database_url)
    outcomes = steps.prepare_all(work, settings)
    steps.mark_for_quarantine(db_engine, outcomes)
    try:
        steps.write_outcomes(engine, outcomes, known)
    except EngineUnavailable:
        steps.release(db_engine, work)  # back in the queue, untouched: the next pass retries
        raise
    report = steps.record_outcomes(db_engine, outcomes)
    get_run_logger().info("%d documents: %s", count, report)
    return str(report)


@task(name="apply-deletes-and-access-rights", cache_policy=NONE)
def apply_changes(engine: SearchEngine, settings: Settings) -> tuple[int, int]:
    db_engine = get_engine(settings.database_url)
    deleted = steps.apply_deletions(db_engine, engine, settings.PROCESS_BATCH_SIZE)
    rights = steps.apply_access_rights(db_engine, engine, settings.PROCESS_BATCH_SIZE)
    return deleted, rights


def has_changes(settings: Settings) -> bool:
    """A cheap look (two indexed lookups) so idle passes create no task runs."""
    with Session(get_engine(settings.database_url)) as session:
        for clause in (Document.status == steps.S.MARKED_FOR_DELETION.value, col(Document.rights_pending)):
            if session.exec(select(Document.id).where(clause).limit(1)).first() is not None:
                return True
    return False


@flow(name="process-documents", log_prints=False)
def process_documents(until_idle: bool = False, max_hours: float = 24.0) -> int:
    """Process stored document work until cancelled, or for ``max_hours`` (the runner then starts the
    next run, so run history can age out), or with ``until_idle`` until none is left.
    Returns how many documents it handled."""
    logger = get_run_logger()
    settings = get_settings()
    db_engine = get_engine(settings.database_url)
    engine = engine_from_settings(settings)
    released = steps.release_claims(db_engine)
    if released:
        logger.info("%d documents claimed by a previous run are queued again", released)
    known: set[str] = set()  # search indexes known to exist
    handled, backoff = 0, 0.0
    ends = time.monotonic() + max_hours * 3600
    while time.monotonic() < ends:
        try:
            work = steps.claim_documents(db_engine, settings.PROCESS_BATCH_SIZE)
            if work:
                index_documents(quote(work), len(work), engine, known)
                handled += len(work)
            if has_changes(settings):
                deleted, rights = apply_changes(engine, settings)
                handled += deleted + rights
                work = work or bool(deleted or rights)
            backoff = 0.0
        except EngineUnavailable as exc:
            backoff = min(MAX_BACKOFF, max(1.0, backoff * 2))
            logger.warning("search engine unavailable (%s); retrying in %.0f s", exc, backoff)
            known.clear()
            time.sleep(backoff)
            continue
        if not work:
            if until_idle:
                return handled
            time.sleep(settings.PROCESS_POLL_INTERVAL)
    return handled
