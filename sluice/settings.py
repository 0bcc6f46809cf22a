"""One Settings object, read from SLUICE_* environment variables (and a .env file)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

import limits
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"


class Settings(BaseSettings):
    """Everything Sluice reads from its environment; every embedded store lives in DATA_DIR."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", env_ignore_empty=True, extra="ignore")

    DATA_DIR: Path = Field(default=Path(".sluice"), description="Holds every embedded store.")
    DATABASE_URL: str | None = Field(default=None, description="App database; default: SQLite file in DATA_DIR.")
    SEARCH_ENGINE_BLOCK: str | None = Field(
        default=None,
        description="A saved engine block, 'block-type-slug/name' (edit it in the Prefect UI); wins over the rest.",
    )
    ELASTICSEARCH_URL: str | None = Field(
        default=None, description="Elasticsearch to index into; default: the embedded engine."
    )
    ELASTICSEARCH_API_KEY: SecretStr | None = None
    ELASTICSEARCH_USERNAME: str | None = None
    ELASTICSEARCH_PASSWORD: SecretStr | None = None
    ELASTICSEARCH_VERIFY_CERTS: bool = True
    ELASTICSEARCH_TIMEOUT: float = Field(default=60.0, gt=0)
    ELASTICSEARCH_COPY_REQUESTS_PER_SECOND: float | None = Field(
        default=None, gt=0, description="Throttle (documents/s) of index copies such as the filtered index."
    )
    ELASTICSEARCH_VENDOR_MEDIA_TYPES: bool = Field(
        default=True,
        description="Send Elasticsearch's versioned media types; false for an OpenSearch-compatible server.",
    )
    SENSITIVE_TERMS: str = Field(
        default=str(SAMPLE_DATA_DIR / "mock_sensitive_terms.txt"),
        description="File path or http(s) URL of the sensitive-terms list, one term per line.",
    )
    READ_BATCH_SIZE: int = Field(default=10_000, gt=0, description="Rows per keyset page.")
    BULK_CHUNK_SIZE: int = Field(default=400, gt=0, description="Documents per bulk request.")
    BULK_RETRIES: int = Field(default=3, ge=0, description="Retries of a failing bulk chunk.")
    BULK_RETRY_DELAY: float = Field(default=1.0, ge=0)
    READINESS_TOLERANCE: float = Field(
        default=0.0, ge=0, le=1, description="Allowed shortfall (fraction) of documents before promotion."
    )
    LOCK_TIMEOUT: float = Field(
        default=10.0, ge=1, description="Seconds a lifecycle flow waits for its model's lock, then fails."
    )
    DOCUMENT_MAX_CONTENT_BYTES: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest document content, inline or fetched from a URL."
    )
    FETCH_TIMEOUT: float = Field(
        default=20.0, gt=0, description="Seconds to fetch one document or image URL, redirects included."
    )
    FETCH_ALLOW_PRIVATE: bool = Field(
        default=False,
        description="Fetch document and image URLs on loopback and private networks (refused by default).",
    )
    FETCH_ALLOWED_NETWORKS: list[str] = Field(
        default_factory=list, description='Private networks fetched anyway, e.g. ["10.1.2.0/24"] (JSON list).'
    )
    FETCH_CONCURRENCY: int = Field(default=16, gt=0, description="Document (or image) URLs fetched at once.")
    IMAGE_MAX_BYTES: int = Field(default=20 * 1024 * 1024, gt=0, description="Largest image a collection fetches.")
    FINETUNE_BATCH_SIZE: int = Field(default=64, gt=0, description="Images downloaded and embedded per batch.")
    EXTRACT_MAX_CHARS: int = Field(default=1_000_000, gt=0, description="Longest text indexed per document.")
    PROCESS_BATCH_SIZE: int = Field(default=500, gt=0, description="Documents the processor claims per pass.")
    PROCESS_POLL_INTERVAL: float = Field(default=0.2, gt=0, description="Seconds between looks for new work.")
    SECRET_KEY: SecretStr | None = Field(
        default=None, description="Fernet key encrypting connector secrets; default: DATA_DIR/secret.key."
    )
    CONNECTORS_RATE_LIMIT: str = Field(
        default="200/minute", description="Requests per client IP to the connectors API (limits' notation)."
    )
    CONNECTORS_OBSERVABILITY_RATE_LIMIT: str = Field(
        default="200/30 seconds", description="Requests per client IP to the connectors API's runs and events."
    )
    CONNECTOR_CHUNK_SIZE: int = Field(default=5_000, gt=0, description="Source rows per chunk of a task run.")
    BIGQUERY_API_ENDPOINT: str | None = Field(
        default=None, description="BigQuery API base URL (an emulator); credentials are then anonymous."
    )
    DOCKER_URL: str | None = Field(
        default=None, description="Docker Engine API of Docker sources (unix:///…/podman.sock); default: DOCKER_HOST."
    )
    TAP_TIME_LIMIT: float = Field(default=3600.0, gt=0, description="Seconds a tap may run before it is killed.")
    TAP_MEMORY_LIMIT: str = Field(default="1g", description="Memory limit of a tap's container (Docker notation).")
    LOCAL_TAPS: bool = Field(default=False, description="Allow taps installed from PyPI to run unsandboxed.")
    TAPS_DIR: Path | None = Field(default=None, description="Local taps' virtual environments; default DATA_DIR/taps.")
    TAP_INSTALL_TIME_LIMIT: float = Field(default=900.0, gt=0, description="Seconds to install a local tap.")
    BIGCOMMERCE_API_URL: str = Field(
        default="https://api.bigcommerce.com", description="BigCommerce API base URL (stores/{storeHash}/v3/...)."
    )
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8001
    API_URL: str | None = Field(default=None, description="Base URL the CLI and status links use.")

    @field_validator("DATA_DIR")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("FETCH_ALLOWED_NETWORKS")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network)  # ValueError names the bad one
        return value

    @field_validator("CONNECTORS_RATE_LIMIT", "CONNECTORS_OBSERVABILITY_RATE_LIMIT")
    @classmethod
    def _rate(cls, value: str) -> str:
        limits.parse(value)  # ValueError names the bad notation
        return value

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.DATA_DIR / 'app.sqlite3'}"

    @property
    def search_path(self) -> Path:
        return self.DATA_DIR / "search.sqlite3"

    @property
    def api_url(self) -> str:
        return (self.API_URL or f"http://{self.API_HOST}:{self.API_PORT}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
