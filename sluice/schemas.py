"""Request and response bodies of the HTTP APIs (tables live in ``models.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.indices import SUFFIX_PATTERN

Suffix = Field(default=None, pattern=SUFFIX_PATTERN.pattern, description="Lowercase letters, digits, - and _.")


class Action(StrEnum):
    REINDEX = "REINDEX"
    UPDATE_INDEX = "UPDATE_INDEX"
    CREATE_AND_POPULATE_FILTERED_INDEX = "CREATE_AND_POPULATE_FILTERED_INDEX"
    POINT_ALIAS = "POINT_ALIAS"
    DELETE_INDEX = "DELETE_INDEX"
    PROMOTE = "PROMOTE"


class TaskCreate(BaseModel):
    """POST /task: the Openverse ingestion-server body, plus PROMOTE."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["image", "audio"]
    action: Action
    index_suffix: str | None = Suffix
    alias: str | None = Field(default=None, pattern=SUFFIX_PATTERN.pattern)
    force_delete: bool = False
    origin_index_suffix: str | None = Suffix
    destination_index_suffix: str | None = Suffix
    since_date: datetime | None = None
    callback_url: AnyHttpUrl | None = None

    @model_validator(mode="after")
    def _required_per_action(self) -> TaskCreate:
        needs = {
            Action.POINT_ALIAS: ("index_suffix", "alias"),
            Action.DELETE_INDEX: ("index_suffix",),
            Action.UPDATE_INDEX: ("since_date",),
        }.get(self.action, ())
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.action.value} needs {' and '.join(missing)}")
        return self

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters the action's flow takes, from this body."""
        common = {"model": self.model, "callback_url": str(self.callback_url) if self.callback_url else None}
        by_action: dict[Action, dict[str, Any]] = {
            Action.REINDEX: {"index_suffix": self.index_suffix},
            Action.PROMOTE: {"index_suffix": self.index_suffix},
            Action.UPDATE_INDEX: {"index_suffix": self.index_suffix, "since_date": self.since_date},
            Action.CREATE_AND_POPULATE_FILTERED_INDEX: {
                "origin_index_suffix": self.origin_index_suffix,
                "destination_index_suffix": self.destination_index_suffix,
            },
            Action.POINT_ALIAS: {"index_suffix": self.index_suffix, "alias": self.alias},
            Action.DELETE_INDEX: {"index_suffix": self.index_suffix, "force_delete": self.force_delete},
        }
        return common | by_action[self.action]


class TaskCreated(BaseModel):
    message: str
    task_id: str
    status_check: str


class TaskStatus(BaseModel):
    """A task as the Openverse ingestion server reports it, read from its Prefect flow run."""

    task_id: str
    active: bool
    model: str | None
    action: str | None
    progress: float
    state: str
    start_timestamp: float | None
    start_time: datetime | None
    finish_timestamp: float | None
    finish_time: datetime | None
    error: bool
    error_message: str | None = None
    is_bad_request: bool
    parameters: dict[str, Any] = {}


class TaskPage(BaseModel):
    count: int
    page: int
    page_size: int
    results: list[TaskStatus]


class IndexStat(BaseModel):
    """GET /stat/{name}: whether the name exists, as an index or an alias, and its size."""

    exists: bool
    is_alias: bool | None = None
    alt_names: list[str] | None = None
    count: int | None = None


# --- document ingestion (/v0/service/ingestion/documents…) ------------------------------------------


class DocumentBatch(BaseModel):
    """Each document is checked on its own: a bad one goes to ``errors``, the rest are stored."""

    index_id: str | None = Field(default=None, max_length=64, description="Default: the tenant's default index.")
    documents: list[Any] = Field(max_length=1000)


class AccessRightsBatch(BaseModel):
    index_id: str | None = Field(default=None, max_length=64)
    documents: list[Any] = Field(max_length=1000, description="Each: {document_id, allow_access_rights}.")


class DeleteBatch(BaseModel):
    index_id: str | None = Field(default=None, max_length=64)
    document_ids: list[Any] = Field(max_length=1000)


class AcceptedDocument(BaseModel):
    document_id: str
    version: int
    content_source_id: str | None = None
    content_ingestion_job_id: str | None = None
    status: str


class DocumentError(BaseModel):
    document_id: str | None = None
    error_message: str


class BatchResponse(BaseModel):
    tenant: str
    index_id: str
    documents: list[AcceptedDocument]
    errors: list[DocumentError]


class StoredContent(BaseModel):
    content_type: str | None
    from_: dict[str, Any] = Field(default_factory=dict, description="Always empty: read the content at download_url.")
    download_url: str


class StoredDocument(BaseModel):
    tenant: str
    index_id: str
    document_id: str
    version: int
    is_indexable: bool
    deleted: bool
    title: str | None = None
    uri: str | None = None
    authors: list[str] | None = None
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    image_urls: list[str] | None = None
    logo_url: str | None = None
    custom_metadata: dict[str, Any] | None = None
    allow_access_rights: list[dict[str, Any]] | None = None
    content_source_id: str | None = None
    content_ingestion_job_id: str | None = None
    document_content: StoredContent | None = None
    request_created_at: datetime
    request_last_updated_at: datetime
    status: str | None = Field(default=None, description="With include_document_status=true.")
    error_codes: list[str] | None = None
    error_message: str | None = None

    @field_validator("created_at", "last_updated_at", "request_created_at", "request_last_updated_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # SQLite hands back naive datetimes; every stored time is UTC.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class PageRef(BaseModel):
    page: int
    page_size: int


class _Paged(BaseModel):
    count: int
    page: int
    page_size: int
    next: PageRef | None = None
    previous: PageRef | None = None


class DocumentPage(_Paged):
    results: list[StoredDocument]


class SearchHit(BaseModel):
    document_id: str
    version: int | None = None
    score: float
    title: str | None = None
    uri: str | None = None
    content_source_id: str | None = None


class SearchPage(_Paged):
    results: list[SearchHit]
