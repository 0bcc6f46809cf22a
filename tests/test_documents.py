"""The ingestion document store on SQLite and PostgreSQL: per-document validation, versions,
content kept apart, tenant separation, filtered paging."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from sluice import credentials, db, documents
from sluice.errors import InvalidInput, NotFound
from sluice.models import DocumentContent


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
def session(database_url):
    with db.session(database_url) as session:
        for tenant in ("acme", "globex"):
            credentials.create_tenant(session, tenant)
            credentials.create_index(session, tenant, "main", ["colour"])
        yield session


def test_batch_keeps_valid_documents_and_reports_each_bad_one(session):
    batch = [
        {"document_id": sha1("a"), "title": "A", "document_content": {"content_type": "text/plain",
                                                                     "from_": {"plain_text_string": "hello"}}},
        {"title": "no id: gets a uuid4", "authors": "Ada"},
        {"document_id": "not-a-sha1"},
        {"document_id": sha1("b"), "custom_metadata": {"shape": "round"}},
        {"document_id": sha1("c"), "document_content": {"content_type": "text/plain",
                                                        "from_": {"base64_string": "%%%"}}},
        {"document_id": sha1("d"), "document_content": {"content_type": "text/plain", "from_": {}}},
        {"document_id": sha1("e"), "is_indexable": "sometimes"},
        {"document_id": sha1("a"), "title": "twice"},
        "not an object",
    ]  # fmt: skip

    result = documents.ingest_batch(session, "acme", None, batch)

    assert [d.document_id for d in result.documents][0] == sha1("a")
    assert str(uuid.UUID(result.documents[1].document_id, version=4)) == result.documents[1].document_id
    assert all(d.status == "ingesting" and d.version == 1 for d in result.documents)
    assert [e["document_id"] for e in result.errors] == ["not-a-sha1", sha1("b"), sha1("c"), sha1("d"), sha1("e"),
                                                         sha1("a"), None]  # fmt: skip
    messages = " | ".join(e["error_message"] for e in result.errors)
    for fragment in ("document_id", "shape", "base64", "exactly one", "is_indexable", "twice", "document"):
        assert fragment in messages
    assert documents.get_document(session, "acme", None, result.documents[1].document_id).authors == ["Ada"]


def test_reingesting_makes_a_new_version_and_replaces_content(session):
    doc = {"document_id": sha1("x"), "document_content": {"content_type": "text/plain",
                                                          "from": {"base64_string": base64.b64encode(b"v1").decode()}}}  # fmt: skip
    first = documents.ingest_batch(session, "acme", "main", [doc]).documents[0]
    row = documents.get_document(session, "acme", None, sha1("x"))
    row.status, row.error_codes = "failed", ["corrupt_content"]
    session.add(row)
    session.commit()

    second = documents.ingest_batch(session, "acme", "main", [doc | {"document_content": {
        "content_type": "text/html", "from_": {"url": "https://example.org/page"}}}]).documents[0]  # fmt: skip

    assert (first.version, second.version) == (1, 2)
    row = documents.get_document(session, "acme", None, sha1("x"))
    assert (row.status, row.error_codes, row.content_url) == ("ingesting", None, "https://example.org/page")
    assert session.get(DocumentContent, row.id) is None  # the old inline bytes went with the old version
    assert row.request_created_at <= row.request_last_updated_at


def test_inline_content_is_stored_apart_and_limited(session):
    big = base64.b64encode(b"x" * 2048).decode()

    result = documents.ingest_batch(session, "acme", None, [
        {"document_id": sha1("small"), "document_content": {"content_type": "text/plain",
                                                            "from_": {"plain_text_string": "héllo"}}},
        {"document_id": sha1("big"), "document_content": {"content_type": "text/plain",
                                                          "from_": {"base64_string": big}}},
    ], max_content_bytes=1024)  # fmt: skip

    row = documents.get_document(session, "acme", None, sha1("small"))
    assert session.get(DocumentContent, row.id).data == "héllo".encode()
    assert result.errors[0]["document_id"] == sha1("big") and "limit" in result.errors[0]["error_message"]
    with pytest.raises(NotFound):
        documents.get_document(session, "acme", None, sha1("big"))


def test_tenants_never_see_each_others_documents(session):
    documents.ingest_batch(session, "acme", None, [{"document_id": sha1("shared"), "title": "acme's"}])
    documents.ingest_batch(session, "globex", None, [{"document_id": sha1("shared"), "title": "globex's"}])

    assert documents.get_document(session, "acme", None, sha1("shared")).title == "acme's"
    assert documents.get_document(session, "globex", None, sha1("shared")).title == "globex's"
    assert documents.list_documents(session, "globex", None)[0] == 1
    with pytest.raises(InvalidInput):
        documents.ingest_batch(session, "acme", "globex-only", [{"title": "x"}])


def test_list_filters_and_pages(session):
    job = str(uuid.uuid4())
    batch = [{"document_id": sha1(str(i)), "uri": f"https://x.org/{i}", "content_source_id": "cs1" if i % 2 else "cs2",
              **({"content_ingestion_job_id": job} if i < 3 else {})} for i in range(7)]  # fmt: skip
    before = datetime.now(UTC) - timedelta(seconds=1)
    documents.ingest_batch(session, "acme", None, batch)

    count, first = documents.list_documents(session, "acme", None, page=1, page_size=3)
    _, last = documents.list_documents(session, "acme", None, page=3, page_size=3)

    assert count == 7 and len(first) == 3 and len(last) == 1
    assert documents.list_documents(session, "acme", None, content_source_id="cs1")[0] == 3
    assert documents.list_documents(session, "acme", None, content_ingestion_job_id=job)[0] == 3
    assert documents.list_documents(session, "acme", None, document_id_in=[sha1("1"), sha1("9")])[0] == 1
    assert documents.list_documents(session, "acme", None, uri_in=["https://x.org/2"])[1][0].document_id == sha1("2")
    assert documents.list_documents(session, "acme", None, request_last_updated_after=before)[0] == 7
    assert documents.list_documents(session, "acme", None, request_last_updated_after=datetime.now(UTC))[0] == 0
    ids = [
        d.document_id
        for p in (1, 2, 3)
        for d in documents.list_documents(session, "acme", None, page=p, page_size=3)[1]
    ]
    assert sorted(ids) == sorted(sha1(str(i)) for i in range(7))


def test_batch_without_default_index_or_too_large_is_refused_whole(session):
    credentials.create_tenant(session, "empty")

    with pytest.raises(InvalidInput, match="default index"):
        documents.ingest_batch(session, "empty", None, [{"title": "x"}])
    with pytest.raises(InvalidInput, match="at most"):
        documents.ingest_batch(session, "acme", None, [{}] * (documents.MAX_BATCH_DOCUMENTS + 1))
    assert session.exec(select(DocumentContent)).all() == []
