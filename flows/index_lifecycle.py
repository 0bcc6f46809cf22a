"""The index lifecycle (Openverse's ingestion server, made safe): build an index from the app
database, build its filtered twin, point aliases atomically, delete old indexes, promote.

Every flow holds its model's lock for its whole run, so lifecycle work on one model never
interleaves. A failed build removes the indexes it created; live aliases only ever move in one
atomic update at the very end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Literal

import httpx
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from blocks.search_engine import engine_from_settings
from sluice.db import get_engine
from sluice.errors import Conflict, EngineUnavailable, IndexNotReady
from sluice.search import AliasAction, Phrase, SearchEngine
from sluice.settings import get_settings
from tasks import indices
from tasks.bulk import bulk_index_batch
from tasks.media import (
    LIVE_SETTINGS,
    SENSITIVE_FIELDS,
    count_rows,
    index_mappings,
    index_settings,
    read_documents,
)
from tasks.progress import Progress, progress_artifact, scaled
from tasks.sensitive import load_sensitive_terms

Model = Literal["image", "audio"]
LOCK_PREFIX = "sluice-lifecycle-"
CLEANUP_TIMEOUT = 120.0  # seconds to wait for an unreachable engine before leaving a partial index

_held_locks: ContextVar[frozenset[str]] = ContextVar("sluice_held_locks", default=frozenset())

# --- plumbing: locks, progress, callbacks ------------------------------------------------------


def ensure_lock(model: str) -> None:
    """Create the model's global concurrency limit (one slot) if it is missing."""
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=LOCK_PREFIX + model, limit=1))
        except ObjectAlreadyExists:
            pass


@contextmanager
def model_lock(model: str) -> Iterator[None]:
    """Hold the model's lifecycle lock; a subflow of the holder passes straight through."""
    if model in _held_locks.get():
        yield
        return
    ensure_lock(model)
    acquired = False
    try:
        with concurrency(LOCK_PREFIX + model, occupy=1, timeout_seconds=get_settings().LOCK_TIMEOUT, strict=True):
            acquired = True
            token = _held_locks.set(_held_locks.get() | {model})
            try:
                yield
            finally:
                _held_locks.reset(token)
    except AcquireConcurrencySlotTimeoutError as exc:
        if acquired:
            raise
        raise Conflict(f"another lifecycle task for {model!r} is running; retry when it has finished") from exc


def notify_callback(flow, run, state) -> None:  # noqa: ARG001 - Prefect hook signature
    """POST the outcome to the task's ``callback_url`` (best effort; the run's state is the truth)."""
    url = (run.parameters or {}).get("callback_url")
    if not url:
        return
    body = {"task_id": str(run.id), "flow": run.name, "state": state.type.value, "message": state.message}
    try:
        httpx.post(url, json=body, timeout=10)
    except httpx.HTTPError as exc:
        get_run_logger().warning("callback to %s failed: %s", url, exc)


def run_suffix() -> str:
    """Default index suffix: this flow run's id, so the index name leads back to its run."""
    return (flow_run.get_id() or "").replace("-", "") or f"{time.time_ns():x}"


def remove_partial(engine: SearchEngine, names: list[str]) -> None:
    """Delete indexes this run created, waiting out an unreachable engine; never one behind an alias."""
    logger = get_run_logger()
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    for name in names:
        while True:
            try:
                if engine.index_exists(name) and not indices.alias_holders(engine, name):
                    engine.delete_index(name)
                    logger.info("removed partial index %s", name)
                break
            except EngineUnavailable as exc:
                if time.monotonic() > deadline:
                    logger.error("could not remove partial index %s: %s", name, exc)
                    break
                time.sleep(1.0)


@contextmanager
def building(engine: SearchEngine) -> Iterator[list[str]]:
    """Collect the indexes a build creates; on any failure remove them and re-raise."""
    created: list[str] = []
    try:
        yield created
    except BaseException:
        remove_partial(engine, created)
        raise


# --- steps ------------------------------------------------------------------------------------


def build_index(engine: SearchEngine, model: str, name: str, created: list[str], progress: Progress) -> int:
    """Create ``name`` and load every eligible row into it; returns the number of documents."""
    indices.check_new_index(engine, name)
    engine.create_index(name, index_mappings(model), index_settings())
    created.append(name)
    loaded = load_rows(engine, model, name, progress)
    engine.put_settings(name, LIVE_SETTINGS)
    engine.refresh(name)
    get_run_logger().info("loaded %d %s documents into %s", loaded, model, name)
    return loaded


def load_rows(engine: SearchEngine, model: str, index: str, progress: Progress, since: datetime | None = None) -> int:
    """Stream eligible rows into ``index`` batch by batch; a batch that still fails after its
    retries fails the run."""
    settings = get_settings()
    app_db = get_engine()
    total = max(count_rows(app_db, model, since), 1)
    load = bulk_index_batch.with_options(retries=settings.BULK_RETRIES, retry_delay_seconds=settings.BULK_RETRY_DELAY)
    loaded = 0
    for docs in read_documents(app_db, model, settings.READ_BATCH_SIZE, since):
        # quote(): Prefect would otherwise walk (and copy) every value of every document, twice.
        loaded += load(engine, index, quote(docs), settings.BULK_CHUNK_SIZE)
        progress(min(99.0, 100.0 * loaded / total))
        del docs  # let the page go before the next one is read
    return loaded


def check_ready(engine: SearchEngine, model: str, name: str, loaded: int) -> None:
    """Readiness gate: the index holds the expected documents, within the configured tolerance."""
    expected = max(loaded, count_rows(get_engine(), model))
    actual = engine.count(name)
    tolerance = get_settings().READINESS_TOLERANCE
    if actual < expected * (1 - tolerance):
        raise IndexNotReady(
            f"{name} holds {actual} documents, expected {expected} (tolerance {tolerance:.1%}); not promoting"
        )


def build_filtered(engine: SearchEngine, model: str, source: str, dest: str, created: list[str]) -> int:
    """Copy ``source`` into ``dest`` leaving out documents that contain a sensitive term."""
    terms = load_sensitive_terms(get_settings().SENSITIVE_TERMS)
    indices.check_new_index(engine, dest)
    engine.create_index(dest, index_mappings(model), index_settings())
    created.append(dest)
    copied = engine.copy_index(source, dest, exclude=[Phrase(SENSITIVE_FIELDS, tuple(terms))])
    engine.put_settings(dest, LIVE_SETTINGS)
    engine.refresh(dest)
    get_run_logger().info("copied %d of %d documents from %s into %s", copied, engine.count(source), source, dest)
    return copied


def move_aliases(engine: SearchEngine, targets: dict[str, str]) -> list[str]:
    """Point each alias at its index in one atomic update; returns the indexes they left."""
    current = engine.get_aliases()
    actions, previous = [], []
    for alias, index in targets.items():
        indices.check_point_alias(engine, index, alias)
        for old in current.get(alias, []):
            if old != index:
                actions.append(AliasAction("remove", old, alias))
                previous.append(old)
        actions.append(AliasAction("add", index, alias))
    engine.update_aliases(actions)
    return previous


# --- flows --------------------------------------------------------------------------------------

_hooks = {
    "on_completion": [notify_callback],
    "on_failure": [notify_callback],
    "on_crashed": [notify_callback],
}


@flow(name="reindex", flow_run_name="reindex-{model}", **_hooks)
def reindex(model: Model, index_suffix: str | None = None, callback_url: str | None = None) -> str:
    """REINDEX: build ``{model}-{suffix}`` from the app database."""
    engine = engine_from_settings(get_settings())
    name = indices.index_name(model, index_suffix or run_suffix())
    progress = progress_artifact(f"Indexing {model} rows into {name}")
    with model_lock(model), building(engine) as created:
        build_index(engine, model, name, created, progress)
    progress(100)
    return name


@flow(name="update-index", flow_run_name="update-index-{model}", **_hooks)
def update_index(
    model: Model, since_date: datetime, index_suffix: str | None = None, callback_url: str | None = None
) -> str:
    """UPDATE_INDEX: re-index rows updated since ``since_date`` into an index (default: the live alias)."""
    engine = engine_from_settings(get_settings())
    progress = progress_artifact(f"Updating {model} rows changed since {since_date:%Y-%m-%d %H:%M}")
    with model_lock(model):
        target = indices.check_source(engine, indices.index_name(model, index_suffix) if index_suffix else model)
        load_rows(engine, model, target, progress, since_date)
        engine.refresh(target)
    progress(100)
    return target


@flow(name="create-filtered-index", flow_run_name="create-filtered-index-{model}", **_hooks)
def create_filtered_index(
    model: Model,
    origin_index_suffix: str | None = None,
    destination_index_suffix: str | None = None,
    callback_url: str | None = None,
) -> str:
    """CREATE_AND_POPULATE_FILTERED_INDEX: copy an index without sensitive documents."""
    engine = engine_from_settings(get_settings())
    progress = progress_artifact(f"Filtering the {model} index")
    with model_lock(model), building(engine) as created:
        origin = indices.index_name(model, origin_index_suffix) if origin_index_suffix else model
        source = indices.check_source(engine, origin)
        suffix = destination_index_suffix or origin_index_suffix or run_suffix()
        dest = indices.filtered_name(model, suffix)
        build_filtered(engine, model, source, dest, created)
    progress(100)
    return dest


@flow(name="point-alias", flow_run_name="point-alias-{model}", **_hooks)
def point_alias(model: Model, index_suffix: str, alias: str | None = None, callback_url: str | None = None) -> str:
    """POINT_ALIAS: move ``alias`` (default: the model) to ``{model}-{suffix}`` atomically."""
    engine = engine_from_settings(get_settings())
    progress = progress_artifact(f"Pointing {alias or model}")
    with model_lock(model):
        index = indices.index_name(model, index_suffix)
        move_aliases(engine, {alias or model: index})
    progress(100)
    return index


@flow(name="delete-index", flow_run_name="delete-index-{model}", **_hooks)
def delete_index(model: Model, index_suffix: str, force_delete: bool = False, callback_url: str | None = None) -> str:
    """DELETE_INDEX: delete ``{model}-{suffix}``, never while it serves an alias."""
    engine = engine_from_settings(get_settings())
    progress = progress_artifact(f"Deleting {model}-{index_suffix}")
    with model_lock(model):
        index = indices.index_name(model, index_suffix)
        indices.check_delete_index(engine, index)
        engine.delete_index(index)
    if force_delete:
        get_run_logger().info("force_delete has no effect: an index that serves an alias is never deleted")
    progress(100)
    return index


@flow(name="promote", flow_run_name="promote-{model}", **_hooks)
def promote(model: Model, index_suffix: str | None = None, callback_url: str | None = None) -> dict[str, str]:
    """Reindex, check readiness, filter, move both aliases in one update, delete the old indexes."""
    engine = engine_from_settings(get_settings())
    suffix = index_suffix or run_suffix()
    name, filtered = indices.index_name(model, suffix), indices.filtered_name(model, suffix)
    aliases = {model: name, indices.filtered_alias(model): filtered}
    progress = progress_artifact(f"Promoting a new {model} index")
    with model_lock(model):
        with building(engine) as created:
            loaded = build_index(engine, model, name, created, scaled(progress, 0, 80))
            check_ready(engine, model, name, loaded)
            build_filtered(engine, model, name, filtered, created)
            progress(95)
            previous = move_aliases(engine, aliases)
        for old in previous:  # after the switch: nothing serves these any more
            if not indices.alias_holders(engine, old):
                engine.delete_index(old)
    progress(100)
    return aliases


FLOWS = {
    "REINDEX": reindex,
    "UPDATE_INDEX": update_index,
    "CREATE_AND_POPULATE_FILTERED_INDEX": create_filtered_index,
    "POINT_ALIAS": point_alias,
    "DELETE_INDEX": delete_index,
    "PROMOTE": promote,
}
