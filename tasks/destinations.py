"""Writing a connector task's records into its destination index, through the search-engine port.

An Algolia index name (any case, most characters) becomes an engine alias of the application:
``app-{tenant}-{slug}-{hash}``. The alias always points at one concrete index
``{alias}--{run}``, so a ``replace`` can build a fresh index beside the live one and swap the alias
in one atomic update: searches see the old records or the new ones, never a half-built index.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.search import AliasAction, BulkAction, BulkResult, SearchEngine
from tasks.indices import alias_holders

Action = Literal["replace", "save", "partial"]
TEXT = {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}


def alias_name(tenant: str, index_name: str) -> str:
    """The engine alias of an application's index: readable, lowercase, and unique per exact name
    (``Products`` and ``products`` are two Algolia indexes, so the hash keeps them apart)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", index_name.lower()).strip("-_")[:80] or "index"
    digest = hashlib.sha256(f"{tenant}\0{index_name}".encode()).hexdigest()[:10]
    return f"app-{tenant}-{slug}-{digest}"


def mappings_for(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Dynamic mappings, with the text fields seen in the first records declared as text (with a
    ``.raw`` keyword), so full-text search works on every engine from the first run."""
    properties: dict[str, Any] = {"objectID": {"type": "keyword"}}
    for record in records[:100]:
        for key, value in record.items():
            if key not in properties and isinstance(value, str):
                properties[key] = TEXT
    return {"dynamic": True, "properties": properties}


@dataclass
class IndexWriter:
    """One run's writes to one destination. ``replace`` fills a new index and ``commit`` swaps it
    in; ``save`` and ``partial`` write into the live index (made on first use)."""

    engine: SearchEngine
    alias: str
    action: Action
    suffix: str
    target: str | None = None
    created: list[str] = field(default_factory=list)

    def open(self, first: list[dict[str, Any]]) -> str:
        """The index this run writes into (created when needed, typed from the first records)."""
        live = self.engine.resolve(self.alias)
        if self.action != "replace" and live:
            self.target = live[0]
            return self.target
        self.target = f"{self.alias}--{self.suffix}"
        self.engine.create_index(self.target, mappings_for(first))
        self.created.append(self.target)
        if self.action != "replace":  # first write to a new destination: it goes live at once
            self.engine.update_aliases([AliasAction("add", self.target, self.alias)])
        return self.target

    def write(self, records: list[dict[str, Any]]) -> BulkResult:
        """Write records (keyed by ``objectID``); refusals come back per record."""
        if self.target is None:
            self.open(records)
        if self.action == "partial":
            actions = [BulkAction("update", r["objectID"], r, upsert=True) for r in records]
        else:
            actions = [BulkAction("index", r.get("objectID") or str(uuid.uuid4()), r) for r in records]
        return self.engine.bulk(self.target, actions)

    def commit(self) -> list[str]:
        """Make the writes visible; for ``replace``, point the alias at the new index in one update
        and delete the indexes it left. Returns the indexes deleted."""
        if self.target is None:
            return []
        self.engine.refresh(self.target)
        if self.action != "replace":
            return []
        previous = [old for old in self.engine.resolve(self.alias) if old != self.target]
        if self.engine.index_exists(self.alias):  # an index squats the alias name: never ours to remove
            raise ValueError(f"{self.alias} is an index, not an alias; cannot swap it")
        actions = [AliasAction("remove", old, self.alias) for old in previous]
        self.engine.update_aliases([*actions, AliasAction("add", self.target, self.alias)])
        self.created.clear()
        deleted = [old for old in previous if not alias_holders(self.engine, old)]
        for old in deleted:
            self.engine.delete_index(old)
        return deleted

    def abort(self) -> None:
        """Remove an index this run built that never went live."""
        for name in self.created:
            if self.engine.index_exists(name) and not alias_holders(self.engine, name):
                self.engine.delete_index(name)
        self.created.clear()
