"""Image collections (the HeidICON similarity webservice's ``/api/collection…``): named sets of
images given as CSV rows, and the keys that may change them.

CSV content has no header: column 1 is the image URL, column 2 the link to the item's page, and any
further columns are kept as they are. New content replaces the old one whole and marks the
collection as requiring finetuning.

Keys are Sluice API keys (argon2-hashed) of the built-in tenant ``collections`` holding the role
``collections-admin``: ``sluice api-keys create|list|delete`` manages them.
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete as sql_delete
from sqlalchemy import func
from sqlmodel import Session, col, select

from sluice import credentials
from sluice.errors import InvalidInput
from sluice.models import ApiKey, CollectionImage, ImageCollection, Tenant

KEYS_TENANT = "collections"
ROLE = "collections-admin"
MAX_ROWS = 100_000
MAX_NAME = 200
FAILURES_SHOWN = 20  # failed images listed in info (all are counted)
MAX_ID = 2**63 - 1  # SQLite raises OverflowError for a larger integer instead of finding nothing


class UnknownCollection(InvalidInput):
    """The reference answers 400 for a collection it does not know."""


# --- keys ----------------------------------------------------------------------------------------------


def create_key(session: Session, name: str = "") -> tuple[ApiKey, str]:
    if session.get(Tenant, KEYS_TENANT) is None:
        credentials.create_tenant(session, KEYS_TENANT)
    return credentials.create_key(session, KEYS_TENANT, [ROLE], name)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).where(ApiKey.tenant == KEYS_TENANT).order_by(ApiKey.created_at)).all())


def key_is_valid(session: Session, presented: str | None) -> bool:
    key = credentials.verify_key(session, presented) if presented else None
    return key is not None and key.tenant == KEYS_TENANT and ROLE in key.roles


# --- collections -------------------------------------------------------------------------------------------


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise InvalidInput(f"name: give a name of 1 to {MAX_NAME} characters")
    return value.strip()


def create(session: Session, name: Any, heidicon_tag: Any = None) -> ImageCollection:
    if heidicon_tag is not None and (not isinstance(heidicon_tag, str) or len(heidicon_tag) > MAX_NAME):
        raise InvalidInput(f"heidicon_tag: a text of at most {MAX_NAME} characters")
    row = ImageCollection(name=_name(name), heidicon_tag=heidicon_tag)
    session.add(row)
    session.commit()
    return row


def get(session: Session, collection_id: int) -> ImageCollection:
    row = session.get(ImageCollection, collection_id) if 0 < collection_id <= MAX_ID else None
    if row is None:
        raise UnknownCollection(f"Collection {collection_id} does not exist")
    return row


def all_collections(session: Session) -> list[ImageCollection]:
    return list(session.exec(select(ImageCollection).order_by(ImageCollection.id)).all())


def count_images(session: Session, collection_id: int) -> int:
    return session.exec(select(func.count()).where(CollectionImage.collection_id == collection_id)).one()


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored one is UTC."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def requires_finetuning(row: ImageCollection) -> bool:
    finetuned = _utc(row.last_finetuned)
    return finetuned is None or _utc(row.last_modified) > finetuned


def info(session: Session, row: ImageCollection) -> dict[str, Any]:
    """The collection's fields, its size, whether its vectors are behind its content, and the
    images the last finetune could not embed (with why)."""
    modified, finetuned = _utc(row.last_modified), _utc(row.last_finetuned)
    of_collection = CollectionImage.collection_id == row.id
    embedded = session.exec(select(func.count()).where(of_collection, col(CollectionImage.embedding).is_not(None)))
    failed = session.exec(select(func.count()).where(of_collection, col(CollectionImage.error).is_not(None)))
    failures = session.exec(select(CollectionImage.image_url, CollectionImage.error)
                            .where(of_collection, col(CollectionImage.error).is_not(None))
                            .order_by(CollectionImage.position).limit(FAILURES_SHOWN))  # fmt: skip
    return {
        "id": row.id, "name": row.name, "heidicon_tag": row.heidicon_tag, "last_modified": modified.isoformat(),
        "last_finetuned": finetuned.isoformat() if finetuned else None, "finetuning_progess": row.finetuning_progess,
        "number_of_images": count_images(session, row.id), "requires_finetuning": requires_finetuning(row),
        "number_of_embedded_images": embedded.one(), "number_of_failed_images": failed.one(),
        "failed_images": [{"image_url": url, "reason": reason} for url, reason in failures.all()],
    }  # fmt: skip


def count_unembedded(session: Session, row: ImageCollection) -> int:
    """Images without a vector: new ones, and those the last finetune could not embed."""
    return session.exec(select(func.count()).where(CollectionImage.collection_id == row.id,
                                                   col(CollectionImage.embedding).is_(None))).one()  # fmt: skip


def rename(session: Session, row: ImageCollection, name: Any) -> ImageCollection:
    row.name = _name(name)
    session.add(row)
    session.commit()
    return row


def parse_csv(text: str) -> list[list[str]]:
    """Rows of at least two columns (image URL, item page), checked; blank lines skipped."""
    rows = []
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text), strict=True), start=1):
            if not cells or not any(cell.strip() for cell in cells):
                continue
            image_url = cells[0].strip()
            if not image_url.lower().startswith(("http://", "https://")):
                raise InvalidInput(f"CSV line {number}: column 1 must be an http(s) image URL, not {image_url[:80]!r}")
            if len(image_url) > 2048 or (len(cells) > 1 and len(cells[1]) > 2048):
                raise InvalidInput(f"CSV line {number}: a URL longer than 2048 characters")
            rows.append([image_url, cells[1].strip() if len(cells) > 1 else "", *cells[2:]])
            if len(rows) > MAX_ROWS:
                raise InvalidInput(f"CSV: more than {MAX_ROWS} rows")
    except csv.Error as exc:
        raise InvalidInput(f"not valid CSV: {exc}") from None
    if not rows:
        raise InvalidInput("CSV: no rows (column 1 the image URL, column 2 the item's page; no header)")
    return rows


def set_content(session: Session, row: ImageCollection, text: str) -> int:
    """Replace the content whole (checked first: bad CSV changes nothing); returns the row count.
    A row whose image URL was already embedded keeps its vector, so the next finetune only embeds
    new images."""
    rows = parse_csv(text)
    kept = {url: (vector, digest) for url, vector, digest in session.exec(
        select(CollectionImage.image_url, CollectionImage.embedding, CollectionImage.image_sha256)
        .where(CollectionImage.collection_id == row.id, col(CollectionImage.embedding).is_not(None))
    ).all()}  # fmt: skip
    session.exec(sql_delete(CollectionImage).where(CollectionImage.collection_id == row.id))
    for position, (image_url, repo_url, *extra) in enumerate(rows):
        vector, digest = kept.get(image_url, (None, None))
        session.add(CollectionImage(collection_id=row.id, position=position, image_url=image_url, repo_url=repo_url,
                                    extra=extra, embedding=vector, image_sha256=digest))  # fmt: skip
    row.last_modified = datetime.now(UTC)
    session.add(row)
    session.commit()
    return len(rows)


def images(session: Session, collection_id: int) -> list[CollectionImage]:
    return list(session.exec(
        select(CollectionImage).where(CollectionImage.collection_id == collection_id).order_by(CollectionImage.position)
    ).all())  # fmt: skip


def csv_text(session: Session, row: ImageCollection) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for image in images(session, row.id):
        writer.writerow([image.image_url, image.repo_url, *image.extra])
    return out.getvalue()


def delete(session: Session, row: ImageCollection) -> None:
    _vectors.pop(row.id, None)
    session.exec(sql_delete(CollectionImage).where(CollectionImage.collection_id == row.id))
    session.exec(sql_delete(ImageCollection).where(ImageCollection.id == row.id))  # fine when already gone
    session.commit()


# --- search ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vectors:
    """A collection's embedded images as one matrix (row i is ``image_urls[i]``)."""

    version: tuple[Any, ...]
    image_urls: list[str]
    repo_urls: list[str]
    matrix: np.ndarray


_vectors: dict[int, Vectors] = {}
_vectors_lock = threading.Lock()


def vectors(session: Session, row: ImageCollection) -> Vectors:
    """The collection's vectors, read again only when they may have changed: new content, a finetune
    starting (a new run id) or ending (progress back to None), whether the run succeeded or not."""
    version = (row.last_modified, row.last_finetuned, row.finetune_run_id, row.finetuning_progess is None)
    with _vectors_lock:
        cached = _vectors.get(row.id)
        if cached is not None and cached.version == version:
            return cached
        found = session.exec(
            select(CollectionImage.image_url, CollectionImage.repo_url, CollectionImage.embedding)
            .where(CollectionImage.collection_id == row.id, col(CollectionImage.embedding).is_not(None))
            .order_by(CollectionImage.position)
        ).all()
        matrix = np.frombuffer(b"".join(v for _, _, v in found), dtype=np.float32).reshape(len(found), -1)
        _vectors[row.id] = cached = Vectors(version, [u for u, _, _ in found], [r for _, r, _ in found], matrix)
        return cached


def search(session: Session, row: ImageCollection, query: np.ndarray, num_results: int,
           threshold: float) -> list[dict[str, Any]]:  # fmt: skip
    """The most similar images, best first: cosine similarity (vectors are unit length) of at least
    ``threshold`` percent."""
    found = vectors(session, row)
    if not len(found.image_urls):
        return []
    scores = found.matrix @ query.astype(np.float32)
    best = np.argpartition(-scores, min(num_results, len(scores)) - 1)[:num_results]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [{"image_url": found.image_urls[i], "repo_url": found.repo_urls[i], "score": round(float(scores[i]), 4)}
            for i in best if 100 * scores[i] >= threshold]  # fmt: skip
