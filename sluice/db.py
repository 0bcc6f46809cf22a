"""App-database engine and schema upgrades (Alembic is the only thing that changes the schema)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

# Imported for its side effect: the tables must be on SQLModel.metadata before Alembic reads it.
from sluice import models  # noqa: F401
from sluice.settings import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver we ship."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A pool as large as the API's worker threads: requests wait for SQLite's lock, not a connection.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=10, max_overflow=40)  # fmt: skip

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: flows write while the API reads
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().database_url)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; data is kept (migrations only alter)."""
    command.upgrade(alembic_config(url or get_settings().database_url), revision)


def session(url: str | None = None) -> Session:
    return Session(get_engine(url))
