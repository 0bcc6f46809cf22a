"""The search-engine blocks: Elasticsearch (or an OpenSearch-compatible server) and the embedded
SQLite engine, both implementing ``sluice.search.SearchEngine``."""

from __future__ import annotations

from blocks.elasticsearch import ElasticsearchEngine
from blocks.embedded import EmbeddedEngine
from sluice.search import SearchEngine
from sluice.settings import Settings

__all__ = ["ElasticsearchEngine", "EmbeddedEngine", "engine_from_settings"]


def engine_from_settings(settings: Settings) -> SearchEngine:
    """Elasticsearch when ``ELASTICSEARCH_URL`` is set, else the embedded engine in ``DATA_DIR``."""
    if settings.ELASTICSEARCH_URL:
        return ElasticsearchEngine(
            url=settings.ELASTICSEARCH_URL,
            api_key=settings.ELASTICSEARCH_API_KEY,
            username=settings.ELASTICSEARCH_USERNAME,
            password=settings.ELASTICSEARCH_PASSWORD,
            verify_certs=settings.ELASTICSEARCH_VERIFY_CERTS,
            request_timeout=settings.ELASTICSEARCH_TIMEOUT,
            vendor_media_types=settings.ELASTICSEARCH_VENDOR_MEDIA_TYPES,
        )
    return EmbeddedEngine(path=str(settings.search_path))
