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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func
from sqlmodel import Session, select

from sluice import credentials
from sluice.errors import InvalidInput
from sluice.models import ApiKey, CollectionImage, ImageCollection, Tenant

KEYS_TENANT = "collections"
ROLE = "collections-admin"
MAX_ROWS = 100_000
MAX_NAME = 200


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
    row = session.get(ImageCollection, collection_id)
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


def info(session: Session, row: ImageCollection) -> dict[str, Any]:
    """The collection's fields, its size, and whether its vectors are behind its content."""
    modified, finetuned = _utc(row.last_modified), _utc(row.last_finetuned)
    return {
        "id": row.id, "name": row.name, "heidicon_tag": row.heidicon_tag, "last_modified": modified.isoformat(),
        "last_finetuned": finetuned.isoformat() if finetuned else None, "finetuning_progess": row.finetuning_progess,
        "number_of_images": count_images(session, row.id),
        "requires_finetuning": finetuned is None or modified > finetuned,
    }  # fmt: skip


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
    """Replace the content whole (checked first: bad CSV changes nothing); returns the row count."""
    rows = parse_csv(text)
    session.exec(sql_delete(CollectionImage).where(CollectionImage.collection_id == row.id))
    session.add_all(
        CollectionImage(collection_id=row.id, position=n, image_url=r[0], repo_url=r[1], extra=r[2:])
        for n, r in enumerate(rows)
    )
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
    session.exec(sql_delete(CollectionImage).where(CollectionImage.collection_id == row.id))
    session.delete(row)
    session.commit()
