"""The search-engine blocks: Elasticsearch (or an OpenSearch-compatible server) and the embedded
SQLite engine, both implementing ``sluice.search.SearchEngine``."""

from __future__ import annotations

from prefect.blocks.core import Block

from blocks.elasticsearch import ElasticsearchEngine
from blocks.embedded import EmbeddedEngine
from sluice.errors import ConfigurationError
from sluice.search import SearchEngine
from sluice.settings import Settings

__all__ = ["ElasticsearchEngine", "EmbeddedEngine", "engine_from_settings", "register_engine_blocks"]


ENGINE_BLOCKS = (ElasticsearchEngine, EmbeddedEngine)


def register_engine_blocks() -> None:
    """Make both engine block types known to the Prefect server, so users can create them in the UI."""
    for block in ENGINE_BLOCKS:
        block.register_type_and_schema()


def engine_from_settings(settings: Settings) -> SearchEngine:
    """The saved block named by ``SEARCH_ENGINE_BLOCK``; else Elasticsearch when ``ELASTICSEARCH_URL``
    is set; else the embedded engine in ``DATA_DIR``."""
    if settings.SEARCH_ENGINE_BLOCK:
        try:
            engine = Block.load(settings.SEARCH_ENGINE_BLOCK)
        except ValueError as exc:
            raise ConfigurationError(f"SLUICE_SEARCH_ENGINE_BLOCK: {exc}") from exc
        if not isinstance(engine, SearchEngine):
            raise ConfigurationError(
                f"SLUICE_SEARCH_ENGINE_BLOCK: {settings.SEARCH_ENGINE_BLOCK!r} is no search engine"
            )
        return engine
    if settings.ELASTICSEARCH_URL:
        return ElasticsearchEngine(
            url=settings.ELASTICSEARCH_URL,
            api_key=settings.ELASTICSEARCH_API_KEY,
            username=settings.ELASTICSEARCH_USERNAME,
            password=settings.ELASTICSEARCH_PASSWORD,
            verify_certs=settings.ELASTICSEARCH_VERIFY_CERTS,
            request_timeout=settings.ELASTICSEARCH_TIMEOUT,
            copy_requests_per_second=settings.ELASTICSEARCH_COPY_REQUESTS_PER_SECOND,
            vendor_media_types=settings.ELASTICSEARCH_VENDOR_MEDIA_TYPES,
        )
    return EmbeddedEngine(path=str(settings.search_path))
