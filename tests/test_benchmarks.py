"""Smoke test of `make bench`: the reindex benchmark runs end to end on the embedded engine.

It checks that the benchmark works (exit 0, every index complete, a table with a ratio), never
how fast anything is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_reindex_benchmark_quick_embedded():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.reindex", "--quick", "--engines", "embedded"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r"^engine\s+rows\b.*\bratio\b", proc.stdout, re.M), proc.stdout
    # one table row per size: engine, rows, Sluice s, Sluice rows/s, baseline s, baseline rows/s, ratio, ...
    rows = re.findall(r"^embedded\s+(\d+)\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+[\d,]+\s+(\d+\.\d\d)\s", proc.stdout, re.M)
    assert len(rows) == 2, proc.stdout
    assert all(float(ratio) > 0 for _, ratio in rows)
    assert re.search(r"^embedded: Sluice peak memory (stayed flat|did NOT stay flat)", proc.stdout, re.M)
    assert "FAILED" not in proc.stdout
