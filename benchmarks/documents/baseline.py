"""The baseline, alone in its process: ``python -m benchmarks.documents.baseline SPEC_JSON``.

The same batches the load generator sends, written straight to the embedded search engine in
this process: no API, no app database, no queue, no Prefect. Each document becomes the search
document the processor would write (``tasks.documents.prepare`` on an in-memory ``Work``: plain
text extraction included), then one ``EmbeddedEngine.bulk`` and one ``refresh`` per batch, as
``tasks.documents.write_outcomes`` does per pass. Only the writes are timed (document generation
is not), batch by batch.

SPEC_JSON holds ``search_path``, ``documents``, ``batch``, ``seed`` and ``result`` (the JSON file
this process writes: per-batch seconds, total seconds, the final document count).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

INDEX = "sluice-docs.bench.main"  # the name tasks.documents.engine_index gives tenant bench, index main


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.documents.data import documents
    from blocks.embedded import EmbeddedEngine
    from sluice.search import BulkAction
    from sluice.settings import Settings
    from tasks.documents import DOCUMENT_MAPPINGS, Work, prepare

    settings = Settings(_env_file=None)  # the defaults: the parent dropped every SLUICE_* variable
    docs = list(documents(spec["documents"], seed=spec["seed"]))
    size = spec["batch"]
    now = datetime.now(UTC)
    engine = EmbeddedEngine(path=spec["search_path"])
    batch_seconds: list[float] = []
    try:
        engine.create_index(INDEX, DOCUMENT_MAPPINGS)
        started = time.perf_counter()
        for start in range(0, len(docs), size):
            job = str(uuid.uuid4())  # the API gives each batch one ingestion job id
            t0 = time.perf_counter()
            actions = []
            for pk, d in enumerate(docs[start : start + size], start=start + 1):
                work = Work(
                    pk=pk, index=INDEX, document_id=d.document_id, version=1, rights_version=1, claimed_at=now,
                    is_update=False, is_indexable=True, content_type="text/plain", content_url=None,
                    data=d.text.encode(), fields={
                        "document_id": d.document_id, "version": 1, "title": d.title, "uri": None, "authors": None,
                        "created_at": None, "last_updated_at": None, "access_rights": [], "content_source_id": None,
                        "content_ingestion_job_id": job, "custom_metadata": None,
                    },
                )  # fmt: skip
                outcome = prepare(work, settings)
                if outcome.doc is None:
                    raise RuntimeError(f"document {d.number}: {outcome.error_codes} {outcome.error_message}")
                actions.append(BulkAction("index", d.document_id, outcome.doc))
            result = engine.bulk(INDEX, actions)
            engine.refresh(INDEX)
            batch_seconds.append(time.perf_counter() - t0)
            if result.errors:
                first = result.errors[0]
                raise RuntimeError(f"{len(result.errors)} documents refused, first {first.id}: {first.reason}")
        seconds = time.perf_counter() - started
        count = engine.count(INDEX)
    finally:
        engine.close()
    return {"batch_seconds": batch_seconds, "seconds": seconds, "documents": count}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run(spec)
    with open(spec["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
