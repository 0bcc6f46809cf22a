"""The document store of the ingestion API: validate a batch document by document, keep what is
valid durably (one transaction), version re-ingested documents, read them back.

Processing (fetch, extract, index) happens later, in a flow; this module never waits on it.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import bindparam, delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from sluice.errors import Conflict, InvalidInput, NotFound
from sluice.models import Document, DocumentContent, DocumentIndex, DocumentStatus

MAX_BATCH_DOCUMENTS = 1000
INSERT_ATTEMPTS = 3
DEFAULT_MAX_CONTENT_BYTES = 20 * 1024 * 1024
# type/subtype (RFC 9110 tokens), then printable parameters: it goes back out as a header.
CONTENT_TYPE_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[ -~]*)?$"
DOCUMENT_ID_PATTERN = re.compile(r"^[0-9a-f]{40}$")  # the documented format: sha1 hex of the caller's id


class ContentSource(BaseModel):
    """Exactly one of the three ways to give content."""

    model_config = ConfigDict(extra="forbid")

    plain_text_string: str | None = None
    base64_string: str | None = None
    url: AnyHttpUrl | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ContentSource:
        given = [name for name in ("plain_text_string", "base64_string", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of plain_text_string, base64_string, url (got {len(given)})")
        return self


class ContentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    content_type: str = Field(max_length=255, pattern=CONTENT_TYPE_PATTERN, description="A MIME type, e.g. text/html.")
    from_: ContentSource = Field(validation_alias=AliasChoices("from_", "from"))


class AccessRight(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    type: str | None = Field(default=None, max_length=64)
    content_source_id: str | None = Field(default=None, max_length=64)


class DocumentIn(BaseModel):
    """One document of a batch, as the client sends it."""

    model_config = ConfigDict(extra="forbid")

    document_id: str | None = Field(default=None, pattern=DOCUMENT_ID_PATTERN.pattern)
    is_indexable: bool = True
    custom_metadata: dict[str, Any] | None = None
    document_content: ContentIn | None = None
    allow_access_rights: list[AccessRight] | None = Field(default=None, max_length=1000)
    uri: str | None = Field(default=None, max_length=4096)
    content_source_id: str | None = Field(default=None, max_length=64)
    content_ingestion_job_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=10_000)
    authors: str | list[str] | None = None
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    image_urls: list[str] | None = Field(default=None, max_length=100)
    logo_url: str | None = Field(default=None, max_length=4096)


@dataclass
class Accepted:
    document_id: str
    version: int
    content_source_id: str | None
    content_ingestion_job_id: str | None
    status: str


@dataclass
class BatchResult:
    tenant: str
    index_id: str
    documents: list[Accepted] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def resolve_index(session: Session, tenant: str, index_id: str | None) -> DocumentIndex:
    """The tenant's named index, or its default one."""
    query = select(DocumentIndex).where(DocumentIndex.tenant == tenant)
    query = query.where(DocumentIndex.index_id == index_id) if index_id else query.where(DocumentIndex.is_default)
    index = session.exec(query).first()
    if index is None:
        raise InvalidInput(
            f"tenant {tenant!r} has no index {index_id!r}" if index_id else f"tenant {tenant!r} has no default index"
        )
    return index


def _message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())


def _content_bytes(content: ContentIn, max_bytes: int) -> bytes | None:
    source = content.from_
    if source.url is not None:
        return None
    if source.plain_text_string is not None:
        data = source.plain_text_string.encode("utf-8")
    else:
        try:
            data = base64.b64decode(source.base64_string or "", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("document_content.from_.base64_string: not valid base64") from None
    if len(data) > max_bytes:
        raise ValueError(f"document_content: {len(data)} bytes is over the {max_bytes}-byte limit")
    return data


def ingest_batch(
    session: Session,
    tenant: str,
    index_id: str | None,
    documents: list[Any],
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> BatchResult:
    """Store every valid document of a batch as ``ingesting`` (a new version if it exists);
    each invalid one goes to ``errors`` and changes nothing already stored."""
    _check_batch(documents, "documents")
    index = resolve_index(session, tenant, index_id)
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            return _ingest(session, index, documents, max_content_bytes)
        except IntegrityError:
            # Another batch created one of these documents after we looked: look again, and the
            # document becomes a new version of that one.
            session.rollback()
            if attempt == INSERT_ATTEMPTS:
                raise Conflict("these documents are being written by other requests right now; retry") from None
    raise AssertionError("unreachable")


def _claimed_id(raw: Any) -> str | None:
    """The id a document claims, for its error entry (only if it is a string at all)."""
    claimed = raw.get("document_id") if isinstance(raw, dict) else None
    return claimed if isinstance(claimed, str) else None


def _ingest(session: Session, index: DocumentIndex, documents: list[Any], max_content_bytes: int) -> BatchResult:
    allowed = set(index.allowed_metadata_keys)
    batch_job = str(uuid.uuid4())  # documents that name no ingestion job share one for this batch
    result = BatchResult(tenant=index.tenant, index_id=index.index_id)
    valid: dict[str, tuple[DocumentIn, bytes | None]] = {}
    for raw in documents:
        try:
            doc = DocumentIn.model_validate(raw)
            unknown = sorted(set(doc.custom_metadata or {}) - allowed)
            if unknown:
                raise ValueError(f"custom_metadata: keys not allowed by index {index.index_id!r}: {', '.join(unknown)}")
            content = _content_bytes(doc.document_content, max_content_bytes) if doc.document_content else None
            document_id = doc.document_id or str(uuid.uuid4())
            if document_id in valid:
                raise ValueError("document_id appears twice in this batch")
        except ValidationError as exc:
            result.errors.append({"document_id": _claimed_id(raw), "error_message": _message(exc)})
            continue
        except ValueError as exc:
            result.errors.append({"document_id": _claimed_id(raw), "error_message": str(exc)})
            continue
        valid[document_id] = (doc, content)
    if valid:
        stored = _write(session, index, valid, batch_job)
        result.documents = [stored[document_id] for document_id in valid]
    session.commit()
    return result


def _columns(doc: DocumentIn, batch_job: str, now: datetime) -> dict[str, Any]:
    """A new version's column values, as sent (everything processing sets is reset)."""
    fields = doc.model_dump(exclude={"document_id", "document_content", "authors", "allow_access_rights"})
    content, url = doc.document_content, doc.document_content and doc.document_content.from_.url
    return fields | {
        "authors": [doc.authors] if isinstance(doc.authors, str) else doc.authors,
        "allow_access_rights": [r.model_dump() for r in doc.allow_access_rights or []],
        "content_ingestion_job_id": doc.content_ingestion_job_id or batch_job,
        "content_type": content.content_type if content else None,
        "content_url": str(url) if url else None,
        "has_content": content is not None,
        "status": DocumentStatus.INGESTING.value, "deleted": False, "error_codes": None, "error_message": None,
        "request_last_updated_at": now, "claimed_at": None,
    }  # fmt: skip


def _write(
    session: Session, index: DocumentIndex, valid: dict[str, tuple[DocumentIn, bytes | None]], batch_job: str
) -> dict[str, Accepted]:
    """Insert new documents and make new versions of stored ones, a few statements per batch (the
    app database's write lock is held for as short as possible)."""
    now = datetime.now(UTC)
    table, contents = Document.__table__, DocumentContent.__table__
    conn = session.connection()
    existing = {
        document_id: pk
        for pk, document_id in conn.execute(
            select(table.c.id, table.c.document_id).where(
                table.c.tenant == index.tenant, table.c.index_id == index.index_id,
                table.c.document_id.in_(list(valid)),
            )
        )
    }  # fmt: skip
    values = {document_id: _columns(doc, batch_job, now) for document_id, (doc, _) in valid.items()}
    pks = dict(existing)
    if new := [d for d in valid if d not in existing]:
        rows = [values[d] | {"tenant": index.tenant, "index_id": index.index_id, "document_id": d, "version": 1,
                             "request_created_at": now, "rights_version": 1, "rights_pending": False}
                for d in new]  # fmt: skip
        inserted = conn.execute(insert(table).returning(table.c.id, table.c.document_id), rows)
        pks |= {document_id: pk for pk, document_id in inserted}
    if existing:
        names = list(next(iter(values.values())))
        # version + 1 in SQL: a concurrent batch's new version is never lost.
        stmt = (
            update(table)
            .where(table.c.id == bindparam("pk"))
            .values(version=table.c.version + 1, **{name: bindparam(f"new_{name}") for name in names})
        )
        conn.execute(stmt, [{"pk": pk} | {f"new_{k}": v for k, v in values[d].items()} for d, pk in existing.items()])
        conn.execute(delete(contents).where(contents.c.document_pk.in_(list(existing.values()))))
    if data := [{"document_pk": pks[d], "data": content} for d, (_, content) in valid.items() if content is not None]:
        conn.execute(insert(contents), data)
    versions = dict(conn.execute(select(table.c.id, table.c.version).where(table.c.id.in_(list(pks.values())))).all())
    return {
        d: Accepted(d, versions[pks[d]], values[d]["content_source_id"], values[d]["content_ingestion_job_id"],
                    DocumentStatus.INGESTING.value)
        for d in valid
    }  # fmt: skip


def _rows(session: Session, index: DocumentIndex, document_ids: list[str]) -> dict[str, Document]:
    """The stored rows of these ids in one query (chunked under every database's parameter limit)."""
    rows: dict[str, Document] = {}
    for start in range(0, len(document_ids), 500):
        chunk = document_ids[start : start + 500]
        found = session.exec(
            select(Document).where(
                Document.tenant == index.tenant, Document.index_id == index.index_id, Document.document_id.in_(chunk)
            )
        )
        rows.update((row.document_id, row) for row in found)
    return rows


def _find(session: Session, index: DocumentIndex, document_id: str) -> Document | None:
    return _rows(session, index, [document_id]).get(document_id)


def get_document(session: Session, tenant: str, index_id: str | None, document_id: str) -> Document:
    index = resolve_index(session, tenant, index_id)
    row = _find(session, index, document_id)
    if row is None:
        raise NotFound(f"no document {document_id!r} in index {index.index_id!r}")
    return row


def list_documents(
    session: Session,
    tenant: str,
    index_id: str | None,
    *,
    content_source_id: str | None = None,
    content_ingestion_job_id: str | None = None,
    request_last_updated_after: datetime | None = None,
    document_id_in: list[str] | None = None,
    uri_in: list[str] | None = None,
    page: int = 1,
    page_size: int = 100,
) -> tuple[int, list[Document]]:
    """One page of a tenant's documents (oldest request first, stable) and the total count."""
    index = resolve_index(session, tenant, index_id)
    clauses = [Document.tenant == tenant, Document.index_id == index.index_id]
    if content_source_id is not None:
        clauses.append(Document.content_source_id == content_source_id)
    if content_ingestion_job_id is not None:
        clauses.append(Document.content_ingestion_job_id == content_ingestion_job_id)
    if request_last_updated_after is not None:
        if request_last_updated_after.tzinfo is not None:  # stored times are UTC
            request_last_updated_after = request_last_updated_after.astimezone(UTC)
        clauses.append(Document.request_last_updated_at > request_last_updated_after)
    if document_id_in:
        clauses.append(Document.document_id.in_(document_id_in))
    if uri_in:
        clauses.append(Document.uri.in_(uri_in))
    count = session.exec(select(func.count()).select_from(Document).where(*clauses)).one()
    rows = session.exec(
        select(Document).where(*clauses).order_by(Document.request_created_at, Document.id)
        .offset((page - 1) * page_size).limit(page_size)
    ).all()  # fmt: skip
    return count, list(rows)


# --- access rights and deletes: stored at once, applied to the search index by the processor ------


class RightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str = Field(min_length=1, max_length=64)
    allow_access_rights: list[AccessRight] = Field(max_length=1000)


def _check_batch(items: Any, what: str) -> list[Any]:
    if not isinstance(items, list) or len(items) > MAX_BATCH_DOCUMENTS:
        raise InvalidInput(f"{what}: a list of at most {MAX_BATCH_DOCUMENTS} items")
    return items


def _accepted(row: Document) -> Accepted:
    return Accepted(row.document_id, row.version, row.content_source_id, row.content_ingestion_job_id, row.status)


def update_access_rights(session: Session, tenant: str, index_id: str | None, documents: Any) -> BatchResult:
    """Replace the access rights of stored documents, content untouched; an indexed document gets
    them in the search index on the processor's next pass (a partial update, no re-extraction)."""
    index = resolve_index(session, tenant, index_id)
    items = _check_batch(documents, "documents")
    rows = _rows(session, index, [claimed for raw in items if (claimed := _claimed_id(raw))])
    result = BatchResult(tenant=tenant, index_id=index.index_id)
    now = datetime.now(UTC)
    for raw in items:
        try:
            item = RightsIn.model_validate(raw)
        except ValidationError as exc:
            result.errors.append({"document_id": _claimed_id(raw), "error_message": _message(exc)})
            continue
        row = rows.get(item.document_id)
        if row is None or row.deleted or row.status == DocumentStatus.MARKED_FOR_DELETION:
            what = "no document" if row is None else "deleted document"
            message = f"{what} {item.document_id!r} in index {index.index_id!r}"
            result.errors.append({"document_id": item.document_id, "error_message": message})
            continue
        row.allow_access_rights = [r.model_dump() for r in item.allow_access_rights]
        row.rights_version += 1
        row.rights_pending = True
        row.request_last_updated_at = now
        session.add(row)
        result.documents.append(_accepted(row))
    session.commit()
    return result


def mark_for_deletion(session: Session, tenant: str, index_id: str | None, document_ids: Any) -> BatchResult:
    """Mark documents ``marked_for_deletion``; the processor removes them from the search index and
    then reports them ``deleted``. Deleting a deleted document again is accepted and changes nothing."""
    index = resolve_index(session, tenant, index_id)
    ids = _check_batch(document_ids, "document_ids")
    valid = [i for i in ids if isinstance(i, str) and 0 < len(i) <= 64]
    rows = _rows(session, index, valid)
    result = BatchResult(tenant=tenant, index_id=index.index_id)
    now = datetime.now(UTC)
    for document_id in ids:
        row = rows.get(document_id) if isinstance(document_id, str) else None
        if row is None:
            shown = document_id if isinstance(document_id, str) else None
            message = f"no document {document_id!r} in index {index.index_id!r}"
            result.errors.append({"document_id": shown, "error_message": message})
            continue
        if not row.deleted:
            row.status = DocumentStatus.MARKED_FOR_DELETION.value
            row.claimed_at = None
            row.request_last_updated_at = now
            session.add(row)
        result.documents.append(_accepted(row))
    session.commit()
    return result
