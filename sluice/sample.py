"""Loads Openverse's public sample rows (shipped in ``sample_data/``) into the app database."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, text

from sluice.models import Audio, Image, MediaBase
from sluice.settings import SAMPLE_DATA_DIR

# mocked_images.csv has no header: its columns are those of Openverse's test `image` schema.
MOCKED_IMAGE_COLUMNS = (
    "id created_on updated_on identifier provider source foreign_identifier foreign_landing_url url "
    "thumbnail width height filesize license license_version creator creator_url title tags_list "
    "last_synced_with_source removed_from_source meta_data view_count tags watermarked "
    "standardized_popularity"
).split()

SAMPLES: tuple[tuple[type[MediaBase], str, tuple[str, ...] | None], ...] = (
    (Image, "mocked_images.csv", tuple(MOCKED_IMAGE_COLUMNS)),
    (Image, "sample_images_to_clean.csv", None),
    (Audio, "sample_audio_data.csv", None),
)


def _bool(value: str) -> bool | None:
    return {"t": True, "true": True, "f": False, "false": False}.get(value.lower()) if value else None


def _time(value: str) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _pg_array(value: str) -> list[str] | None:
    """A Postgres array literal such as ``{rock,metal}``."""
    if not value:
        return None
    return [item.strip('"') for item in value.strip("{}").split(",") if item]


def _json(value: str) -> Any:
    return json.loads(value) if value else None


CONVERTERS = {
    "id": int, "width": int, "height": int, "filesize": int, "view_count": int, "duration": int,
    "bit_rate": int, "sample_rate": int, "standardized_popularity": float,
    "created_on": _time, "updated_on": _time, "last_synced_with_source": _time,
    "removed_from_source": _bool, "watermarked": _bool, "identifier": uuid.UUID,
    "meta_data": _json, "tags": _json, "audio_set": _json, "alt_files": _json,
    "tags_list": _pg_array, "genres": _pg_array,
}  # fmt: skip
RENAMED = {"alt_audio_files": "alt_files"}


def read_rows(table: type[MediaBase], path: Path, header: tuple[str, ...] | None) -> Iterator[dict[str, Any]]:
    columns = set(table.model_fields)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, fieldnames=header, strict=True)
        for raw in reader:
            row: dict[str, Any] = {}
            for key, value in raw.items():
                key = RENAMED.get(key, key)
                if key in columns:
                    row[key] = CONVERTERS.get(key, str)(value) if value != "" else None
            row["removed_from_source"] = bool(row.get("removed_from_source"))
            yield row


def load_sample(engine: Engine, data_dir: Path = SAMPLE_DATA_DIR) -> dict[str, int]:
    """Insert every sample row not already present (by identifier); returns rows added per table."""
    added: dict[str, int] = {}
    with engine.begin() as conn:
        for table, filename, header in SAMPLES:
            existing = set(conn.execute(select(table.identifier)).scalars())
            next_id = max(conn.execute(select(table.id)).scalars(), default=0) + 1
            rows = []
            for row in read_rows(table, data_dir / filename, header):
                if row["identifier"] in existing:
                    continue
                if row.get("id") is None:
                    row["id"], next_id = next_id, next_id + 1
                existing.add(row["identifier"])
                rows.append(row)
            if rows:
                conn.execute(insert(table), rows)
                if conn.dialect.name == "postgresql":  # explicit ids leave the id sequence behind
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.__tablename__}', 'id'), "
                                      f"(SELECT max(id) FROM {table.__tablename__}))"))  # fmt: skip
            name = table.__tablename__
            added[name] = added.get(name, 0) + len(rows)
    return added
