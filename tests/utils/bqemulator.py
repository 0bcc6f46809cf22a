"""A real BigQuery emulator (bqemulator, DuckDB-backed) in a subprocess, for the real client.

bqemulator loads DuckDB's spatial extension at start and would download it; there is no network
here, so the extension shipped by the ``duckdb-extension-spatial`` package is copied into the
extension directory of a throwaway HOME (never the real one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import duckdb_extension_spatial
import httpx
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from tests.conftest import free_port

PROJECT = "test-proj"
START_TIMEOUT = 60.0


def _spatial_home(home: Path) -> None:
    """Put the packaged spatial extension where DuckDB looks: ~/.duckdb/extensions/<version>/<platform>/."""
    version = f"v{duckdb.__version__}"
    platform = duckdb.sql("PRAGMA platform").fetchone()[0]
    shipped = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
    if not shipped.exists():
        raise RuntimeError(f"duckdb-extension-spatial has no {shipped.name} for duckdb {version}: pin both alike")
    target = home / ".duckdb" / "extensions" / version / platform
    target.mkdir(parents=True)
    shutil.copy(shipped, target / shipped.name)


@contextmanager
def bqemulator(project: str = PROJECT) -> Iterator[str]:
    """Start ``bqemulator`` on free ports; yields its REST URL (the client's api_endpoint)."""
    home = Path(tempfile.mkdtemp(prefix="sluice-bqemu-"))
    _spatial_home(home)
    rest, grpc = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    log = (home / "emulator.log").open("wb")
    command = [sys.executable, "-m", "bqemulator", "start", "--rest-port", str(rest), "--grpc-port", str(grpc),
               "--project", project, "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(
        command,
        env={**os.environ, "HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bqemulator exited at start:\n{(home / 'emulator.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/bigquery/v2/projects/{project}/datasets", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bqemulator was not ready within {START_TIMEOUT:g} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def emulator_client(url: str, project: str = PROJECT) -> bigquery.Client:
    """The real BigQuery client, talking to the emulator without signing in."""
    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=url))  # fmt: skip
