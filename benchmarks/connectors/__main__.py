"""``python -m benchmarks.connectors [--rows 1000000] [--chunk-size 5000] [--elasticsearch-url URL] [--keep]``

Writes a deterministic shop-catalogue CSV into a temporary directory, starts one Prefect server,
then loads the CSV twice, each in its own process: the raw baseline (pandas chunks, vectorised
types, ``engine.bulk``) and Sluice's ``run-connector-task`` flow (an onDemand ``replace`` task).
Prints the environment, a table (seconds, rows/s, RSS), the ratio, whether Sluice's memory stayed
flat, and the correctness checks. Exits 1 when a load fails or an index is not as expected.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One Prefect server per run, children without inherited SLUICE_*/PREFECT_*: as benchmarks.reindex.
import benchmarks
from benchmarks.reindex.__main__ import PrefectServer, clean_env, log, server_peak_mb, stderr_to

TENANT = "bench"
GOAL_RATIO = 0.8  # Sluice rows/s / baseline rows/s
FLAT_GROWTH = 0.25  # RSS at 100% of rows within +25% of RSS at 10%: flat, as benchmarks.reindex
SPOT_CHECKS = 10
KINDS = ("baseline", "sluice")  # baseline first: nothing of Sluice's is running yet


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sluice.settings import Settings

    chunk = Settings.model_fields["CONNECTOR_CHUNK_SIZE"].default
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.connectors",
        description="CSV connector sync throughput and memory: the Sluice flow against a raw bulk load.",
    )
    parser.add_argument("--rows", type=_positive, default=1_000_000, help="CSV rows (default: 1000000)")
    parser.add_argument("--chunk-size", type=_positive, default=chunk,
                        help=f"rows per chunk, both loads: SLUICE_CONNECTOR_CHUNK_SIZE (default: {chunk})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated catalogue (default: 0)")
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--elasticsearch-url", help="load into this Elasticsearch instead of the embedded engine")
    search.add_argument("--osmem", action="store_true", help="start a fresh osmem-server and load into it")
    parser.add_argument("--plain-json", action="store_true",
                        help="plain JSON media types: an OpenSearch-compatible server (--osmem sets it)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (and Elasticsearch indexes)")
    args = parser.parse_args(argv)
    args.plain_json = args.plain_json or args.osmem
    return args


@dataclass
class Load:
    kind: str
    rows: int
    seconds: float | None = None
    start_mb: float | None = None
    peak_mb: float | None = None
    maxrss_mb: float | None = None
    marks: list[list[float]] = field(default_factory=list)  # [rows done, RSS MB, seconds]
    message: str | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.rows / self.seconds if self.seconds else None

    def rss_at(self, fraction: float) -> tuple[int, float] | None:
        """(rows, RSS MB) at the first chunk that reached ``fraction`` of the rows."""
        for rows, mb, _ in self.marks:
            if rows >= fraction * self.rows:
                return int(rows), mb
        return None


def run_child(load: Load, spec: dict[str, Any], env: dict[str, str], rundir: Path) -> None:
    """One load in its own process; fills ``load`` from its result (or why it failed)."""
    timeout = 900 + load.rows / 50  # far beyond any rate seen: a hang must not stall the run
    result, load.error = benchmarks.run_child("benchmarks.connectors.measure", spec, env, rundir, timeout)
    for key in ("seconds", "start_mb", "peak_mb", "maxrss_mb", "marks", "message"):
        setattr(load, key, (result or {}).get(key))


# --- checks -------------------------------------------------------------------------------------


def verify(engines: dict[str, Any], indexes: dict[str, str], rows: int, seed: int) -> tuple[list[str], list[str]]:
    """Both indexes hold every row; a few records, read back, equal the expected ones.
    Returns (lines to print, problems)."""
    from benchmarks.connectors.data import expected_record

    lines, problems = [], []
    for kind in KINDS:
        count = engines[kind].count(indexes[kind])
        lines.append(f"{kind} index {indexes[kind]} holds {count:,} documents (expected {rows:,})")
        if count != rows:
            problems.append(f"{kind}: {count} documents, expected {rows}")
    picks = sorted({0, rows - 1, rows // 10, rows // 2, *random.Random(seed).sample(range(rows), min(rows, 6))})
    for i in picks[:SPOT_CHECKS]:
        want = expected_record(i, seed)
        for kind in KINDS:
            got = engines[kind].get(indexes[kind], want["objectID"])
            if got != want:
                problems.append(f"{kind}: {want['objectID']} is {got}, expected {want}")
    lines.append(f"spot checks: {min(len(picks), SPOT_CHECKS)} records (rows {', '.join(map(str, picks))}) "
                 "read back from both indexes and compared with the expected typed record")  # fmt: skip
    return lines, problems


# --- report ---------------------------------------------------------------------------------------


def environment(args: argparse.Namespace, csv_bytes: int, engine: str) -> list[str]:
    from importlib.metadata import version

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    packages = ", ".join(f"{p} {version(p)}" for p in ("prefect", "pandas", "SQLAlchemy", "elasticsearch"))
    return [
        f"CPU: {os.cpu_count()} logical CPUs ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {packages}",
        f"CSV: {args.rows:,} rows, {csv_bytes / 2**20:.1f} MB ({csv_bytes / args.rows:.0f} bytes a row), "
        f"seed {args.seed}; chunk {args.chunk_size:,} rows (both loads); engine: {engine}",
    ]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(loads: list[Load]) -> list[str]:
    header = ("load", "rows", "seconds", "rows/s", "RSS before MB", "RSS @10% MB", "RSS @100% MB", "peak MB")
    lines = []
    for load in loads:
        at10, at100 = load.rss_at(0.1), load.rss_at(1.0)
        lines.append((load.kind, f"{load.rows:,}", _num(load.seconds, ".1f"), _num(load.rate, ",.0f"),
                      _num(load.start_mb, ".0f"), _num(at10 and at10[1], ".0f"), _num(at100 and at100[1], ".0f"),
                      _num(load.peak_mb, ".0f")))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in lines]


def summary(baseline: Load, sluice: Load) -> list[str]:
    out = []
    if sluice.rate and baseline.rate:
        ratio = sluice.rate / baseline.rate
        verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
        out.append(f"ratio = sluice rows/s / baseline rows/s = {ratio:.2f} (goal >= {GOAL_RATIO:.2f}: {verdict})")
    at10, at100 = sluice.rss_at(0.1), sluice.rss_at(1.0)
    if at10 and at100:
        growth = at100[1] / at10[1] - 1
        verdict = "stayed flat" if growth < FLAT_GROWTH else "did NOT stay flat"
        out.append(f"sluice memory {verdict}: RSS {at10[1]:.0f} MB after {at10[0]:,} rows, {at100[1]:.0f} MB after "
                   f"{at100[0]:,} rows ({growth:+.0%}; flat means < +{FLAT_GROWTH:.0%})")  # fmt: skip
    if sluice.marks:
        # RSS over the run at every tenth of the rows, so a slow climb shows even when the ends agree.
        points = [p for f in range(1, 11) if (p := sluice.rss_at(f / 10))]
        out.append("sluice RSS by rows done, MB: " + ", ".join(f"{r:,}: {mb:.0f}" for r, mb in dict(points).items()))
    maxrss = ", ".join(f"{load.kind} {load.maxrss_mb:.0f}" for load in (baseline, sluice) if load.maxrss_mb)
    if maxrss:
        out.append(f"peak MB is sampled every 50 ms during the load; each process's ru_maxrss, MB: {maxrss}")
    if sluice.message:
        out.append(f"sluice flow run: {sluice.message}")
    return out


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.connectors.data import write_csv
    from blocks.search_engine import ElasticsearchEngine, EmbeddedEngine
    from tasks.destinations import alias_name

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-connectors-"))
    log(f"work directory: {workdir}")
    tag = uuid.uuid4().hex[:8]  # index names unique per run: a shared Elasticsearch may hold older ones
    index_name, baseline_index = f"products-{tag}", f"connectors-baseline-{tag}"
    prefect, osmem, engines = PrefectServer(workdir), None, {}
    loads = [Load(kind, args.rows) for kind in KINDS]
    problems: list[str] = []
    try:
        started = time.monotonic()
        csv_path = workdir / "catalog.csv"
        csv_bytes = write_csv(csv_path, args.rows, args.seed)
        log(f"CSV of {args.rows:,} rows written in {time.monotonic() - started:.1f} s (not measured)")
        search_url = args.elasticsearch_url
        if args.osmem:
            from osmem_server import OsmemServer

            with stderr_to(workdir / "osmem-server.log"):  # the server inherits fd 2 and chats on it
                osmem = OsmemServer.start(japanese=False)
            search_url = osmem.url
        engine_name = f"Elasticsearch at {search_url}" if search_url else "embedded (SQLite)"
        for line in environment(args, csv_bytes, engine_name + (", plain JSON" if args.plain_json else "")):
            print(line)
        print(flush=True)
        started = time.monotonic()
        prefect.start()
        log(f"Prefect server on port {prefect.port} started in {time.monotonic() - started:.1f} s")

        spec = {"rows": args.rows, "chunk_size": args.chunk_size, "csv_path": str(csv_path), "tenant": TENANT,
                "search_url": search_url, "plain_json": args.plain_json}  # fmt: skip
        for load in loads:
            rundir = workdir / load.kind
            env = clean_env() | {"PREFECT_HOME": str(rundir / "prefect-home")}
            if load.kind == "sluice":
                env |= prefect.env | {"SLUICE_DATA_DIR": str(rundir / "data"),
                                      "SLUICE_CONNECTOR_CHUNK_SIZE": str(args.chunk_size)}  # fmt: skip
                if search_url:
                    env |= {"SLUICE_ELASTICSEARCH_URL": search_url,
                            "SLUICE_ELASTICSEARCH_VENDOR_MEDIA_TYPES": str(not args.plain_json).lower()}  # fmt: skip
                child = {**spec, "kind": "sluice", "index": index_name}
            else:
                child = {**spec, "kind": "baseline", "index": baseline_index,
                         "search_path": str(rundir / "search.sqlite3")}  # fmt: skip
            run_child(load, child, env, rundir)
            if load.error:
                log(f"{load.kind:<8} FAILED: {load.error}")
                problems.append(f"{load.kind}: {load.error}")
            else:
                log(f"{load.kind:<8} {load.seconds:7.1f} s {load.rate:>9,.0f} rows/s peak {load.peak_mb:.0f} MB")

        indexes = {"baseline": baseline_index, "sluice": alias_name(TENANT, index_name)}
        if search_url:
            shared = ElasticsearchEngine(url=search_url, vendor_media_types=not args.plain_json)
            engines = {"baseline": shared, "sluice": shared}
        else:
            engines = {"baseline": EmbeddedEngine(path=str(workdir / "baseline" / "search.sqlite3")),
                       "sluice": EmbeddedEngine(path=str(workdir / "sluice" / "data" / "search.sqlite3"))}  # fmt: skip
        checks: list[str] = []
        if not any(load.error for load in loads):
            checks, wrong = verify(engines, indexes, args.rows, args.seed)
            problems += wrong
        if search_url and not args.keep:  # leave a shared cluster as it was
            for name in [*engines["sluice"].resolve(indexes["sluice"]), baseline_index]:
                if engines["baseline"].index_exists(name):
                    engines["baseline"].delete_index(name)
    finally:
        for engine in {id(e): e for e in engines.values()}.values():
            engine.close()
        prefect.stop()
        if osmem is not None:
            peak = server_peak_mb(osmem.pid)
            osmem.close()
            log(f"osmem-server's own peak RSS: {peak:.0f} MB" if peak else "osmem-server stopped")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    for line in table(loads):
        print(line)
    for line in summary(*loads):
        print(line)
    print()
    for line in checks:
        print(line)
    for problem in problems:
        print(f"FAILED {problem}")
    if not problems:
        print("correctness: OK (both indexes hold every row; the spot-checked records are equal and as expected)")
    print(f"total run time {time.monotonic() - began:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
