"""Smoke tests of the benchmarks: the reindex benchmark (`make bench`) runs end to end on the
embedded engine, the document-ingestion benchmark runs a few seconds against `sluice up`, the
connectors benchmark syncs a small CSV, and the similarity benchmark finetunes 20 images.

They check that the benchmarks work (exit 0, everything indexed, tables with a ratio and the
goals' verdicts), never how fast anything is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``benchmarks.<module>`` in a clean environment; it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_reindex_benchmark_quick_embedded():
    proc = bench("reindex", "--quick", "--engines", "embedded")
    assert re.search(r"^engine\s+rows\b.*\bratio\b", proc.stdout, re.M), proc.stdout
    # one table row per size: engine, rows, Sluice s, Sluice rows/s, baseline s, baseline rows/s, ratio, ...
    rows = re.findall(r"^embedded\s+(\d+)\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+[\d,]+\s+(\d+\.\d\d)\s", proc.stdout, re.M)
    assert len(rows) == 2, proc.stdout
    assert all(float(ratio) > 0 for _, ratio in rows)
    assert re.search(r"^embedded: Sluice peak memory (stayed flat|did NOT stay flat)", proc.stdout, re.M)
    assert "FAILED" not in proc.stdout


def test_documents_benchmark_few_seconds_low_rate():
    proc = bench("documents", "--seconds", "3", "--rate", "200", "--warmup-batches", "2")
    assert re.search(r"^latency\s+p50\s+p95\s+max\s+n$", proc.stdout, re.M), proc.stdout
    # a row: name, then p50, p95 and max (ms or s), then how many
    figure = r"([\d,.]+) (ms|s)"
    for name in ("POST under load", "POST -> indexed under load \\(first seen\\)",
                 "POST -> indexed, read in the app database", "baseline: bulk \\+ refresh of 100 documents"):  # fmt: skip
        assert re.search(rf"^{name}\s+{figure}\s+{figure}\s+{figure}\s+[\d,]+$", proc.stdout, re.M), (name, proc.stdout)
    indexed = re.search(r"^POST -> indexed under load \(first seen\).*\s([\d,]+)$", proc.stdout, re.M)
    assert indexed and indexed.group(1) == "600", proc.stdout  # 3 s at 200 docs/s: every document seen indexed
    assert re.search(r"^indexed, read in the app database, second half\s+[\d,]+$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^baseline, in-process, back to back\s+[\d,]+$", proc.stdout, re.M), proc.stdout
    ratio = re.search(r"^ratio = Sluice indexed docs/s .* / baseline docs/s = ([\d.e-]+) ", proc.stdout, re.M)
    assert ratio and float(ratio.group(1)) > 0, proc.stdout
    assert len(re.findall(r"^  POST.*: (PASS|FAIL) \(p95 ", proc.stdout, re.M)) == 2, proc.stdout
    assert re.search(r"^sluice up stopped on SIGTERM in [\d.]+ s \(exit code 0\)$", proc.stdout, re.M), proc.stdout
    assert "FAILED" not in proc.stdout


def test_connectors_benchmark_small_csv_embedded():
    proc = bench("connectors", "--rows", "2000", "--chunk-size", "500")
    assert re.search(r"^load\s+rows\s+seconds\s+rows/s\b.*\bpeak MB$", proc.stdout, re.M), proc.stdout
    # one table row per load: kind, rows, seconds, rows/s, RSS before, RSS @10%, RSS @100%, peak
    for kind in ("baseline", "sluice"):
        assert re.search(rf"^{kind}\s+2,000\s+[\d.]+\s+[\d,]+(\s+\d+){{4}}$", proc.stdout, re.M), (kind, proc.stdout)
    ratio = re.search(r"^ratio = sluice rows/s / baseline rows/s = (\d+\.\d\d) \(goal >= 0\.80: (met|NOT met)\)$",
                      proc.stdout, re.M)  # fmt: skip
    assert ratio and float(ratio.group(1)) > 0, proc.stdout
    assert re.search(r"^sluice memory (stayed flat|did NOT stay flat): RSS \d+ MB after 500 rows, \d+ MB after "
                     r"2,000 rows", proc.stdout, re.M), proc.stdout  # fmt: skip
    held = re.findall(r"^(baseline|sluice) index \S+ holds 2,000 documents \(expected 2,000\)$", proc.stdout, re.M)
    assert held == ["baseline", "sluice"], proc.stdout
    assert re.search(r"^correctness: OK", proc.stdout, re.M), proc.stdout
    assert "FAILED" not in proc.stdout


def test_similarity_benchmark_runs():
    proc = bench("similarity", "--queries", "5", "--sizes", "1000", "--finetune-images", "20")
    recall = re.search(r"^recall@1 (\d\.\d{3}), recall@5 (\d\.\d{3}) \(goal recall@1 >= 0\.95: (met|NOT met)\)",
                       proc.stdout, re.M)  # fmt: skip
    assert recall, proc.stdout
    # one table row per finetune load: label, images, seconds, images/s
    for load in ("baseline: httpx", "flow finetune_collection"):
        assert re.search(rf"^{load}.*\s20\s+[\d.]+\s+[\d,]+$", proc.stdout, re.M), (load, proc.stdout)
    ratio = re.search(r"^finetune ratio = flow images/s / baseline images/s = (\d+\.\d\d)$", proc.stdout, re.M)
    assert ratio and float(ratio.group(1)) > 0, proc.stdout
    assert re.search(r"^flow run: 20 images embedded, 0 unchanged, 0 failed; info\(\): 20 of 20 images embedded, "
                     r"0 failed$", proc.stdout, re.M), proc.stdout  # fmt: skip
    assert "FAILED" not in proc.stdout
