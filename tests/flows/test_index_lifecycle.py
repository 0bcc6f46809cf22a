"""The lifecycle flows against real engines (embedded, osmem-server), a real Prefect API and the
real Openverse sample rows."""

from __future__ import annotations

import contextvars
import http.server
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.concurrency.sync import concurrency
from sqlalchemy import insert, select, update

from blocks.search_engine import EmbeddedEngine
from flows import index_lifecycle as lifecycle
from flows.index_lifecycle import (
    create_filtered_index,
    delete_index,
    point_alias,
    promote,
    reindex,
    update_index,
)
from sluice import db
from sluice.models import DeletedImage, Image, MatureImage
from sluice.search import AliasAction
from sluice.settings import get_settings
from tests.conftest import osmem_engine
from tests.utils.proxy import FlakyProxy

pytestmark = pytest.mark.usefixtures("prefect_api")

SENSITIVE = ("running", "water", "bird")  # the shipped mock list


def _words(text: str | None) -> list[str]:
    """Letters and digits; everything else (punctuation, '_', '.') breaks words."""
    return re.findall(r"[^\W_]+", (text or "").lower())


def _contains(text: str | None, term: str) -> bool:
    words, needle = _words(text), _words(term)
    return any(words[i : i + len(needle)] == needle for i in range(len(words) - len(needle) + 1))


def _is_sensitive(doc: dict, terms=SENSITIVE) -> bool:
    texts = [doc.get("title"), doc.get("description"), *[t["name"] for t in doc.get("tags") or []]]
    return any(_contains(text, term) for text in texts for term in terms)


def _eligible_rows(url: str) -> list[Image]:
    with db.session(url) as session:
        deleted = set(session.exec(select(DeletedImage.identifier)).scalars())
        rows = session.exec(select(Image)).scalars().all()
        return [r for r in rows if not r.removed_from_source and r.identifier not in deleted]


def _mark(url: str, table, identifiers) -> None:
    now = datetime.now(UTC)
    values = [{"identifier": i, "created_on": now, **({"updated_on": now} if table is DeletedImage else {})}
              for i in identifiers]  # fmt: skip
    with db.get_engine(url).begin() as conn:
        conn.execute(insert(table), values)


def _final_progress(state) -> float:
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), type=ArtifactFilterType(any_=["progress"])
            )
        )
    return max(a.data for a in artifacts)


def test_reindex_loads_every_eligible_row(sample_db, flow_engine):
    rows = sorted(_eligible_rows(sample_db), key=lambda r: r.id)
    deleted, mature = [r.identifier for r in rows[:3]], [r.identifier for r in rows[3:5]]
    _mark(sample_db, DeletedImage, deleted)
    _mark(sample_db, MatureImage, mature)

    state = reindex(model="image", index_suffix="t1", return_state=True)

    assert state.is_completed(), state.message
    assert state.result() == "image-t1"
    assert flow_engine.count("image-t1") == len(rows) - 3
    assert flow_engine.get("image-t1", str(rows[0].id)) is None  # deleted
    assert flow_engine.get("image-t1", str(rows[3].id))["mature"] is True
    assert flow_engine.get("image-t1", str(rows[6].id))["mature"] is False
    removed = next(r for r in _all_images(sample_db) if r.removed_from_source)
    assert flow_engine.get("image-t1", str(removed.id)) is None
    assert _final_progress(state) == 100


def _all_images(url):
    with db.session(url) as session:
        return session.exec(select(Image)).scalars().all()


def test_reindex_refuses_an_existing_index_and_keeps_it(sample_db, flow_engine):
    assert reindex(model="image", index_suffix="same", return_state=True).is_completed()
    before = flow_engine.count("image-same")

    state = reindex(model="image", index_suffix="same", return_state=True)

    assert state.is_failed()
    assert "already exists" in state.message
    assert flow_engine.count("image-same") == before


def test_filtered_index_excludes_exactly_the_sensitive_rows(sample_db, flow_engine):
    reindex(model="image", index_suffix="f1")
    docs = [h.source for batch in flow_engine.scan("image-f1") for h in batch]
    expected = sum(not _is_sensitive(doc) for doc in docs)
    assert 0 < expected < len(docs)

    name = create_filtered_index(model="image", origin_index_suffix="f1")

    assert name == "image-f1-filtered"
    assert flow_engine.count(name) == expected
    kept = [h.source for batch in flow_engine.scan(name) for h in batch]
    assert not any(_is_sensitive(doc) for doc in kept)


def test_point_alias_moves_atomically_and_keeps_the_old_index(sample_db, flow_engine):
    reindex(model="audio", index_suffix="a")
    reindex(model="audio", index_suffix="b")
    point_alias(model="audio", index_suffix="a", alias="audio")

    point_alias(model="audio", index_suffix="b", alias="audio")

    assert flow_engine.get_aliases()["audio"] == ["audio-b"]
    assert flow_engine.index_exists("audio-a")


def test_delete_index_refuses_an_aliased_index(sample_db, flow_engine):
    reindex(model="audio", index_suffix="live")
    point_alias(model="audio", index_suffix="live", alias="audio")

    state = delete_index(model="audio", index_suffix="live", return_state=True)

    assert state.is_failed() and "serves alias audio" in state.message
    assert flow_engine.index_exists("audio-live")
    assert delete_index(model="audio", index_suffix="nope", return_state=True).is_failed()


def test_promote_builds_filters_moves_both_aliases_and_deletes_the_old(sample_db, flow_engine):
    first = promote(model="audio", index_suffix="one")
    assert first == {"audio": "audio-one", "audio-filtered": "audio-one-filtered"}

    second = promote(model="audio", index_suffix="two")

    aliases = flow_engine.get_aliases()
    assert aliases["audio"] == ["audio-two"] and aliases["audio-filtered"] == ["audio-two-filtered"]
    assert second["audio"] == "audio-two"
    assert not flow_engine.index_exists("audio-one") and not flow_engine.index_exists("audio-one-filtered")
    assert flow_engine.count("audio") == 100


def test_promote_gate_refuses_an_index_short_of_documents(sample_db, flow_engine, monkeypatch):
    # 50 rows appear in the table after the load: the new index is short of what it should hold.
    original, calls = lifecycle.count_rows, []

    def growing_count(engine, model, since=None):
        calls.append(model)
        return original(engine, model, since) + (50 if len(calls) > 1 else 0)

    monkeypatch.setattr(lifecycle, "count_rows", growing_count)
    state = promote(model="audio", index_suffix="short", return_state=True)

    assert state.is_failed() and "expected 150" in state.message
    assert not flow_engine.index_exists("audio-short")
    assert "audio" not in flow_engine.get_aliases()


def test_update_index_reindexes_rows_changed_since(sample_db, flow_engine):
    reindex(model="audio", index_suffix="u")
    point_alias(model="audio", index_suffix="u", alias="audio")
    since = datetime.now(UTC)
    with db.get_engine(sample_db).begin() as conn:
        conn.execute(update(Image.metadata.tables["audio"]).where(Image.metadata.tables["audio"].c.id == 1)
                     .values(title="Brand new title", updated_on=datetime.now(UTC)))  # fmt: skip

    assert update_index(model="audio", since_date=since) == "audio-u"

    assert flow_engine.get("audio-u", "1")["title"] == "Brand new title"


def test_filtered_index_reads_sensitive_terms_from_a_url(sample_db, flow_engine, sluice_env):
    class Terms(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"vocal\n\nMALE\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Terms)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sluice_env(SENSITIVE_TERMS=f"http://127.0.0.1:{server.server_port}/terms.txt")
        reindex(model="audio", index_suffix="s")
        docs = [h.source for batch in flow_engine.scan("audio-s") for h in batch]
        expected = sum(not _is_sensitive(d, ("vocal", "male")) for d in docs)
        assert expected < len(docs)

        assert flow_engine.count(create_filtered_index(model="audio", origin_index_suffix="s")) == expected
    finally:
        server.shutdown()


def test_unreadable_sensitive_terms_fail_the_run_and_leave_nothing(sample_db, flow_engine, sluice_env):
    reindex(model="audio", index_suffix="x")
    sluice_env(SENSITIVE_TERMS="/nonexistent/terms.txt")

    state = create_filtered_index(model="audio", origin_index_suffix="x", return_state=True)

    assert state.is_failed() and "SLUICE_SENSITIVE_TERMS" in state.message
    assert not flow_engine.index_exists("audio-x-filtered")


def test_engine_unreachable_mid_reindex_fails_and_leaves_no_partial_index(sample_db, osmem_url, sluice_env):
    target = urlparse(osmem_url)
    proxy = FlakyProxy(target.hostname, target.port)
    engine = osmem_engine(osmem_url)
    try:
        small_batches = {"READ_BATCH_SIZE": "200", "BULK_CHUNK_SIZE": "50", "BULK_RETRIES": "1"}
        sluice_env(ELASTICSEARCH_URL=proxy.url, ELASTICSEARCH_VENDOR_MEDIA_TYPES="false", **small_batches)
        engine.create_index("image-live", {"properties": {"title": {"type": "text"}}})
        engine.update_aliases([AliasAction("add", "image-live", "image")])
        proxy.cut_after_requests(25)  # part-way through the bulk load
        # The engine comes back a few seconds later: the flow must then remove what it built.
        comeback = threading.Thread(target=lambda: (proxy.cut_event.wait(60), _sleep(4), proxy.restore()))
        comeback.start()

        state = reindex(model="image", index_suffix="partial", return_state=True)

        assert state.is_failed()
        assert engine.get_aliases() == {"image": ["image-live"]}
        assert not engine.index_exists("image-partial")
        assert engine.index_exists("image-live")
    finally:
        proxy.close()
        engine.close()


def _sleep(seconds: float) -> None:
    threading.Event().wait(seconds)


def test_promote_waits_for_the_model_lock_and_fails_clearly_when_held(sample_db, flow_engine, sluice_env):
    sluice_env(LOCK_TIMEOUT="2")
    lifecycle.ensure_lock("image")
    # The test holds the image lock as a running lifecycle flow would.
    with concurrency(lifecycle.LOCK_PREFIX + "image", occupy=1, strict=True):
        blocked = promote(model="image", index_suffix="blocked", return_state=True)
        other_model = reindex(model="audio", index_suffix="free", return_state=True)

    assert blocked.is_failed() and "another lifecycle task for 'image'" in blocked.message
    assert flow_engine.list_indices("image") == []
    assert other_model.is_completed()
    assert promote(model="image", index_suffix="after", return_state=True).is_completed()


def test_concurrent_promotes_for_one_model_end_consistent(sample_db, flow_engine):
    results: dict[str, object] = {}

    def run(suffix: str) -> None:
        results[suffix] = promote(model="image", index_suffix=suffix, return_state=True)

    # Each thread carries the test's Prefect settings context.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, s)) for s in ("p1", "p2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    done = [s for s, state in results.items() if state.is_completed()]
    refused = [s for s, state in results.items() if not state.is_completed()]
    assert done, {s: st.message for s, st in results.items()}
    assert all("another lifecycle task" in results[s].message for s in refused)
    # Whatever the order, exactly one generation is live and nothing half-built is left behind.
    live = flow_engine.get_aliases()["image"][0].removeprefix("image-")
    assert flow_engine.get_aliases() == {"image": [f"image-{live}"], "image-filtered": [f"image-{live}-filtered"]}
    assert flow_engine.list_indices("image") == [f"image-{live}", f"image-{live}-filtered"]
    assert flow_engine.count("image") == 2374


def test_lock_is_released_after_a_failure(sample_db, flow_engine):
    assert delete_index(model="image", index_suffix=uuid.uuid4().hex, return_state=True).is_failed()

    assert reindex(model="image", index_suffix="after", return_state=True).is_completed()


def test_reindex_reads_from_postgresql(postgres_server, sluice_env):
    from sluice.sample import load_sample
    from tests.conftest import fresh_postgres_database

    url = fresh_postgres_database(postgres_server)
    sluice_env(DATABASE_URL=url)
    db.upgrade(url)
    load_sample(db.get_engine(url))
    engine = EmbeddedEngine(path=str(get_settings().search_path))

    promote(model="image", index_suffix="pg")

    assert engine.count("image") == 2374
    assert engine.get_aliases()["image-filtered"] == ["image-pg-filtered"]
    engine.close()


def test_callback_url_receives_the_outcome(sample_db, flow_engine):
    received: list[dict] = []

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/done"
    try:
        ok = reindex(model="audio", index_suffix="cb", callback_url=url, return_state=True)
        failed = delete_index(model="audio", index_suffix="missing", callback_url=url, return_state=True)
    finally:
        server.shutdown()

    assert [r["state"] for r in received] == ["COMPLETED", "FAILED"]
    assert received[0]["task_id"] == str(ok.state_details.flow_run_id)
    assert received[1]["task_id"] == str(failed.state_details.flow_run_id)
    assert "does not exist" in received[1]["message"]
