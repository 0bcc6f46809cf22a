"""One measurement, alone in its process: ``python -m benchmarks.reindex.measure SPEC_JSON``.

The parent (``benchmarks.reindex.__main__``) starts one process per measurement so that the peak
RSS reported here (``ru_maxrss`` of this process) belongs to that load alone. Only the load is
timed: imports, engine start-up and the final count are not.

SPEC_JSON holds ``kind`` (``sluice`` or ``baseline``), ``engine`` (``osmem`` or ``embedded``),
``rows`` (expected documents), ``index_suffix``, ``database_url``, ``search_url`` (osmem),
``search_path`` (embedded baseline; the Sluice run reads ``SLUICE_*`` from its environment)
and ``result`` (the JSON file this process writes).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

CHUNK_SIZE = 400  # documents per bulk request, as the product's default SLUICE_BULK_CHUNK_SIZE
STREAM_ROWS = 2_000  # rows the baseline's one query fetches at a time


def peak_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_sluice(spec: dict[str, Any]) -> dict[str, Any]:
    """The real ``reindex`` flow, configured by the SLUICE_* environment the parent set."""
    from blocks.search_engine import engine_from_settings
    from flows.index_lifecycle import reindex
    from sluice.settings import get_settings

    start_mb = peak_mb()
    started = time.perf_counter()
    name = reindex(model="image", index_suffix=spec["index_suffix"])
    seconds = time.perf_counter() - started
    engine = engine_from_settings(get_settings())
    try:
        documents = engine.count(name)
    finally:
        engine.close()
    return {"index": name, "seconds": seconds, "documents": documents, "start_mb": start_mb}


def baseline_documents(database_url: str) -> Iterator[dict[str, Any]]:
    """The rows the reindex loads, read with one plain streaming query, as the same documents."""
    from sqlalchemy import or_, select

    from sluice.db import make_engine
    from sluice.models import DeletedImage, Image, MatureImage
    from tasks.media import to_document

    image, deleted, mature = Image.__table__, DeletedImage.__table__, MatureImage.__table__
    stmt = (
        select(image, image.c.identifier.in_(select(mature.c.identifier)).label("in_mature_table"))
        .where(
            or_(image.c.removed_from_source.is_(False), image.c.removed_from_source.is_(None)),
            image.c.identifier.not_in(select(deleted.c.identifier)),
        )
        .order_by(image.c.id)
    )
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            for row in conn.execution_options(yield_per=STREAM_ROWS).execute(stmt):
                yield to_document("image", row, row.in_mature_table)
    finally:
        engine.dispose()


def run_baseline_osmem(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw ``elasticsearch.helpers.bulk`` with the product's client set-up (plain JSON media types)."""
    from elasticsearch import helpers

    from blocks.search_engine import ElasticsearchEngine
    from tasks.media import index_mappings, index_settings

    name = f"image-{spec['index_suffix']}"
    block = ElasticsearchEngine(url=spec["search_url"], vendor_media_types=False)
    client = block._client()  # the product's client: PlainJsonNode, same timeouts
    try:
        start_mb = peak_mb()
        started = time.perf_counter()
        client.indices.create(index=name, mappings=index_mappings("image"), settings=index_settings())
        actions = (
            {"_op_type": "index", "_index": name, "_id": str(doc["id"]), "_source": doc}
            for doc in baseline_documents(spec["database_url"])
        )
        loaded, _ = helpers.bulk(client, actions, chunk_size=CHUNK_SIZE, max_retries=0, stats_only=True)
        client.indices.refresh(index=name)
        seconds = time.perf_counter() - started
        documents = int(client.count(index=name)["count"])
    finally:
        block.close()
    return {"index": name, "seconds": seconds, "documents": documents, "loaded": loaded, "start_mb": start_mb}


def run_baseline_embedded(spec: dict[str, Any]) -> dict[str, Any]:
    """Straight ``EmbeddedEngine.bulk`` calls, 400 documents each: no flow, no Prefect."""
    from blocks.search_engine import EmbeddedEngine
    from sluice.search import BulkAction
    from tasks.media import index_mappings, index_settings

    name = f"image-{spec['index_suffix']}"
    engine = EmbeddedEngine(path=spec["search_path"])
    try:
        start_mb = peak_mb()
        started = time.perf_counter()
        engine.create_index(name, index_mappings("image"), index_settings())
        docs = baseline_documents(spec["database_url"])
        loaded = 0
        while chunk := list(islice(docs, CHUNK_SIZE)):
            result = engine.bulk(name, (BulkAction("index", str(d["id"]), d) for d in chunk))
            if result.errors:
                first = result.errors[0]
                raise RuntimeError(f"{len(result.errors)} documents refused, first {first.id}: {first.reason}")
            loaded += result.succeeded
        engine.refresh(name)
        seconds = time.perf_counter() - started
        documents = engine.count(name)
    finally:
        engine.close()
    return {"index": name, "seconds": seconds, "documents": documents, "loaded": loaded, "start_mb": start_mb}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if spec["kind"] == "sluice":
        result = run_sluice(spec)
    elif spec["engine"] == "osmem":
        result = run_baseline_osmem(spec)
    else:
        result = run_baseline_embedded(spec)
    result["peak_mb"] = peak_mb()
    with open(spec["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
