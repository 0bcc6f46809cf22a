"""Shared fixtures: real search servers (osmem-server, the embedded engine, a real cluster when
ELASTICSEARCH_URL is set) and real app databases (SQLite, and PostgreSQL when it can run here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from osmem_server import OsmemServer

from blocks.search_engine import ElasticsearchEngine, EmbeddedEngine
from sluice import db
from sluice.settings import get_settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- search engines -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def osmem() -> Iterator[OsmemServer]:
    server = OsmemServer.start(japanese=False)
    yield server
    server.close()


@pytest.fixture
def osmem_url(osmem: OsmemServer) -> Iterator[str]:
    """A fresh, empty OpenSearch-compatible cluster for one test."""
    with osmem.clone() as clone:
        yield clone.url


def osmem_engine(url: str) -> ElasticsearchEngine:
    # osmem speaks OpenSearch: it refuses Elasticsearch's versioned media types.
    return ElasticsearchEngine(url=url, vendor_media_types=False)


@pytest.fixture
def es_engine(osmem_url: str) -> Iterator[ElasticsearchEngine]:
    engine = osmem_engine(osmem_url)
    yield engine
    engine.close()


@pytest.fixture
def embedded_engine(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(path=str(tmp_path / "search.sqlite3"))
    yield engine
    engine.close()


def real_cluster_engine() -> ElasticsearchEngine:
    engine = ElasticsearchEngine(url=os.environ["ELASTICSEARCH_URL"])
    for name in engine.list_indices("sluice-test-"):
        engine.delete_index(name)
    return engine


ENGINE_KINDS = ["embedded", "osmem"] + (["elasticsearch"] if os.environ.get("ELASTICSEARCH_URL") else [])


@pytest.fixture(params=ENGINE_KINDS)
def any_engine(request, tmp_path: Path):
    """Each search engine Sluice supports, one per parametrised run."""
    if request.param == "embedded":
        engine = EmbeddedEngine(path=str(tmp_path / "search.sqlite3"))
    elif request.param == "osmem":
        engine = osmem_engine(request.getfixturevalue("osmem_url"))
    else:
        engine = real_cluster_engine()
    yield engine
    engine.close()


# --- app databases --------------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (initdb in a temp dir, trust auth, a free port)."""
    if os.environ.get("SLUICE_TEST_POSTGRES_URL"):
        yield os.environ["SLUICE_TEST_POSTGRES_URL"]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries not installed (make test installs them)")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    data, port = workdir / "data", free_port()
    # initdb/pg_ctl refuse to run as root: run them as the postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(workdir, "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", f"-p {port} -k {workdir}", "-w", "-l", str(workdir / "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def fresh_postgres_database(server_url: str) -> str:
    import psycopg

    name = f"sluice_{os.getpid()}_{free_port()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """An empty, migrated app database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    else:
        url = fresh_postgres_database(request.getfixturevalue("postgres_server"))
    db.upgrade(url)
    return url


@pytest.fixture
def sluice_env(monkeypatch, tmp_path: Path):
    """Point Sluice's settings at a temp data dir; returns a setter for more SLUICE_ values."""
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    db.get_engine.cache_clear()

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"SLUICE_{key}", value)
        get_settings.cache_clear()
        db.get_engine.cache_clear()

    yield set_env
    get_settings.cache_clear()
    db.get_engine.cache_clear()


# --- Prefect ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_api():
    """A real, temporary Prefect server for the whole session (flows record runs and artifacts)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# --- sample data --------------------------------------------------------------------------------


@pytest.fixture
def sample_db(sluice_env) -> str:
    """The sluice settings' app database (SQLite in a temp data dir), migrated, with the sample rows."""
    from sluice.sample import load_sample

    url = get_settings().database_url
    db.upgrade(url)
    load_sample(db.get_engine(url))
    return url


@pytest.fixture(params=["embedded", "osmem"])
def flow_engine(request, sluice_env, tmp_path):
    """Configure Sluice's settings for one engine and return an engine on the same store."""
    if request.param == "osmem":
        url = request.getfixturevalue("osmem_url")
        sluice_env(ELASTICSEARCH_URL=url, ELASTICSEARCH_VENDOR_MEDIA_TYPES="false")
        engine = osmem_engine(url)
    else:
        engine = EmbeddedEngine(path=str(get_settings().search_path))
    yield engine
    engine.close()
