"""Synthetic app databases: N ``image`` rows replicated from the real Openverse sample rows."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select

from sluice import db
from sluice.models import Image, MatureImage
from sluice.sample import SAMPLES, read_rows
from sluice.settings import SAMPLE_DATA_DIR

INSERT_BATCH = 10_000
MATURE_EVERY = 97  # about 1% of the rows sit in the mature table (read through a subquery)


def template_rows() -> list[dict[str, Any]]:
    """The real sample image rows that belong in an index (not removed from source)."""
    rows = []
    for table, filename, header in SAMPLES:
        if table is not Image:
            continue
        for row in read_rows(table, SAMPLE_DATA_DIR / filename, header):
            if not row.get("removed_from_source"):
                row.pop("id", None)
                rows.append(row)
    if not rows:
        raise RuntimeError(f"no eligible image rows in {SAMPLE_DATA_DIR}")
    # The two sample files have different columns: give every row the same keys (the column's
    # default where a file has none) so that one executemany inserts them all.
    keys = sorted({key for row in rows for key in row})
    defaults = {key: _default(key) for key in keys}
    return [{key: row.get(key, defaults[key]) for key in keys} for row in rows]


def _default(column: str) -> Any:
    field = Image.model_fields.get(column)
    default = getattr(field, "default", None)
    return default if isinstance(default, bool | int | float | str) else None


def build_database(url: str, rows: int, seed: int = 0) -> int:
    """Migrate ``url`` and insert ``rows`` image rows (ids 1..rows, fresh identifiers and urls);
    returns the number of rows the reindex should load (all of them)."""
    db.upgrade(url)
    templates = template_rows()
    rng = random.Random(seed)
    engine = db.make_engine(url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for start in range(0, rows, INSERT_BATCH):
                batch, mature = [], []
                for i in range(start, min(start + INSERT_BATCH, rows)):
                    row = dict(templates[i % len(templates)])
                    identifier = uuid.UUID(int=rng.getrandbits(128), version=4)
                    row["id"] = i + 1
                    row["identifier"] = identifier
                    row["url"] = f"{row.get('url') or 'https://example.org/sluice-bench.jpg'}#sluice-bench-{i + 1}"
                    batch.append(row)
                    if i % MATURE_EVERY == MATURE_EVERY - 1:
                        mature.append({"identifier": identifier, "created_on": now})
                conn.execute(insert(Image), batch)
                if mature:
                    conn.execute(insert(MatureImage), mature)
            count = conn.execute(select(func.count()).select_from(Image)).scalar_one()
    finally:
        engine.dispose()
    if count != rows:
        raise RuntimeError(f"{url}: expected {rows} image rows, found {count}")
    return count
