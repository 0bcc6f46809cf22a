"""Every app-database table, in one place.

The Openverse API database: ``image`` and ``audio`` with the Openverse columns, and the
``api_deleted*`` / ``api_mature*`` tables. On PostgreSQL the column types are Openverse's own
(uuid, jsonb, varchar[]); on SQLite they degrade to portable equivalents (JSON, text uuid).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

JsonB = JSON().with_variant(JSONB(), "postgresql")
StringArray = JSON().with_variant(ARRAY(String(255)), "postgresql")


def _json() -> Any:
    return Field(default=None, sa_type=JsonB)


def _array() -> Any:
    return Field(default=None, sa_type=StringArray)


def _timestamp(nullable: bool = False) -> Any:
    # sa_type, not sa_column: a Column object cannot be shared by the two media tables.
    return Field(default=None if nullable else ..., sa_type=DateTime(timezone=True), nullable=nullable)


class MediaBase(SQLModel):
    """Columns ``image`` and ``audio`` share."""

    id: int | None = Field(default=None, primary_key=True)
    created_on: datetime = _timestamp()
    updated_on: datetime = _timestamp()
    identifier: uuid.UUID = Field(unique=True)
    provider: str | None = Field(default=None, max_length=80, index=True)
    source: str | None = Field(default=None, max_length=80, index=True)
    foreign_identifier: str | None = Field(default=None, max_length=1000, index=True)
    foreign_landing_url: str | None = Field(default=None, max_length=1000)
    url: str | None = Field(default=None, max_length=1000, unique=True)
    thumbnail: str | None = Field(default=None, max_length=1000)
    filesize: int | None = None
    license: str = Field(max_length=50)
    license_version: str | None = Field(default=None, max_length=25)
    creator: str | None = Field(default=None, max_length=2000)
    creator_url: str | None = Field(default=None, max_length=2000)
    last_synced_with_source: datetime | None = _timestamp(nullable=True)
    removed_from_source: bool = False
    view_count: int | None = 0
    watermarked: bool | None = None
    filetype: str | None = Field(default=None, max_length=80)
    category: str | None = Field(default=None, max_length=80, index=True)


class Image(MediaBase, table=True):
    __tablename__ = "image"

    width: int | None = None
    height: int | None = None
    title: str | None = Field(default=None, max_length=5000)
    tags_list: list[str] | None = _array()
    meta_data: dict[str, Any] | None = _json()
    tags: list[dict[str, Any]] | None = _json()
    standardized_popularity: float | None = None


class Audio(MediaBase, table=True):
    __tablename__ = "audio"

    title: str | None = Field(default=None, max_length=2000)
    tags: list[dict[str, Any]] | None = _json()
    tags_list: list[str] | None = _array()
    meta_data: dict[str, Any] | None = _json()
    audio_set_position: int | None = None
    genres: list[str] | None = _array()
    duration: int | None = None
    bit_rate: int | None = None
    sample_rate: int | None = None
    alt_files: list[dict[str, Any]] | None = _json()
    audio_set_foreign_identifier: str | None = Field(default=None, max_length=1000)
    # Not an Openverse API column: the sample data's `audio_set` JSON, kept for the index.
    audio_set: dict[str, Any] | None = _json()
    standardized_popularity: float | None = None


class DeletedImage(SQLModel, table=True):
    __tablename__ = "api_deletedimage"

    identifier: uuid.UUID = Field(primary_key=True)
    created_on: datetime = _timestamp()
    updated_on: datetime = _timestamp()


class MatureImage(SQLModel, table=True):
    __tablename__ = "api_matureimage"

    identifier: uuid.UUID = Field(primary_key=True)
    created_on: datetime = _timestamp()


class DeletedAudio(SQLModel, table=True):
    __tablename__ = "api_deletedaudio"

    identifier: uuid.UUID = Field(primary_key=True)
    created_on: datetime = _timestamp()
    updated_on: datetime = _timestamp()


class MatureAudio(SQLModel, table=True):
    __tablename__ = "api_matureaudio"

    identifier: uuid.UUID = Field(primary_key=True)
    created_on: datetime = _timestamp()


MEDIA_TABLES: dict[str, tuple[type[MediaBase], type[SQLModel], type[SQLModel]]] = {
    "image": (Image, DeletedImage, MatureImage),
    "audio": (Audio, DeletedAudio, MatureAudio),
}


# --- tenants and credentials -------------------------------------------------------------------

# ingestion-manager: the document ingestion API; connectors-admin: the connectors API (/1/…),
# where the tenant is the Algolia-style "application".
ROLES = ("ingestion-manager", "connectors-admin", "collections-admin")


def _now() -> datetime:
    return datetime.now(UTC)


class Tenant(SQLModel, table=True):
    """A customer: an ingestion-API tenant and a connectors-API application (same name); every
    document, connector resource and key belongs to exactly one."""

    __tablename__ = "tenant"

    name: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class DocumentIndex(SQLModel, table=True):
    """A tenant's document index and the custom-metadata keys its documents may carry."""

    __tablename__ = "document_index"
    __table_args__ = (UniqueConstraint("tenant", "index_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(foreign_key="tenant.name", index=True, max_length=64)
    index_id: str = Field(max_length=64)
    is_default: bool = False
    allowed_metadata_keys: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class ApiKey(SQLModel, table=True):
    """A credential: only its argon2 hash is stored; ``key_id`` finds it, the secret proves it."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=32)
    tenant: str = Field(foreign_key="tenant.name", index=True, max_length=64)
    name: str = Field(default="", max_length=200)
    secret_hash: str = Field(max_length=200)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


# --- documents (ingestion) -----------------------------------------------------------------------


class DocumentStatus(StrEnum):
    """Where a document is in its lifecycle (see the README's status table)."""

    INGESTING = "ingesting"
    INGESTED = "ingested"
    INDEXING = "indexing"
    INDEXED = "indexed"
    INDEXING_UPDATE = "indexing_update"
    INDEXED_UPDATE = "indexed_update"
    MARKED_FOR_QUARANTINE = "marked_for_quarantine"
    QUARANTINED = "quarantined"
    QUARANTINE_FAILED = "quarantine_failed"
    MARKED_FOR_DELETION = "marked_for_deletion"
    DELETED = "deleted"
    FAILED = "failed"


class Document(SQLModel, table=True):
    """The latest version of one document of a tenant's index, as requested and as processed."""

    __tablename__ = "document"
    __table_args__ = (UniqueConstraint("tenant", "index_id", "document_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(foreign_key="tenant.name", max_length=64)
    index_id: str = Field(max_length=64)
    document_id: str = Field(max_length=64)
    version: int = 1
    status: str = Field(default=DocumentStatus.INGESTING, max_length=32, index=True)
    is_indexable: bool = True
    deleted: bool = False
    title: str | None = None
    uri: str | None = Field(default=None, max_length=4096)
    authors: list[str] | None = Field(default=None, sa_type=JSON)
    created_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_updated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    image_urls: list[str] | None = Field(default=None, sa_type=JSON)
    logo_url: str | None = Field(default=None, max_length=4096)
    custom_metadata: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    allow_access_rights: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    content_source_id: str | None = Field(default=None, max_length=64, index=True)
    content_ingestion_job_id: str | None = Field(default=None, max_length=64, index=True)
    content_type: str | None = Field(default=None, max_length=255)
    content_url: str | None = Field(default=None, max_length=4096)
    has_content: bool = False
    error_codes: list[str] | None = Field(default=None, sa_type=JSON)
    error_message: str | None = None
    # Processing bookkeeping (never shown): which version the search index holds (None: not in it),
    # when the processor claimed this version, and access rights changed since they were indexed.
    indexed_version: int | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    rights_version: int = 1
    rights_pending: bool = Field(default=False, index=True)
    request_created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    request_last_updated_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True), index=True)


class DocumentContent(SQLModel, table=True):
    """The bytes given inline (text or base64) for a document's current version; kept apart so
    listing documents never reads them."""

    __tablename__ = "document_content"

    document_pk: int = Field(foreign_key="document.id", primary_key=True)
    data: bytes = Field(sa_type=LargeBinary)


# --- connectors (Algolia-style /1/…) ---------------------------------------------------------------


class ConnectorRecord(SQLModel):
    """Columns every connectors record has; rows are soft-deleted (``deleted_at``)."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    tenant: str = Field(foreign_key="tenant.name", index=True, max_length=64)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    updated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True), index=True)


class ConnectorResource(ConnectorRecord):
    """An authentication, destination or source: a typed, named input."""

    type: str = Field(max_length=32)
    name: str = Field(max_length=1024)


class ConnectorAuthentication(ConnectorResource, table=True):
    """Credentials a source or destination logs in with. ``input_secret`` holds the whole input,
    encrypted (``sluice.secret_box``); ``input_public`` only the parts that are not secret."""

    __tablename__ = "connector_authentication"

    platform: str | None = Field(default=None, max_length=32)
    input_public: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    input_secret: str


class ConnectorDestination(ConnectorResource, table=True):
    """Where a task writes: an index (``indexName``) or indexes by prefix (``indexPrefix``)."""

    __tablename__ = "connector_destination"

    input: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    authentication_id: str | None = Field(default=None, foreign_key="connector_authentication.id", max_length=36)


class ConnectorSource(ConnectorResource, table=True):
    """Where a task reads: a CSV or JSON URL, BigQuery, a Docker/Singer image, a shop platform."""

    __tablename__ = "connector_source"

    input: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    authentication_id: str | None = Field(default=None, foreign_key="connector_authentication.id", max_length=36)
    streams: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)  # from the last successful discover
    discovered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ConnectorTask(ConnectorRecord, table=True):
    """Reads a source into a destination: on demand, on a cron schedule, or on a subscription event."""

    __tablename__ = "connector_task"

    source_id: str = Field(foreign_key="connector_source.id", index=True, max_length=36)
    destination_id: str = Field(foreign_key="connector_destination.id", index=True, max_length=36)
    trigger_type: str = Field(max_length=16)
    cron: str | None = Field(default=None, max_length=255)
    action: str = Field(max_length=16)
    enabled: bool = True
    failure_threshold: int | None = None
    input: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    last_run: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    consecutive_failures: int = 0
    cursor: dict[str, Any] | None = Field(default=None, sa_type=JSON)  # the source's state after the last success


class ConnectorEvent(SQLModel, table=True):
    """One step of a task run (``fetch``, ``transform``, ``record`` per chunk; a closing ``log``
    with the run's outcome). The run itself is the Prefect flow run ``run_id``."""

    __tablename__ = "connector_event"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    run_id: str = Field(index=True, max_length=36)
    tenant: str = Field(index=True, max_length=64)
    task_id: str = Field(max_length=36)
    parent_id: str | None = Field(default=None, max_length=36)
    type: str = Field(max_length=16)
    status: str = Field(max_length=16)
    batch_size: int = 0
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    published_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True), index=True)


# --- image collections (HeidICON-style /api/collection…) --------------------------------------------------


class ImageCollection(SQLModel, table=True):
    """A named set of images to search by similarity. ``finetuning_progess`` keeps the reference's
    spelling: it is part of the API its web frontend reads."""

    __tablename__ = "image_collection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    heidicon_tag: str | None = Field(default=None, max_length=200)
    last_modified: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    last_finetuned: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finetuning_progess: float | None = None
    finetune_run_id: str | None = Field(default=None, max_length=36)  # the Prefect flow run of the last finetune


class CollectionImage(SQLModel, table=True):
    """One row of a collection's CSV content: the image, the item's page, the other columns kept,
    and the image's embedding once a finetune has made it."""

    __tablename__ = "collection_image"

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="image_collection.id", index=True)
    position: int
    image_url: str = Field(max_length=2048)
    repo_url: str = Field(default="", max_length=2048)
    extra: list[str] = Field(default_factory=list, sa_type=JSON)
    # The image's vector lives on its row, so vectors can never drift from the content they describe.
    embedding: bytes | None = Field(default=None, sa_type=LargeBinary)
    image_sha256: str | None = Field(default=None, max_length=64)  # of the bytes embedded
    error: str | None = Field(default=None, max_length=500)  # why the last finetune could not embed it
