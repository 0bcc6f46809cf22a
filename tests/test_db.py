"""The app database on SQLite and PostgreSQL: migrations, sample data, keyset reading."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, select
from sqlmodel import SQLModel

from sluice import db
from sluice.models import Audio, DeletedImage, Image
from sluice.sample import load_sample
from tasks.media import count_rows, read_documents


def test_migrations_match_the_models(database_url):
    with db.make_engine(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    assert diff == [], "a model changed without a migration: run alembic revision --autogenerate"


def test_upgrade_again_keeps_every_row(database_url):
    engine = db.make_engine(database_url)
    load_sample(engine)

    db.upgrade(database_url)

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Image)).scalar_one() == 2899
        assert conn.execute(select(func.count()).select_from(Audio)).scalar_one() == 100


def test_load_sample_is_idempotent_and_typed(database_url):
    engine = db.make_engine(database_url)

    first, second = load_sample(engine), load_sample(engine)

    assert first == {"image": 2899, "audio": 100} and second == {"image": 0, "audio": 0}
    with engine.connect() as conn:
        garage = conn.execute(select(Image).where(Image.title == "Garage")).one()
        track = conn.execute(select(Audio).where(Audio.id == 1)).one()
    assert garage.id == 10465199 and garage.removed_from_source is False
    assert garage.meta_data["popularity_metrics"]["views"] == 416
    assert garage.tags[0]["name"] == "waste"
    assert garage.created_on.year == 2018
    assert track.genres == ["rock"] and track.audio_set["audio_set"] == "Simple Exercice"


def test_read_documents_reads_every_eligible_row_once(database_url):
    engine = db.make_engine(database_url)
    load_sample(engine)
    some = [uuid.UUID("d0f4f669-426a-4711-847e-cdc2ebd4a6c8")]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(DeletedImage), [{"identifier": i, "created_on": now, "updated_on": now} for i in some])

    ids = [doc["id"] for batch in read_documents(engine, "image", batch_size=97) for doc in batch]

    assert len(ids) == len(set(ids)) == count_rows(engine, "image") == 2374 - 1
    assert 10465199 not in ids  # the deleted row
    assert ids == sorted(ids)


@pytest.mark.parametrize("model", ["image", "audio"])
def test_documents_carry_the_openverse_fields(database_url, model):
    engine = db.make_engine(database_url)
    load_sample(engine)

    doc = next(read_documents(engine, model, batch_size=5))[0]

    assert doc["identifier"] and doc["license"] == doc["license"].lower()
    assert doc["created_on"].endswith("+00:00")
    if model == "image":
        assert doc["aspect_ratio"] in {"tall", "wide", "square", None}
        assert doc["size"] in {"small", "medium", "large", None}
    else:
        assert doc["length"] in {"shortest", "short", "medium", "long"} and doc["genres"] == ["rock"]


def test_rows_added_after_the_sample_get_fresh_ids(database_url):
    engine = db.make_engine(database_url)
    load_sample(engine)
    now = datetime.now(UTC)

    with engine.begin() as conn:
        new_id = conn.execute(
            insert(Audio).returning(Audio.id),
            {
                "identifier": uuid.uuid4(),
                "created_on": now,
                "updated_on": now,
                "license": "by",
                "url": "https://x.org/a",
            },
        ).scalar_one()

    assert new_id == 101
