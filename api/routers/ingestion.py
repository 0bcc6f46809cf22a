"""The document ingestion API (Zeta Alpha style): ``/v0/service/ingestion/documents…``.

Every route needs credentials holding the ``ingestion-manager`` role for ``?tenant=``. Writes are
stored in one transaction and answered at once; the ``process-documents`` flow fetches, extracts
and indexes them (see the README's status table). Nothing here waits on the search engine except
search itself.
"""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from api.deps import SearchEngineDep, SessionDep, SettingsDep, tenant_with_role
from sluice import documents as store
from sluice.errors import NotFound
from sluice.models import Document, DocumentContent, Tenant
from sluice.schemas import (
    AccessRightsBatch,
    BatchResponse,
    DeleteBatch,
    DocumentBatch,
    DocumentPage,
    PageRef,
    SearchHit,
    SearchPage,
    StoredContent,
    StoredDocument,
)
from sluice.search import Query as EngineQuery
from sluice.search import Term
from tasks.documents import engine_index

PREFIX = "/v0/service/ingestion/documents"
PUBLIC = "public"  # the access right that grants every caller of the tenant

router = APIRouter(prefix=PREFIX, tags=["document ingestion"])
TenantDep = Annotated[Tenant, Depends(tenant_with_role("ingestion-manager"))]
IndexIdQuery = Annotated[str | None, Query(max_length=64, description="Default: the tenant's default index.")]
PageQuery = Annotated[int, Query(ge=1, le=100_000)]
PageSizeQuery = Annotated[int, Query(ge=1, le=1000)]


def _json(model: BaseModel, exclude_none: bool = False) -> Response:
    # Already validated: serialise once (FastAPI's response_model would validate the page again).
    return Response(model.model_dump_json(exclude_none=exclude_none), media_type="application/json")


def _batch(result: store.BatchResult) -> Response:
    return _json(BatchResponse.model_validate(result, from_attributes=True))


@router.post("/document-batches", response_model=BatchResponse)
def ingest_documents(body: DocumentBatch, tenant: TenantDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Store a batch of documents (status ``ingesting``); each bad document is reported in ``errors``."""
    limit = settings.DOCUMENT_MAX_CONTENT_BYTES
    return _batch(store.ingest_batch(session, tenant.name, body.index_id, body.documents, max_content_bytes=limit))


@router.post("/access-rights-batches", response_model=BatchResponse)
def update_access_rights(body: AccessRightsBatch, tenant: TenantDep, session: SessionDep) -> Response:
    """Replace documents' access rights without processing their content again."""
    return _batch(store.update_access_rights(session, tenant.name, body.index_id, body.documents))


@router.post("/delete-document-batches", response_model=BatchResponse)
def delete_documents(body: DeleteBatch, tenant: TenantDep, session: SessionDep) -> Response:
    """Mark documents for deletion; they leave the index shortly after and read ``deleted: true``."""
    return _batch(store.mark_for_deletion(session, tenant.name, body.index_id, body.document_ids))


def _page_links(count: int, page: int, page_size: int) -> dict[str, PageRef | None]:
    return {
        "next": PageRef(page=page + 1, page_size=page_size) if page * page_size < count else None,
        "previous": PageRef(page=page - 1, page_size=page_size) if page > 1 else None,
    }


@router.get("/search", response_model=SearchPage)
def search_documents(
    tenant: TenantDep, session: SessionDep, engine: SearchEngineDep,
    index_id: IndexIdQuery = None,
    q: Annotated[str | None, Query(max_length=1000, description="Words to find in title and text.")] = None,
    access_rights: Annotated[list[str], Query(max_length=100, description="The caller's rights (repeat).")] = [],  # noqa: B006
    page: PageQuery = 1, page_size: PageSizeQuery = 10,
) -> SearchPage:  # fmt: skip
    """Indexed documents that grant one of ``access_rights`` (or ``public``), best match first."""
    index = store.resolve_index(session, tenant.name, index_id)
    query = EngineQuery(
        text=q or None, fields=("title", "text"), filters=(Term("access_rights", sorted({*access_rights, PUBLIC})),),
        offset=(page - 1) * page_size, limit=page_size,
    )  # fmt: skip
    try:
        result = engine.search(engine_index(tenant.name, index.index_id), query)
    except NotFound:  # nothing indexed yet
        return SearchPage(count=0, page=page, page_size=page_size, results=[])
    shown = ("version", "title", "uri", "content_source_id")
    hits = [SearchHit(document_id=hit.id, score=hit.score, **{k: hit.source.get(k) for k in shown})
            for hit in result.hits]  # fmt: skip
    return SearchPage(count=result.total, page=page, page_size=page_size, results=hits,
                      **_page_links(result.total, page, page_size))  # fmt: skip


def _stored(request: Request, row: Document, include_status: bool) -> StoredDocument:
    content = None
    if row.has_content:
        url = request.url_for("download_content", document_id=row.document_id).include_query_params(
            tenant=row.tenant, index_id=row.index_id
        )
        content = StoredContent(content_type=row.content_type, download_url=str(url))
    fields = row.model_dump(include=set(StoredDocument.model_fields) - {"status", "error_codes", "error_message"})
    if include_status:
        fields |= {"status": row.status, "error_codes": row.error_codes, "error_message": row.error_message}
    return StoredDocument(**fields, document_content=content)


StatusQuery = Annotated[bool, Query(description="Add status, error_codes and error_message.")]


@router.get("", response_model=DocumentPage, response_model_exclude_none=True)
def list_documents(
    request: Request, tenant: TenantDep, session: SessionDep,
    index_id: IndexIdQuery = None,
    content_source_id: Annotated[str | None, Query(max_length=64)] = None,
    content_ingestion_job_id: Annotated[str | None, Query(max_length=64)] = None,
    request_last_updated_after: datetime | None = None,
    document_id_in: Annotated[list[str], Query(max_length=1000, description="Repeat the parameter.")] = [],  # noqa: B006
    uri_in: Annotated[list[str], Query(max_length=1000, description="Repeat the parameter.")] = [],  # noqa: B006
    include_document_status: StatusQuery = False,
    page: PageQuery = 1, page_size: PageSizeQuery = 100,
) -> Response:  # fmt: skip
    """A page of the tenant's documents, oldest request first, with links to the next and previous pages."""
    count, rows = store.list_documents(
        session, tenant.name, index_id, content_source_id=content_source_id,
        content_ingestion_job_id=content_ingestion_job_id, request_last_updated_after=request_last_updated_after,
        document_id_in=document_id_in, uri_in=uri_in, page=page, page_size=page_size,
    )  # fmt: skip
    results = [_stored(request, row, include_document_status) for row in rows]
    page_body = DocumentPage(count=count, page=page, page_size=page_size, results=results,
                             **_page_links(count, page, page_size))  # fmt: skip
    return _json(page_body, exclude_none=True)


@router.get("/{document_id}", response_model=StoredDocument, response_model_exclude_none=True)
def get_document(
    request: Request, document_id: str, tenant: TenantDep, session: SessionDep,
    index_id: IndexIdQuery = None, include_document_status: StatusQuery = False,
) -> StoredDocument:  # fmt: skip
    """The stored document (its content at ``download_url``); deleted ones read ``deleted: true``."""
    return _stored(request, store.get_document(session, tenant.name, index_id, document_id), include_document_status)


CONTENT_RESPONSES = {200: {"content": {"application/octet-stream": {}}}, 307: {"description": "Content at a URL"}}


@router.get("/{document_id}/content", name="download_content", response_class=Response, responses=CONTENT_RESPONSES)
def download_content(document_id: str, tenant: TenantDep, session: SessionDep, index_id: IndexIdQuery = None):
    """The content as given: the bytes (as an attachment) or a redirect to the URL it came from."""
    row = store.get_document(session, tenant.name, index_id, document_id)
    if row.deleted or not row.has_content:
        raise NotFound(f"document {document_id!r} has no content" + (" (deleted)" if row.deleted else ""))
    if row.content_url:
        return RedirectResponse(row.content_url, status_code=307)
    content = session.get(DocumentContent, row.id)
    if content is None:
        raise NotFound(f"document {document_id!r} has no content")
    media_type = row.content_type or "application/octet-stream"
    extension = mimetypes.guess_extension(media_type.partition(";")[0].strip()) or ""
    disposition = f'attachment; filename="{document_id}{extension}"'
    return Response(content.data, media_type=media_type, headers={"Content-Disposition": disposition})
