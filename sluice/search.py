"""The search-engine port: one small interface the flows use, and its typed query model.

Adapters (in ``blocks/search_engine.py``): ``ElasticsearchEngine`` and ``EmbeddedEngine``.
Mappings and settings are given in Elasticsearch's own format; the embedded engine reads the
parts it needs (field types, ``fields`` sub-fields, analyzers with a stemmer) from them.

Names: ``index`` parameters of read operations (count, get, search, copy source) accept an
alias that points at exactly one index, as Elasticsearch does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

# --- query model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """Field equals value (keyword, boolean, number, date); a list/tuple value means any of them."""

    field: str
    value: Any


@dataclass(frozen=True)
class Range:
    """Field within bounds (numbers or ISO dates); None means unbounded."""

    field: str
    gte: Any = None
    lte: Any = None
    gt: Any = None
    lt: Any = None


@dataclass(frozen=True)
class Phrase:
    """Any of ``fields`` (text fields, e.g. ``title.raw``) contains any of ``phrases`` as
    consecutive tokens, case-insensitively. Any number of phrases: adapters chunk as needed."""

    fields: tuple[str, ...]
    phrases: tuple[str, ...]


Filter = Term | Range | Phrase


@dataclass(frozen=True)
class Query:
    """Full-text ``text`` over ``fields`` (all text fields when empty), AND every ``filters``,
    AND NOT any of ``exclude``. Without text, every document matches (score 1)."""

    text: str | None = None
    fields: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    exclude: tuple[Filter, ...] = ()
    offset: int = 0
    limit: int = 10
    sort: tuple[tuple[str, Literal["asc", "desc"]], ...] = ()


@dataclass
class Hit:
    id: str
    score: float
    source: dict[str, Any]


@dataclass
class SearchResult:
    total: int
    hits: list[Hit] = field(default_factory=list)


# --- writes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkAction:
    """``index`` (create or replace), ``update`` (partial; ``upsert`` creates when missing)
    or ``delete`` one document by id."""

    op: Literal["index", "update", "delete"]
    id: str
    doc: dict[str, Any] | None = None
    upsert: bool = False


@dataclass
class BulkError:
    id: str
    status: int
    reason: str


@dataclass
class BulkResult:
    succeeded: int = 0
    errors: list[BulkError] = field(default_factory=list)


@dataclass(frozen=True)
class AliasAction:
    """Add ``alias`` to ``index`` or remove it from ``index``."""

    op: Literal["add", "remove"]
    index: str
    alias: str


# --- the port --------------------------------------------------------------------------------


class SearchEngine(ABC):
    """What Sluice needs from a search engine. Errors: ``sluice.errors.NotFound`` for a missing
    index, ``Conflict`` for a clash (index exists, delete of an alias name, alias name taken by an
    index), ``EngineUnavailable`` when the engine cannot be reached."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the engine answers."""

    @abstractmethod
    def create_index(self, name: str, mappings: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        """Create an index; ``Conflict`` if the name is taken by an index or alias."""

    @abstractmethod
    def delete_index(self, name: str) -> None:
        """Delete a concrete index; ``NotFound`` if missing, ``Conflict`` if ``name`` is an alias."""

    @abstractmethod
    def index_exists(self, name: str) -> bool:
        """True for a concrete index of that name (not an alias)."""

    @abstractmethod
    def list_indices(self, prefix: str = "") -> list[str]:
        """Concrete index names starting with ``prefix``, sorted."""

    @abstractmethod
    def get_aliases(self) -> dict[str, list[str]]:
        """Every alias and the indices it points at: ``{alias: [index, ...]}``."""

    @abstractmethod
    def update_aliases(self, actions: Iterable[AliasAction]) -> None:
        """Apply every action in one atomic step; ``NotFound`` for a missing index, ``Conflict``
        when an alias name is a concrete index."""

    @abstractmethod
    def put_settings(self, index: str, settings: dict[str, Any]) -> None:
        """Update dynamic index settings (e.g. ``number_of_replicas``, ``refresh_interval``)."""

    @abstractmethod
    def bulk(self, index: str, actions: Iterable[BulkAction]) -> BulkResult:
        """Apply the actions; per-document failures come back in ``errors``, never silently."""

    @abstractmethod
    def refresh(self, index: str) -> None:
        """Make every write so far visible to search and count."""

    @abstractmethod
    def count(self, index: str, query: Query | None = None) -> int:
        """Documents in ``index`` (or its alias), optionally matching ``query``."""

    @abstractmethod
    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The document's source, or None."""

    @abstractmethod
    def search(self, index: str, query: Query) -> SearchResult:
        """Ranked hits for ``query``; ``total`` counts every match, not just the page."""

    @abstractmethod
    def copy_index(self, source: str, dest: str, exclude: Iterable[Filter] = ()) -> int:
        """Copy every document of ``source`` into the existing ``dest`` except those matching any
        of ``exclude``; returns the number copied. Synchronous; ``dest`` is refreshed after."""

    @abstractmethod
    def scan(self, index: str, batch_size: int = 1000) -> Iterator[list[Hit]]:
        """Every document of ``index`` in batches, in no particular order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def resolve(self, name: str) -> list[str]:
        """The concrete indices behind a name: itself if it is an index, else its alias targets."""
        if self.index_exists(name):
            return [name]
        return self.get_aliases().get(name, [])
