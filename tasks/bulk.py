"""Loading documents into an index: every document lands or the task fails — never a silent drop."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from sluice.errors import EngineUnavailable
from sluice.search import BulkAction, SearchEngine


class BulkLoadError(EngineUnavailable):
    """Some documents were refused; the message names them so nothing is lost unnoticed."""


def _chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# cache_policy=NONE: hashing thousands of documents for a cache key costs more than the load.
@task(name="bulk-index-batch", cache_policy=NONE, retries=3, retry_delay_seconds=1)
def bulk_index_batch(engine: SearchEngine, index: str, docs: list[dict[str, Any]], chunk_size: int) -> int:
    """Index one batch of documents (keyed by ``id``) in bulk chunks; returns how many landed.

    Re-running the whole batch on a retry is safe: documents are keyed by id.
    """
    loaded = 0
    for chunk in _chunks(docs, chunk_size):
        result = engine.bulk(index, (BulkAction("index", str(d["id"]), d) for d in chunk))
        if result.errors:
            sample = "; ".join(f"{e.id}: {e.status} {e.reason}" for e in result.errors[:5])
            raise BulkLoadError(f"{len(result.errors)} of {len(chunk)} documents refused by {index}: {sample}")
        loaded += result.succeeded
    return loaded
