"""The processing steps on SQLite and PostgreSQL with the embedded engine: claims, outcomes that
lose to newer versions and deletes, access-rights changes that race with indexing."""

from __future__ import annotations

import hashlib

import pytest
from sqlmodel import Session, select

from sluice import credentials, db, documents
from sluice.models import Document
from sluice.search import Query, Term
from sluice.settings import Settings
from tasks import documents as steps

INDEX = steps.engine_index("acme", "main")


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
def db_engine(database_url):
    with db.session(database_url) as session:
        credentials.create_tenant(session, "acme")
        credentials.create_index(session, "acme", "main", [])
    return db.get_engine(database_url)


def ingest(db_engine, *docs: dict) -> None:
    with Session(db_engine) as session:
        result = documents.ingest_batch(session, "acme", None, list(docs))
        assert not result.errors, result.errors


def text_doc(name: str, text: str, **extra) -> dict:
    content = {"content_type": "text/plain", "from_": {"plain_text_string": text}}
    return {"document_id": sha1(name), "document_content": content, "allow_access_rights": [{"name": "public"}]} | extra


def row(db_engine, name: str) -> Document:
    with Session(db_engine) as session:
        return session.exec(select(Document).where(Document.document_id == sha1(name))).one()


def run_pass(db_engine, engine, known: set[str] | None = None) -> steps.Report:
    work = steps.claim_documents(db_engine, 100)
    outcomes = steps.prepare_all(work, Settings())
    steps.write_outcomes(engine, outcomes, set() if known is None else known)
    return steps.record_outcomes(db_engine, outcomes)


def searchable(engine, text: str) -> list[str]:
    return [hit.id for hit in engine.search(INDEX, Query(text=text, limit=100)).hits]


def test_claim_moves_documents_in_flight_once(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"), text_doc("b", "beta", is_indexable=False))

    work = steps.claim_documents(db_engine, 10)

    assert sorted(w.document_id for w in work) == sorted([sha1("a"), sha1("b")])
    assert row(db_engine, "a").status == "indexing"
    assert row(db_engine, "b").status == "ingesting"  # not indexable: never "indexing"
    assert steps.claim_documents(db_engine, 10) == []  # claimed work is not handed out twice
    assert steps.release_claims(db_engine) == 2
    assert len(steps.claim_documents(db_engine, 10)) == 2


def test_a_pass_indexes_and_a_new_version_goes_through_indexing_update(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"))
    assert run_pass(db_engine, embedded_engine).counts == {"indexed": 1}
    assert searchable(embedded_engine, "alpha") == [sha1("a")]

    ingest(db_engine, text_doc("a", "omega"))
    steps.claim_documents(db_engine, 10)
    assert row(db_engine, "a").status == "indexing_update"
    steps.release_claims(db_engine)
    assert run_pass(db_engine, embedded_engine).counts == {"indexed_update": 1}
    assert searchable(embedded_engine, "omega") == [sha1("a")] and searchable(embedded_engine, "alpha") == []
    assert row(db_engine, "a").indexed_version == 2


def test_a_newer_version_sent_during_processing_wins(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"))
    work = steps.claim_documents(db_engine, 10)
    outcomes = steps.prepare_all(work, Settings())
    ingest(db_engine, text_doc("a", "omega"))  # version 2 arrives while version 1 is processed

    steps.write_outcomes(embedded_engine, outcomes, set())
    steps.record_outcomes(db_engine, outcomes)

    current = row(db_engine, "a")
    assert (current.version, current.status, current.indexed_version) == (2, "ingesting", 1)
    assert run_pass(db_engine, embedded_engine).counts == {"indexed_update": 1}
    assert searchable(embedded_engine, "omega") == [sha1("a")]


def test_a_delete_sent_during_processing_wins(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"))
    work = steps.claim_documents(db_engine, 10)
    outcomes = steps.prepare_all(work, Settings())
    with Session(db_engine) as session:
        documents.mark_for_deletion(session, "acme", None, [sha1("a")])

    steps.write_outcomes(embedded_engine, outcomes, set())
    steps.record_outcomes(db_engine, outcomes)
    assert row(db_engine, "a").status == "marked_for_deletion"
    assert steps.apply_deletions(db_engine, embedded_engine, 100) == 1

    gone = row(db_engine, "a")
    assert (gone.status, gone.deleted) == ("deleted", True)
    assert searchable(embedded_engine, "alpha") == []


def test_access_rights_changed_during_indexing_still_reach_the_index(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"))
    work = steps.claim_documents(db_engine, 10)
    outcomes = steps.prepare_all(work, Settings())  # carries the old rights: public
    with Session(db_engine) as session:
        documents.update_access_rights(session, "acme", None, [{"document_id": sha1("a"),
                                                                "allow_access_rights": [{"name": "staff"}]}])  # fmt: skip
    steps.write_outcomes(embedded_engine, outcomes, set())
    steps.record_outcomes(db_engine, outcomes)
    assert row(db_engine, "a").rights_pending is True

    assert steps.apply_access_rights(db_engine, embedded_engine, 100) == 1

    assert row(db_engine, "a").rights_pending is False
    staff = Query(filters=(Term("access_rights", ["staff"]),))
    assert [h.id for h in embedded_engine.search(INDEX, staff).hits] == [sha1("a")]
    assert embedded_engine.get(INDEX, sha1("a"))["access_rights"] == ["staff"]


def test_an_unreachable_engine_gives_the_work_back(db_engine, tmp_path):
    from blocks.elasticsearch import ElasticsearchEngine
    from sluice.errors import EngineUnavailable
    from tests.conftest import free_port

    ingest(db_engine, text_doc("a", "alpha"))
    dead = ElasticsearchEngine(url=f"http://127.0.0.1:{free_port()}", request_timeout=2, vendor_media_types=False)
    work = steps.claim_documents(db_engine, 10)
    outcomes = steps.prepare_all(work, Settings())

    with pytest.raises(EngineUnavailable):
        steps.write_outcomes(dead, outcomes, set())
    steps.release(db_engine, work)

    assert (row(db_engine, "a").status, row(db_engine, "a").claimed_at) == ("ingesting", None)
    assert len(steps.claim_documents(db_engine, 10)) == 1


def test_content_that_fails_a_check_is_marked_then_quarantined_and_leaves_the_index(db_engine, embedded_engine):
    ingest(db_engine, text_doc("a", "alpha"))
    run_pass(db_engine, embedded_engine)
    png = {"content_type": "application/pdf", "from_": {"base64_string": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}}
    ingest(db_engine, {"document_id": sha1("a"), "document_content": png})

    work = steps.claim_documents(db_engine, 10)
    outcomes = steps.prepare_all(work, Settings())
    steps.mark_for_quarantine(db_engine, outcomes)
    marked = row(db_engine, "a")
    assert (marked.status, marked.error_codes) == ("marked_for_quarantine", ["content_type_mismatch"])
    assert searchable(embedded_engine, "alpha") == [sha1("a")]  # the earlier version, until removed

    steps.write_outcomes(embedded_engine, outcomes, set())
    steps.record_outcomes(db_engine, outcomes)

    done = row(db_engine, "a")
    assert (done.status, done.error_codes, done.indexed_version) == ("quarantined", ["content_type_mismatch"], None)
    assert searchable(embedded_engine, "alpha") == []
