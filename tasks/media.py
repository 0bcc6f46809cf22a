"""The Openverse media shape: index mappings, row → document, and reading rows in keyset pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, or_, select

from sluice.models import MEDIA_TABLES

# Openverse's image size buckets (pixels) and audio length buckets (milliseconds).
IMAGE_SIZES = (("small", 640 * 480), ("medium", 1600 * 900))
AUDIO_LENGTHS = (("shortest", 30_000), ("short", 120_000), ("medium", 600_000))
SENSITIVE_FIELDS = ("title.raw", "description.raw", "tags.name.raw")

# The standard tokenizer keeps "water.jpg" and "bird's" whole; a reader would say they contain
# "water" and "bird", and the sensitive-terms filter must agree, so these characters break words.
_ANALYSIS = {
    "char_filter": {"word_breaks": {"type": "pattern_replace", "pattern": "[._'’:]", "replacement": " "}},
    "filter": {
        "english_stop": {"type": "stop", "stopwords": "_english_"},
        "english_stemmer": {"type": "stemmer", "language": "english"},
        "english_possessive_stemmer": {"type": "stemmer", "language": "possessive_english"},
    },
    "analyzer": {
        "custom_english": {
            "type": "custom",
            "tokenizer": "standard",
            "char_filter": ["word_breaks"],
            "filter": ["lowercase", "english_possessive_stemmer", "english_stop", "english_stemmer"],
        },
        "raw_words": {
            "type": "custom",
            "tokenizer": "standard",
            "char_filter": ["word_breaks"],
            "filter": ["lowercase"],
        },
    },
}
_KEYWORD = {"type": "keyword", "ignore_above": 256}
_RAW = {"type": "text", "analyzer": "raw_words"}  # unstemmed words: what the sensitive filter matches
_COMMON_PROPERTIES: dict[str, Any] = {
    "id": {"type": "long"},
    "identifier": {"type": "keyword"},
    "created_on": {"type": "date"},
    "updated_on": {"type": "date"},
    "mature": {"type": "boolean"},
    "title": {
        "type": "text",
        "analyzer": "custom_english",
        "fields": {"keyword": _KEYWORD, "raw": _RAW},
    },
    "description": {"type": "text", "analyzer": "custom_english", "fields": {"raw": _RAW}},
    "tags": {
        "properties": {
            "name": {
                "type": "text",
                "analyzer": "custom_english",
                "fields": {"keyword": _KEYWORD, "raw": _RAW},
            },
            "accuracy": {"type": "float"},
        }
    },
    "creator": {"type": "text", "fields": {"keyword": _KEYWORD}},
    "provider": {"type": "keyword"},
    "source": {"type": "keyword"},
    "license": {"type": "keyword"},
    "license_version": {"type": "keyword"},
    "category": {"type": "keyword"},
    "filetype": {"type": "keyword"},
    "url": {"type": "keyword"},
    "thumbnail": {"type": "keyword"},
    "foreign_landing_url": {"type": "keyword"},
    "creator_url": {"type": "keyword"},
    "standardized_popularity": {"type": "float"},
}
_MODEL_PROPERTIES: dict[str, dict[str, Any]] = {
    "image": {
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "aspect_ratio": {"type": "keyword"},
        "size": {"type": "keyword"},
    },
    "audio": {
        "genres": {"type": "keyword"},
        "duration": {"type": "integer"},
        "length": {"type": "keyword"},
        "bit_rate": {"type": "integer"},
        "sample_rate": {"type": "integer"},
        "audio_set": {"type": "keyword"},
    },
}


def index_mappings(model: str) -> dict[str, Any]:
    return {"dynamic": False, "properties": {**_COMMON_PROPERTIES, **_MODEL_PROPERTIES[model]}}


def index_settings() -> dict[str, Any]:
    """Settings while loading: no replicas and no refresh; ``LIVE_SETTINGS`` restores them."""
    return {"index": {"number_of_replicas": 0, "refresh_interval": "-1"}, "analysis": _ANALYSIS}


LIVE_SETTINGS = {"index": {"number_of_replicas": 1, "refresh_interval": "1s"}}


def _aspect_ratio(width: int | None, height: int | None) -> str | None:
    if not width or not height:
        return None
    return "tall" if height > width else "wide" if width > height else "square"


def _bucket(value: int | None, buckets: tuple[tuple[str, int], ...], last: str) -> str | None:
    if value is None:
        return None
    return next((name for name, limit in buckets if value < limit), last)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands timestamps back without their zone; they were stored as UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def to_document(model: str, row: Any, mature: bool) -> dict[str, Any]:
    """One app-database row as the search document Openverse's API expects."""
    meta = row.meta_data or {}
    tags = [
        {"name": t["name"], **({"accuracy": t["accuracy"]} if t.get("accuracy") is not None else {})}
        for t in (row.tags or [])
        if isinstance(t, dict) and t.get("name")
    ]
    doc: dict[str, Any] = {
        "id": row.id,
        "identifier": str(row.identifier),
        "created_on": _iso(row.created_on),
        "updated_on": _iso(row.updated_on),
        "mature": bool(mature or meta.get("mature")),
        "title": row.title,
        "description": meta.get("description") if isinstance(meta.get("description"), str) else None,
        "tags": tags,
        "creator": row.creator,
        "provider": row.provider,
        "source": row.source,
        "license": (row.license or "").lower(),
        "license_version": row.license_version,
        "category": row.category,
        "filetype": row.filetype,
        "url": row.url,
        "thumbnail": row.thumbnail,
        "foreign_landing_url": row.foreign_landing_url,
        "creator_url": row.creator_url,
        "standardized_popularity": row.standardized_popularity,
    }
    if model == "image":
        doc |= {
            "width": row.width,
            "height": row.height,
            "aspect_ratio": _aspect_ratio(row.width, row.height),
            "size": _bucket((row.width or 0) * (row.height or 0) or None, IMAGE_SIZES, "large"),
        }
    else:
        audio_set = row.audio_set or {}
        doc |= {
            "genres": list(row.genres or []),
            "duration": row.duration,
            "length": _bucket(row.duration, AUDIO_LENGTHS, "long"),
            "bit_rate": row.bit_rate,
            "sample_rate": row.sample_rate,
            "audio_set": audio_set.get("audio_set") if isinstance(audio_set, dict) else None,
        }
    return doc


def _eligible(model: str, since: datetime | None = None):
    """The rows that belong in an index: not removed from source, not in the deleted table."""
    table, deleted, _ = MEDIA_TABLES[model]
    clauses = [
        or_(table.removed_from_source.is_(False), table.removed_from_source.is_(None)),
        table.identifier.not_in(select(deleted.identifier)),
    ]
    if since is not None:
        clauses.append(table.updated_on >= since)
    return clauses


def count_rows(engine: Engine, model: str, since: datetime | None = None) -> int:
    table = MEDIA_TABLES[model][0]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*_eligible(model, since))).scalar_one()


def read_documents(
    engine: Engine, model: str, batch_size: int, since: datetime | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every eligible row as documents, in pages keyed on ``id``.

    Keyset paging (``id > last``) reads every row exactly once however the ids are spread,
    holds no long transaction, and keeps memory at one page.
    """
    table, _, mature_table = MEDIA_TABLES[model]
    is_mature = table.identifier.in_(select(mature_table.identifier)).label("in_mature_table")
    last_id: int | None = None
    while True:
        stmt = select(table, is_mature).where(*_eligible(model, since)).order_by(table.id).limit(batch_size)
        if last_id is not None:
            stmt = stmt.where(table.id > last_id)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        yield [to_document(model, row, row.in_mature_table) for row in rows]
        last_id = rows[-1].id
