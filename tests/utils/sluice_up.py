"""Start and stop a real `sluice up` (Prefect server, runner, API) on free ports for a test module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

SLUICE = [sys.executable, "-m", "sluice.cli"]


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_/SLUICE_ setting, pointed at ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLUICE_"))}
    return env | {"SLUICE_DATA_DIR": str(data_dir), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | extra


def start(data_dir: Path, env: dict[str, str], timeout: float = 180) -> dict:
    """`sluice up` on free ports; returns its URLs and process once the API answers."""
    api_port, prefect_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*SLUICE, "up", "--api-port", str(api_port), "--prefect-port", str(prefect_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    if proc.poll() is not None or time.monotonic() >= deadline:
        proc.kill()
        logs = "\n".join(p.read_text()[-3000:] for p in (data_dir / "logs").glob("*.log"))
        pytest.fail(f"sluice up did not start:\n{proc.stdout.read() if proc.stdout else ''}\n{logs}")
    return {"api": api, "prefect": f"http://127.0.0.1:{prefect_port}", "data_dir": data_dir, "env": env, "proc": proc}


def stop(up: dict) -> None:
    up["proc"].send_signal(signal.SIGTERM)
    try:
        up["proc"].wait(60)
    except subprocess.TimeoutExpired:
        up["proc"].kill()
        pytest.fail("sluice up did not stop on SIGTERM")
