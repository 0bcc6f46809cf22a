"""Benchmarks of Sluice's pipelines (``make bench``); see benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_child(module: str, spec: dict[str, Any], env: dict[str, str], rundir: Path,
              timeout: float) -> tuple[dict[str, Any] | None, str | None]:  # fmt: skip
    """Run one load alone in its process, ``python -m {module} SPEC_JSON``, in ``rundir`` with
    ``env`` (the spec gains ``result``: the JSON file the child writes), so that what it measures,
    RSS included, is its own. Returns the child's result, or why it failed: the exit code or the
    timeout, and the last lines of its log."""
    rundir.mkdir(parents=True, exist_ok=True)
    result_path, log_path = rundir / "result.json", rundir / "child.log"
    command = [sys.executable, "-m", module, json.dumps({**spec, "result": str(result_path)})]
    with log_path.open("wb") as out:
        try:
            code = subprocess.run(command, env=env, cwd=rundir, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    if code != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return None, ("timed out" if code is None else f"exit code {code}") + ":\n    " + "\n    ".join(tail)
    return json.loads(result_path.read_text()), None
