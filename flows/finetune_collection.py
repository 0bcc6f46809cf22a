"""Finetuning an image collection (``POST /api/collection/{id}/finetune``): download its images,
embed them, and keep each vector on its image's row.

Only rows without a vector are downloaded and embedded (new images, or rows whose image URL
changed: a new CSV keeps the vectors of URLs it still lists). ``force`` downloads every image again
and re-embeds those whose bytes changed. An image that cannot be downloaded or decoded loses its
vector and keeps the reason on its row, for ``info``. Every batch is a task run in the Prefect UI;
progress (0–100) is in the collection's ``finetuning_progess`` and the run's progress artifact.

A vector is written only to the row it was made for, and only while that row still holds the same
image URL, so new content arriving mid-run can never pair an image with another's vector.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from sluice.db import get_engine
from sluice.image_embedding import ImageDecodeError, decode_image, embed_images
from sluice.models import CollectionImage, ImageCollection
from sluice.settings import get_settings
from tasks.fetch import FetchError, fetch_url
from tasks.progress import progress_artifact

FLOW = "finetune-collection"


@dataclass
class Todo:
    """One image to (re)embed, as its row was when the run started."""

    id: int
    url: str
    sha256: str | None


@dataclass
class Counts:
    embedded: int = 0
    unchanged: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)


def download(url: str) -> bytes:
    """An image's bytes, fetched with the limits of every client-given URL (see ``tasks.fetch``)."""
    settings = get_settings()
    return fetch_url(url, max_bytes=settings.IMAGE_MAX_BYTES, timeout=settings.FETCH_TIMEOUT,
                     allow_private=settings.FETCH_ALLOW_PRIVATE,
                     allowed_networks=settings.FETCH_ALLOWED_NETWORKS).content  # fmt: skip


@task(name="embed-batch", cache_policy=NONE, task_run_name="batch-{number}")
def embed_batch(todo: list[Todo], number: int, db: Engine, counts: Counts) -> None:
    """Download a batch at once, embed what decodes, and store each outcome on its row."""
    settings = get_settings()

    def fetch(item: Todo) -> bytes | str:
        try:
            return download(item.url)
        except FetchError as exc:
            return exc.message

    with ThreadPoolExecutor(max_workers=settings.FETCH_CONCURRENCY) as pool:
        bodies = list(pool.map(fetch, todo))
    images, embed_rows, outcomes = [], [], {}  # outcomes: row id -> values to store
    for item, body in zip(todo, bodies, strict=True):
        if isinstance(body, str):
            outcomes[item.id] = {"embedding": None, "image_sha256": None, "error": body[:500]}
            continue
        digest = hashlib.sha256(body).hexdigest()
        if digest == item.sha256:  # the same bytes as the vector already there (force)
            counts.unchanged += 1
            continue
        try:
            images.append(decode_image(body))
        except ImageDecodeError as exc:
            outcomes[item.id] = {"embedding": None, "image_sha256": None, "error": str(exc)[:500]}
            continue
        embed_rows.append((item, digest))
    vectors = embed_images(images)
    for (item, digest), vector in zip(embed_rows, vectors, strict=True):
        outcomes[item.id] = {"embedding": vector.tobytes(), "image_sha256": digest, "error": None}  # float32 rows
    urls = {item.id: item.url for item in todo}
    stored = {}  # the outcomes whose row still holds the same image (new content may have replaced it)
    with Session(db) as session:
        for row_id, values in outcomes.items():
            same_image = (col(CollectionImage.id) == row_id) & (col(CollectionImage.image_url) == urls[row_id])
            result = session.exec(update(CollectionImage).where(same_image).values(**values))
            if result.rowcount:
                stored[row_id] = values
        session.commit()
    failed = [values["error"] for values in stored.values() if values["error"]]
    counts.embedded += len(stored) - len(failed)
    counts.failed += len(failed)
    counts.reasons.extend(failed[: max(0, 5 - len(counts.reasons))])


def _set_progress(db: Engine, collection_id: int, percent: float | None, finished_at: datetime | None = None) -> None:
    with Session(db) as session:
        row = session.get(ImageCollection, collection_id)
        if row is None:
            return
        row.finetuning_progess = percent
        if finished_at is not None:
            row.last_finetuned = finished_at
        session.add(row)
        session.commit()


def _idle_again(flow, run, state) -> None:  # noqa: ARG001 - Prefect hook signature
    """A cancelled or crashed run never reaches its own clean-up: show the collection idle anyway."""
    collection_id = (run.parameters or {}).get("collection_id")
    if isinstance(collection_id, int):
        _set_progress(get_engine(get_settings().database_url), collection_id, None)


@flow(name=FLOW, flow_run_name="collection-{collection_id}", on_cancellation=[_idle_again], on_crashed=[_idle_again])
def finetune_collection(collection_id: int, force: bool = False) -> State:
    """Embed a collection's images that have no vector yet (every image, when ``force``)."""
    logger = get_run_logger()
    settings = get_settings()
    db = get_engine(settings.database_url)
    started = datetime.now(UTC)
    with Session(db) as session:
        if session.get(ImageCollection, collection_id) is None:
            return Completed(message=f"collection {collection_id} no longer exists")
        query = select(CollectionImage.id, CollectionImage.image_url, CollectionImage.image_sha256).where(
            CollectionImage.collection_id == collection_id)  # fmt: skip
        if not force:
            query = query.where(col(CollectionImage.embedding).is_(None))
        todo = [Todo(*values) for values in session.exec(query.order_by(CollectionImage.position)).all()]
    logger.info("collection %d: %d images to download and embed", collection_id, len(todo))
    progress = progress_artifact(f"Finetuning collection {collection_id}: {len(todo)} images")
    counts, size = Counts(), settings.FINETUNE_BATCH_SIZE
    try:
        for number, start in enumerate(range(0, len(todo), size), start=1):
            embed_batch(quote(todo[start : start + size]), number, quote(db), quote(counts))
            percent = round(100 * min(start + size, len(todo)) / len(todo), 1)
            _set_progress(db, collection_id, min(percent, 99.9))
            progress(percent)
    except Exception as exc:
        _set_progress(db, collection_id, None)  # idle again; what was stored stays stored
        logger.exception("finetuning collection %d failed", collection_id)
        return Failed(message=f"finetuning failed: {type(exc).__name__}: {exc}")
    # The content as it was when the run started is finetuned; newer content still requires it.
    _set_progress(db, collection_id, None, finished_at=started)
    progress(100)
    message = (f"{counts.embedded} images embedded, {counts.unchanged} unchanged, {counts.failed} failed"
               + (f" (first: {'; '.join(counts.reasons)})" if counts.reasons else ""))  # fmt: skip
    logger.info("collection %d: %s", collection_id, message)
    return Completed(message=message)
