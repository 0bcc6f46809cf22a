"""The steps of document processing: claim stored work, turn each document into its search
document (fetch, extract), write to the search index, record the outcome.

The app database is the queue. A claim stamps ``claimed_at`` (and moves indexable documents to
``indexing``/``indexing_update``); an outcome is written only if the document still holds the
claimed version and claim, so a newer version or a delete that arrives meanwhile always wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, case, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from sluice.errors import Conflict, EngineUnavailable, NotFound
from sluice.models import Document, DocumentContent, DocumentStatus
from sluice.search import BulkAction, SearchEngine
from sluice.settings import Settings
from tasks.extract import ExtractionError, extract_text
from tasks.fetch import FetchError, fetch_url

S = DocumentStatus
WAITING = (S.INGESTING.value, S.MARKED_FOR_DELETION.value)
IN_FLIGHT = (S.INDEXING.value, S.INDEXING_UPDATE.value, S.MARKED_FOR_QUARANTINE.value)
# Errors in the bytes themselves (type, size, integrity) quarantine a document; errors getting them
# (the URL) or indexing them fail it.
QUARANTINE_CODES = frozenset(
    {"content_too_large", "unsupported_content_type", "content_type_mismatch", "undecodable_content",
     "corrupt_content", "encrypted_content", "empty_content"}
)  # fmt: skip
INDEX_REFUSED = "index_refused"
PROCESSING_ERROR = "processing_error"

DOCUMENT_MAPPINGS: dict[str, Any] = {
    "properties": {
        "document_id": {"type": "keyword"},
        "version": {"type": "integer"},
        "title": {"type": "text"},
        "text": {"type": "text"},
        "uri": {"type": "keyword"},
        "authors": {"type": "keyword"},
        "created_at": {"type": "date"},
        "last_updated_at": {"type": "date"},
        "access_rights": {"type": "keyword"},
        "content_source_id": {"type": "keyword"},
        "content_ingestion_job_id": {"type": "keyword"},
        "content_type": {"type": "keyword"},
        "custom_metadata": {"type": "object"},
    }
}


def engine_index(tenant: str, index_id: str) -> str:
    """The search index behind a tenant's document index. Tenant and index names never hold '.',
    so no two (tenant, index) pairs share a name."""
    return f"sluice-docs.{tenant}.{index_id}"


def access_right_names(rights: list[dict[str, Any]] | None) -> list[str]:
    return sorted({r["name"] for r in rights or []})


@dataclass
class Work:
    """One claimed document version, with everything processing needs (detached from the session)."""

    pk: int
    index: str
    document_id: str
    version: int
    rights_version: int
    claimed_at: datetime
    is_update: bool  # the search index holds an earlier version
    is_indexable: bool
    content_type: str | None
    content_url: str | None
    data: bytes | None
    fields: dict[str, Any]


@dataclass
class Outcome:
    work: Work
    status: str
    doc: dict[str, Any] | None = None  # the search document, when it goes to the index
    error_codes: list[str] | None = None
    error_message: str | None = None


@dataclass
class Report:
    """What one pass did, by final status."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, n: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items())) or "nothing"


# --- claiming ----------------------------------------------------------------------------------


def release_claims(engine: Engine) -> int:
    """Put every claimed, unfinished document back in the queue (after a processor stopped mid-pass).
    Safe only while no other processor runs: the deployment allows one."""
    with Session(engine) as session:
        result = session.exec(
            update(Document)
            .where(col(Document.claimed_at).is_not(None), col(Document.status).in_([*IN_FLIGHT, S.INGESTING.value]))
            .values(status=S.INGESTING.value, claimed_at=None)
        )
        session.commit()
        return result.rowcount


def claim_documents(engine: Engine, limit: int) -> list[Work]:
    """Claim up to ``limit`` waiting documents, oldest request first (one UPDATE: the app database's
    write lock is held as briefly as the API's)."""
    now = datetime.now(UTC)
    table = Document.__table__
    with Session(engine, expire_on_commit=False) as session:
        ids = session.exec(
            select(Document.id)
            .where(Document.status == S.INGESTING.value, col(Document.claimed_at).is_(None))
            .order_by(Document.request_last_updated_at, Document.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: processors never claim the same rows
        ).all()
        if not ids:
            return []
        in_flight = case(
            (table.c.is_indexable & table.c.indexed_version.is_not(None), S.INDEXING_UPDATE.value),
            (table.c.is_indexable, S.INDEXING.value),
            else_=table.c.status,  # not indexable: it stays "ingesting" until it is "ingested"
        )
        session.exec(update(table).where(table.c.id.in_(ids)).values(status=in_flight, claimed_at=now))
        rows = session.exec(select(Document).where(col(Document.id).in_(ids))).all()
        data = dict(session.exec(select(DocumentContent.document_pk, DocumentContent.data)
                                 .where(col(DocumentContent.document_pk).in_(ids))).all())  # fmt: skip
        session.commit()
        return [_work(row, data.get(row.id), now) for row in rows]


def _work(row: Document, data: bytes | None, claimed_at: datetime) -> Work:
    fields = {
        "document_id": row.document_id,
        "version": row.version,
        "title": row.title,
        "uri": row.uri,
        "authors": row.authors,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "last_updated_at": row.last_updated_at.isoformat() if row.last_updated_at else None,
        "access_rights": access_right_names(row.allow_access_rights),
        "content_source_id": row.content_source_id,
        "content_ingestion_job_id": row.content_ingestion_job_id,
        "custom_metadata": row.custom_metadata,
    }
    return Work(
        pk=row.id, index=engine_index(row.tenant, row.index_id), document_id=row.document_id, version=row.version,
        rights_version=row.rights_version, claimed_at=claimed_at, is_update=row.indexed_version is not None,
        is_indexable=row.is_indexable,
        content_type=row.content_type, content_url=row.content_url, data=data, fields=fields,
    )  # fmt: skip


# --- preparing: fetch and extract ------------------------------------------------------------------


def prepare(work: Work, settings: Settings) -> Outcome:
    """The search document of one claimed version, or why it cannot have one."""
    if not work.is_indexable:
        return Outcome(work, S.INGESTED.value)
    doc = {k: v for k, v in work.fields.items() if v is not None}
    if work.data is None and work.content_url is None:
        return Outcome(work, "", doc=doc)  # metadata only
    try:
        data, content_type = work.data, work.content_type
        if data is None:
            fetched = fetch_url(
                work.content_url, max_bytes=settings.DOCUMENT_MAX_CONTENT_BYTES, timeout=settings.FETCH_TIMEOUT,
                allow_private=settings.FETCH_ALLOW_PRIVATE, allowed_networks=settings.FETCH_ALLOWED_NETWORKS,
            )  # fmt: skip
            data = fetched.content
            # The declared type wins; the server's only fills in a generic one (it knows the charset).
            if not content_type or content_type == "application/octet-stream":
                content_type = fetched.content_type
        extracted = extract_text(data, content_type, max_chars=settings.EXTRACT_MAX_CHARS)
    except (FetchError, ExtractionError) as exc:
        status = S.MARKED_FOR_QUARANTINE if exc.code in QUARANTINE_CODES else S.FAILED
        return Outcome(work, status.value, error_codes=[exc.code], error_message=exc.message)
    except Exception as exc:  # a bug must fail one document, not the processor
        return Outcome(
            work, S.FAILED.value, error_codes=[PROCESSING_ERROR], error_message=f"{type(exc).__name__}: {exc}"
        )
    doc["text"] = extracted.text
    doc["content_type"] = extracted.content_type
    doc.setdefault("title", extracted.title)
    if doc["title"] is None:
        del doc["title"]
    return Outcome(work, "", doc=doc)


def prepare_all(work: list[Work], settings: Settings) -> list[Outcome]:
    """Prepare every claimed document; URL fetches run side by side."""
    if not any(w.content_url for w in work):
        return [prepare(w, settings) for w in work]
    with ThreadPoolExecutor(max_workers=settings.FETCH_CONCURRENCY, thread_name_prefix="fetch") as pool:
        return list(pool.map(lambda w: prepare(w, settings), work))


# --- writing to the search index ---------------------------------------------------------------------


def ensure_index(engine: SearchEngine, name: str, known: set[str]) -> None:
    if name in known:
        return
    try:
        engine.create_index(name, DOCUMENT_MAPPINGS)
    except Conflict:  # it exists already
        pass
    known.add(name)


def write_outcomes(engine: SearchEngine, outcomes: list[Outcome], known: set[str]) -> None:
    """Index every prepared document and remove every version that must leave the index.
    Per-document refusals become outcomes; an unreachable engine raises (nothing is recorded)."""
    by_index: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.doc is not None or outcome.status in (S.INGESTED.value, S.MARKED_FOR_QUARANTINE.value):
            by_index.setdefault(outcome.work.index, []).append(outcome)
    for index, group in by_index.items():
        ensure_index(engine, index, known)
        actions = [BulkAction("index", o.work.document_id, o.doc) if o.doc is not None
                   else BulkAction("delete", o.work.document_id) for o in group]  # fmt: skip
        errors = {e.id: e for e in engine.bulk(index, actions).errors if e.status != 404}
        engine.refresh(index)  # "indexed" means searchable
        for outcome in group:
            error = errors.get(outcome.work.document_id)
            if outcome.doc is not None:
                outcome.status = (S.INDEXED_UPDATE if outcome.work.is_update else S.INDEXED).value
                if error:
                    outcome.status, outcome.doc = S.FAILED.value, None
                    outcome.error_codes = [INDEX_REFUSED]
                    outcome.error_message = f"the search index refused the document: {error.status} {error.reason}"
            elif outcome.status == S.MARKED_FOR_QUARANTINE.value:
                outcome.status = (S.QUARANTINE_FAILED if error else S.QUARANTINED).value
                if error:
                    outcome.error_message += f"; removing the previous version failed: {error.reason}"


# --- recording outcomes ------------------------------------------------------------------------------


def _holds_claim(table: Any) -> tuple:
    """WHERE the row still holds the claimed version and claim (params ``pk``, ``v``, ``at``)."""
    return table.c.id == bindparam("pk"), table.c.version == bindparam("v"), table.c.claimed_at == bindparam("at")


def _claim_params(outcome: Outcome) -> dict[str, Any]:
    return {"pk": outcome.work.pk, "v": outcome.work.version, "at": outcome.work.claimed_at,
            "codes": outcome.error_codes, "message": outcome.error_message}  # fmt: skip


def mark_for_quarantine(engine: Engine, outcomes: list[Outcome]) -> None:
    """Show documents whose content failed a check as ``marked_for_quarantine`` (with why) while
    their earlier version leaves the search index; the claim is kept."""
    table = Document.__table__
    stmt = (
        update(table)
        .where(*_holds_claim(table))
        .values(
            status=S.MARKED_FOR_QUARANTINE.value, error_codes=bindparam("codes"), error_message=bindparam("message")
        )
    )
    params = [_claim_params(o) for o in outcomes if o.status == S.MARKED_FOR_QUARANTINE.value]
    if params:
        with engine.begin() as conn:
            conn.execute(stmt, params)


def record_outcomes(engine: Engine, outcomes: list[Outcome]) -> Report:
    """Write each outcome if its document still holds the claimed version and claim."""
    report = Report()
    if not outcomes:
        return report
    table = Document.__table__
    finish = (
        update(table)
        .where(*_holds_claim(table))
        .values(status=bindparam("status"), claimed_at=None, error_codes=bindparam("codes"),
                error_message=bindparam("message"))
    )  # fmt: skip
    # What the search index holds is a fact whatever happened to the row meanwhile.
    held = (
        update(table)
        .where(table.c.id == bindparam("pk"))
        .values(indexed_version=bindparam("held"),
                rights_pending=case((table.c.rights_version == bindparam("rv"), False), else_=table.c.rights_pending))
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(finish, [_claim_params(o) | {"status": o.status} for o in outcomes])
        in_index = [{"pk": o.work.pk, "held": o.work.version, "rv": o.work.rights_version}
                    for o in outcomes if o.doc is not None]  # fmt: skip
        removed = [{"pk": o.work.pk, "held": None, "rv": o.work.rights_version}
                   for o in outcomes if o.status in (S.INGESTED.value, S.QUARANTINED.value)]  # fmt: skip
        if in_index or removed:
            conn.execute(held, in_index + removed)
    for outcome in outcomes:
        report.add(outcome.status)
    return report


def release(engine: Engine, work: Iterable[Work]) -> None:
    """Give claimed documents back to the queue untouched (the engine was unreachable)."""
    table = Document.__table__
    stmt = (
        update(table)
        .where(table.c.id == bindparam("pk"), table.c.claimed_at == bindparam("at"))
        .values(status=S.INGESTING.value, claimed_at=None, error_codes=None, error_message=None)
    )
    params = [{"pk": w.pk, "at": w.claimed_at} for w in work]
    if params:
        with engine.begin() as conn:
            conn.execute(stmt, params)


# --- deletes and access-rights changes -----------------------------------------------------------------


def _apply(engine: SearchEngine, index: str, actions: list[BulkAction], what: str) -> None:
    """Apply changes to documents that may already be gone (404s and a missing index are fine);
    any other refusal raises, so the rows stay pending and the next pass retries."""
    try:
        result = engine.bulk(index, actions)
    except NotFound:  # the index was never created: nothing to change
        return
    engine.refresh(index)
    refused = [e for e in result.errors if e.status != 404]
    if refused:
        raise EngineUnavailable(f"{index} refused {len(refused)} {what}: {refused[0].reason}")


def apply_deletions(db_engine: Engine, engine: SearchEngine, limit: int) -> int:
    """Remove documents marked for deletion from the search index, then mark them deleted and drop
    their stored content. Returns how many."""
    with Session(db_engine) as session:
        rows = session.exec(
            select(Document.id, Document.tenant, Document.index_id, Document.document_id, Document.version)
            .where(Document.status == S.MARKED_FOR_DELETION.value)
            .limit(limit)
        ).all()
    if not rows:
        return 0
    by_index: dict[str, list[str]] = {}
    for _pk, tenant, index_id, document_id, _v in rows:
        by_index.setdefault(engine_index(tenant, index_id), []).append(document_id)
    for index, ids in by_index.items():
        _apply(engine, index, [BulkAction("delete", i) for i in ids], "deletes")
    now = datetime.now(UTC)
    table = Document.__table__
    stmt = (
        update(table)
        .where(table.c.id == bindparam("pk"), table.c.version == bindparam("v"),
               table.c.status == S.MARKED_FOR_DELETION.value)
        .values(status=S.DELETED.value, deleted=True, indexed_version=None, rights_pending=False,
                request_last_updated_at=now)
    )  # fmt: skip
    with Session(db_engine) as session:
        session.connection().execute(stmt, [{"pk": pk, "v": v} for pk, *_, v in rows])
        gone = select(Document.id).where(col(Document.id).in_([r[0] for r in rows]), Document.deleted)
        session.exec(delete(DocumentContent).where(col(DocumentContent.document_pk).in_(gone)))
        session.commit()
    return len(rows)


def apply_access_rights(db_engine: Engine, engine: SearchEngine, limit: int) -> int:
    """Push changed access rights of indexed documents to the search index (a partial update)."""
    with Session(db_engine) as session:
        rows = session.exec(
            select(Document.id, Document.tenant, Document.index_id, Document.document_id, Document.rights_version,
                   Document.allow_access_rights, Document.indexed_version, Document.status)
            # Queued and in-flight documents take their new rights with them; deletes drop them.
            .where(Document.rights_pending, col(Document.status).not_in([*WAITING, *IN_FLIGHT]))
            .limit(limit)
        ).all()  # fmt: skip
    if not rows:
        return 0
    by_index: dict[str, list[Any]] = {}
    for row in rows:
        if row.indexed_version is not None:
            by_index.setdefault(engine_index(row.tenant, row.index_id), []).append(row)
    for index, group in by_index.items():
        actions = [BulkAction("update", r.document_id, {"access_rights": access_right_names(r.allow_access_rights)})
                   for r in group]  # fmt: skip
        _apply(engine, index, actions, "access-rights updates")
    table = Document.__table__
    stmt = (
        update(table)
        .where(table.c.id == bindparam("pk"), table.c.rights_version == bindparam("rv"))
        .values(rights_pending=False)
    )
    with db_engine.begin() as conn:
        conn.execute(stmt, [{"pk": r.id, "rv": r.rights_version} for r in rows])
    return len(rows)
