"""One load, alone in its process: ``python -m benchmarks.connectors.measure SPEC_JSON``.

The parent (``benchmarks.connectors.__main__``) starts one process per load so that the RSS seen
here belongs to that load alone. Only the load is timed: imports, the app database, the tenant,
source, destination and task rows are made before the clock starts.

SPEC_JSON holds ``kind`` (``sluice`` or ``baseline``), ``rows``, ``chunk_size``, ``csv_path``,
``index`` (the baseline's index, or the destination's ``indexName`` for Sluice), ``tenant``,
``search_path`` / ``search_url`` + ``plain_json`` (the baseline's engine; the Sluice run reads
``SLUICE_*`` from its environment) and ``result`` (the JSON file this process writes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import sys
import threading
import time
from typing import Any

from benchmarks.connectors.data import MAPPING, UNIQUE_ID

PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_EVERY = 0.05  # seconds between RSS samples
TRUE = frozenset({"true", "1", "yes", "y", "t"})  # as tasks.transform reads booleans


def rss_mb() -> float:
    """Resident set size of this process now, in MB (/proc/self/statm counts pages)."""
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


class Sampler(threading.Thread):
    """Samples RSS in the background: the peak during the load, whatever the load is doing."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY):
            self.peak = max(self.peak, rss_mb())
            self.samples += 1

    def stop(self) -> float:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_mb())
        return self.peak


class Progress:
    """(rows done, RSS MB, seconds since start) after every chunk."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.marks: list[tuple[int, float, float]] = []

    def mark(self, rows: int) -> None:
        self.marks.append((rows, rss_mb(), time.perf_counter() - self.started))


class ChunkLogHandler(logging.Handler):
    """Reads the flow's own "chunk N: R rows read, ..." log lines: Sluice's progress, untouched."""

    PATTERN = re.compile(r"chunk \d+: (\d+) rows read")

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        found = self.PATTERN.match(record.getMessage())
        if found:
            self.progress.mark(int(found.group(1)))


def make_task(spec: dict[str, Any]) -> str:
    """App database, tenant, CSV source, search destination and an onDemand replace task, as
    tests/flows/test_run_connector_task.py makes them; returns the task id."""
    from sluice import connectors as store
    from sluice import credentials, db
    from sluice.settings import get_settings

    get_settings.cache_clear()
    db.get_engine.cache_clear()
    url = get_settings().database_url
    db.upgrade(url)
    with db.session(url) as session:
        credentials.create_tenant(session, spec["tenant"])
        source = store.create(session, store.SOURCES, spec["tenant"], store.ResourceCreate(
            type="csv", name="catalog",
            input={"url": f"file://{spec['csv_path']}", "uniqueIDColumn": UNIQUE_ID, "mapping": MAPPING}))  # fmt: skip
        destination = store.create(session, store.DESTINATIONS, spec["tenant"], store.ResourceCreate(
            type="search", name="catalog-index", input={"indexName": spec["index"]}))  # fmt: skip
        task = store.create_task(session, spec["tenant"], store.TaskCreate(
            sourceID=source.id, destinationID=destination.id, trigger={"type": "onDemand"},
            action="replace"))  # fmt: skip
        return task.id


def run_sluice(spec: dict[str, Any]) -> dict[str, Any]:
    """The real connector flow, called as the deployment calls it."""
    from flows.run_connector_task import run_connector_task

    task_id = make_task(spec)
    progress = Progress()
    logging.getLogger("prefect.flow_runs").addHandler(ChunkLogHandler(progress))
    sampler = Sampler()
    start_mb = sampler.peak
    sampler.start()
    progress.started = started = time.perf_counter()
    state = run_connector_task(task_id=task_id, trigger="onDemand", return_state=True)
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if not state.is_completed():
        raise RuntimeError(f"the flow run ended {state.type.value}: {state.message}")
    return {"seconds": seconds, "start_mb": start_mb, "peak_mb": peak, "marks": progress.marks,
            "message": state.message}  # fmt: skip


def baseline_engine(spec: dict[str, Any]):
    from blocks.search_engine import ElasticsearchEngine, EmbeddedEngine

    if spec.get("search_url"):
        return ElasticsearchEngine(url=spec["search_url"], vendor_media_types=not spec["plain_json"])
    return EmbeddedEngine(path=spec["search_path"])


def run_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """What a hand-written loader does: pandas chunks, vectorised types, raw bulk writes."""
    import pandas as pd

    from sluice.search import BulkAction
    from tasks.destinations import mappings_for  # the same index layout as Sluice's: text fields + .raw

    engine = baseline_engine(spec)
    name, rows = spec["index"], 0
    progress = Progress()
    sampler = Sampler()
    start_mb = sampler.peak
    sampler.start()
    progress.started = started = time.perf_counter()
    try:
        for chunk in pd.read_csv(spec["csv_path"], chunksize=spec["chunk_size"], dtype=str):
            chunk["price"] = chunk["price"].astype(float)
            chunk["stock"] = chunk["stock"].astype("int64")
            chunk["in_stock"] = chunk["in_stock"].str.lower().isin(TRUE)
            chunk["objectID"] = chunk[UNIQUE_ID]
            docs = chunk.to_dict("records")
            if not rows:
                engine.create_index(name, mappings_for(docs))
            result = engine.bulk(name, [BulkAction("index", d["objectID"], d) for d in docs])
            if result.errors:
                first = result.errors[0]
                raise RuntimeError(f"{len(result.errors)} documents refused, first {first.id}: {first.reason}")
            rows += len(docs)
            progress.mark(rows)
        engine.refresh(name)
        seconds = time.perf_counter() - started
    finally:
        engine.close()
    return {"seconds": seconds, "start_mb": start_mb, "peak_mb": sampler.stop(), "marks": progress.marks}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run_sluice(spec) if spec["kind"] == "sluice" else run_baseline(spec)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    with open(spec["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
