"""The document ingestion API (/v0/service/ingestion/documents…) end to end: real HTTP requests
through the app, the real process-documents flow on a real Prefect API, both search engines
(embedded and osmem-server), and a real local HTTP server for URL content (HTML, a real PDF, text,
a redirect chain, a 404, a slow page, garbage, a PNG declared as a PDF, an oversized body).

The stories (processing, versions, failures, access rights, deletes) run on both engines; listing,
bad input and credentials need no search engine and run once."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import app
from flows.ingest_documents import process_documents
from sluice import credentials, db, documents
from sluice.models import ApiKey
from sluice.settings import get_settings
from tasks.documents import claim_documents
from tests.conftest import free_port
from tests.tasks.fixtures.documents import make_pdf, read_fixture

PREFIX = "/v0/service/ingestion/documents"
BATCH, RIGHTS, DELETE = "/document-batches", "/access-rights-batches", "/delete-document-batches"
MAX_BYTES = 64 * 1024  # SLUICE_DOCUMENT_MAX_CONTENT_BYTES in the processing tests
FETCH_TIMEOUT = 1.5  # SLUICE_FETCH_TIMEOUT in the processing tests; /slow answers after SLOW seconds
SLOW = 5.0

# Each word below occurs in exactly one body, so a search for it names the one document it came from.
REPORT_PDF = make_pdf(
    ["Field notes: the quokka colony on the island grew this year.", "Second page: marsupials at dusk."],
    title="Quokka census",
)
ARTICLE_HTML = read_fixture("article.html")  # "Sulina" is a visible word; script/style/hidden text says "APPEAR"
NOTES_TEXT = b"Airship log: the zeppelin crossed the channel at dawn.\n"
BIG_TEXT = b"lorem ipsum dolor sit amet " * (2 * MAX_BYTES // 27 + 1)
GARBAGE = bytes(range(256)) * 8  # NULs and control bytes: binary, whatever it is declared as


def _png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
        + chunk(b"IEND", b"")
    )


PNG = _png()


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- a local web server for URL content --------------------------------------------------------


class Site(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    ROUTES = {
        "/article.html": (ARTICLE_HTML, "text/html; charset=utf-8"),
        "/report.pdf": (REPORT_PDF, "application/pdf"),
        "/notes.txt": (NOTES_TEXT, "text/plain; charset=utf-8"),
        "/garbage.txt": (GARBAGE, "text/plain"),
        "/image.png": (PNG, "image/png"),
        "/big.txt": (BIG_TEXT, "text/plain"),
    }

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requested: list[str] = []
        self.stop = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: Site

    def log_message(self, format, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.requested.append(self.path)
        route = urlsplit(self.path).path
        if route.startswith("/redirect/"):  # /redirect/3 -> /redirect/2 -> ... -> /notes.txt
            hops = int(route.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/redirect/{hops - 1}" if hops > 1 else "/notes.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/slow":
            self.server.stop.wait(SLOW)
            self._send(200, NOTES_TEXT, "text/plain")
        elif route in Site.ROUTES:
            self._send(200, *Site.ROUTES[route])
        else:
            self._send(404, b"no such page", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the fetcher hung up (a timeout, a size limit): expected
            pass


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    server = Site()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- helpers: documents, calls, processing ----------------------------------------------------------


def doc(
    document_id: str | None,
    *,
    text: str | None = None,
    data: bytes | None = None,
    url: str | None = None,
    content_type: str = "text/plain",
    rights: tuple[str, ...] | None = ("public",),
    **fields: Any,
) -> dict[str, Any]:
    """One document of a batch: inline text, inline bytes (base64), a URL, or no content."""
    body: dict[str, Any] = dict(fields)
    if document_id is not None:
        body["document_id"] = document_id
    if rights is not None:
        body["allow_access_rights"] = [{"name": name} for name in rights]
    source = (
        {"plain_text_string": text} if text is not None
        else {"base64_string": base64.b64encode(data).decode()} if data is not None
        else {"url": url} if url is not None
        else None
    )  # fmt: skip
    if source is not None:
        body["document_content"] = {"content_type": content_type, "from_": source}
    return body


@dataclass
class Api:
    """The ingestion API as one tenant's client sees it."""

    client: TestClient
    tenant: str
    key: str

    def call(self, method: str, path: str = "", *, params=None, headers=None, **kwargs) -> httpx.Response:
        return self.client.request(
            method, PREFIX + path, params={"tenant": self.tenant, **(params or {})},
            headers={"X-Auth": self.key, **(headers or {})}, **kwargs,
        )  # fmt: skip

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.call("POST", path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def ingest(self, *documents: dict[str, Any], index_id: str | None = None) -> dict[str, Any]:
        return self.post("/document-batches", {"documents": list(documents), "index_id": index_id})

    def set_rights(self, rights: dict[str, tuple[str, ...]]) -> dict[str, Any]:
        items = [{"document_id": i, "allow_access_rights": [{"name": n} for n in names]} for i, names in rights.items()]
        return self.post("/access-rights-batches", {"documents": items})

    def delete(self, *document_ids: str) -> dict[str, Any]:
        return self.post("/delete-document-batches", {"document_ids": list(document_ids)})

    def get(self, document_id: str, **params: Any) -> dict[str, Any]:
        response = self.call("GET", f"/{document_id}", params={"include_document_status": True, **params})
        assert response.status_code == 200, response.text
        return response.json()

    def status(self, document_id: str) -> str:
        return self.get(document_id)["status"]

    def content(self, document_id: str) -> httpx.Response:
        return self.call("GET", f"/{document_id}/content", follow_redirects=False)

    def list(self, **params: Any) -> dict[str, Any]:
        response = self.call("GET", "", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def search_page(self, q: str | None = None, rights: tuple[str, ...] = (), **params: Any) -> dict[str, Any]:
        params = {"access_rights": list(rights), **params} | ({"q": q} if q is not None else {})
        response = self.call("GET", "/search", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def search(self, q: str | None = None, rights: tuple[str, ...] = ()) -> set[str]:
        """The ids of every hit (one page of 100; the count must agree)."""
        page = self.search_page(q, rights, page_size=100)
        assert page["count"] == len(page["results"]), page
        return {hit["document_id"] for hit in page["results"]}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def process() -> int:
    """Run the process-documents flow until no work is left; how many documents it handled."""
    return process_documents(until_idle=True)


def new_tenant(name: str, index_ids: tuple[str, ...] = ("main",)) -> str:
    """A tenant with indexes (the first one default, custom metadata key "colour") and a key."""
    with db.session() as session:
        credentials.create_tenant(session, name)
        for index_id in index_ids:
            credentials.create_index(session, name, index_id, ["colour"])
        return credentials.create_key(session, name, ["ingestion-manager"])[1]


def key_with_roles(tenant: str, roles: list[str]) -> str:
    """A valid key of ``tenant`` holding ``roles``. ROLES has one role today, so create_key cannot
    make a key without it: the roles are rewritten the way a future role or a narrowed key would."""
    with db.session() as session:
        row, key = credentials.create_key(session, tenant, ["ingestion-manager"])
        row = session.get(ApiKey, row.key_id)
        row.roles = roles
        session.add(row)
        session.commit()
    return key


@contextmanager
def open_api(tenant: str = "acme", **client_options: Any) -> Iterator[Api]:
    db.upgrade(get_settings().database_url)
    key = new_tenant(tenant, ("main", "other"))
    with TestClient(app, **client_options) as client:
        yield Api(client, tenant, key)


@pytest.fixture
def api(flow_engine, sluice_env, prefect_api, site) -> Iterator[Api]:
    """A fresh tenant on a fresh store, processed on each engine in turn."""
    sluice_env(FETCH_ALLOW_PRIVATE="true", FETCH_TIMEOUT=str(FETCH_TIMEOUT), DOCUMENT_MAX_CONTENT_BYTES=str(MAX_BYTES))
    with open_api() as opened:
        yield opened


@pytest.fixture
def fresh(sluice_env, database_url) -> Iterator[Api]:
    """A fresh tenant on a fresh store (SQLite, then PostgreSQL), for what needs no processing."""
    sluice_env(DATABASE_URL=database_url)
    with open_api() as opened:
        yield opened


# --- 1. the whole story -----------------------------------------------------------------------------


def test_batch_is_stored_processed_searchable_and_downloadable(api, site):
    ids = {name: sha1(f"story-{name}") for name in ("text", "pdf64", "html", "pdf", "redirect", "meta", "hidden")}
    inline_pdf = make_pdf(["A narwhal surfaced near the fjord."], title="Narwhal memo")
    batch = [
        doc(ids["text"], text="The walrus sleeps on the ice floe.", title="Walrus note", authors="Ada",
            custom_metadata={"colour": "grey"}, uri="https://example.com/walrus", content_source_id="wiki"),
        doc(ids["pdf64"], data=inline_pdf, content_type="application/pdf"),
        doc(ids["html"], url=site.url("/article.html"), content_type="text/html"),
        doc(ids["pdf"], url=site.url("/report.pdf"), content_type="application/pdf"),
        doc(ids["redirect"], url=site.url("/redirect/3"), content_type="application/octet-stream"),  # the server's type
        doc(ids["meta"], title="Okapi sighting"),
        doc(ids["hidden"], text="An ibex on the ridge.", title="Ibex sighting", is_indexable=False),
        doc(None, text="The yak grazes on the plateau.", title="Yak note"),
        doc("not-a-sha1", text="bad id"),
        doc(sha1("story-bad-metadata"), text="x", custom_metadata={"shape": "round"}),
        doc(ids["text"], text="the same id again"),
    ]  # fmt: skip

    response = api.ingest(*batch)

    accepted = response["documents"]
    generated = accepted[-1]["document_id"]
    assert uuid.UUID(generated).version == 4 and str(uuid.UUID(generated)) == generated
    ids["yak"] = generated
    assert [d["document_id"] for d in accepted] == list(ids.values())
    assert {(d["status"], d["version"]) for d in accepted} == {("ingesting", 1)}
    assert len({d["content_ingestion_job_id"] for d in accepted}) == 1  # one job for the batch
    assert [e["document_id"] for e in response["errors"]] == ["not-a-sha1", sha1("story-bad-metadata"), ids["text"]]
    assert "shape" in response["errors"][1]["error_message"]
    assert "twice" in response["errors"][2]["error_message"]
    assert {api.status(i) for i in ids.values()} == {"ingesting"}
    assert api.list()["count"] == len(ids)  # the bad documents stored nothing

    assert process() == len(ids)

    assert {name: api.status(i) for name, i in ids.items()} == {
        name: "ingested" if name == "hidden" else "indexed" for name in ids
    }
    # Text extracted from the real PDF, HTML and redirected text; titles and inline bodies.
    searches = {"walrus": "text", "narwhal": "pdf64", "sulina": "html", "quokka": "pdf", "marsupials": "pdf",
                "zeppelin": "redirect", "okapi": "meta", "yak": "yak", "ibex": None}  # fmt: skip
    for word, name in searches.items():
        assert api.search(word) == ({ids[name]} if name else set()), word
    assert api.search("appear") == set()  # the HTML's script, style and hidden text are not indexed
    hits = {h["document_id"]: h for h in api.search_page("sulina quokka narwhal")["results"]}
    assert hits[ids["html"]]["title"] == "Rivers of Europe & their Deltas"  # titles from the content
    assert hits[ids["pdf"]]["title"] == "Quokka census"
    assert {h["version"] for h in hits.values()} == {1}
    # Paging through every indexed document sees each exactly once.
    indexed = {i for name, i in ids.items() if name != "hidden"}
    seen = [h["document_id"] for p in (1, 2, 3) for h in api.search_page(page=p, page_size=3)["results"]]
    assert sorted(seen) == sorted(indexed)

    stored = api.get(ids["text"])
    assert stored | {"request_created_at": None, "request_last_updated_at": None} == {
        "tenant": "acme", "index_id": "main", "document_id": ids["text"], "version": 1, "is_indexable": True,
        "deleted": False, "title": "Walrus note", "uri": "https://example.com/walrus", "authors": ["Ada"],
        "custom_metadata": {"colour": "grey"}, "content_source_id": "wiki",
        "allow_access_rights": [{"name": "public", "type": None, "content_source_id": None}],
        "content_ingestion_job_id": accepted[0]["content_ingestion_job_id"],
        "document_content": {"content_type": "text/plain", "from_": {}, "download_url": stored["document_content"]["download_url"]},
        "status": "indexed", "request_created_at": None, "request_last_updated_at": None,
    }  # fmt: skip
    assert "status" not in api.call("GET", f"/{ids['text']}").json()  # only with include_document_status

    text = api.content(ids["text"])
    assert text.status_code == 200
    assert text.content == b"The walrus sleeps on the ice floe."
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["content-disposition"] == f'attachment; filename="{ids["text"]}.txt"'
    pdf = api.content(ids["pdf64"])
    assert (pdf.status_code, pdf.content, pdf.headers["content-type"]) == (200, inline_pdf, "application/pdf")
    assert pdf.headers["content-disposition"] == f'attachment; filename="{ids["pdf64"]}.pdf"'
    for name, path in (("html", "/article.html"), ("pdf", "/report.pdf"), ("redirect", "/redirect/3")):
        redirect = api.content(ids[name])
        assert (redirect.status_code, redirect.headers["location"]) == (307, site.url(path))
    assert api.content(ids["meta"]).status_code == 404
    assert "document_content" not in api.get(ids["meta"])
    assert api.content(ids["hidden"]).content == b"An ibex on the ridge."  # stored even if not indexed

    # download_url, as given, serves the same thing (it names the tenant and the index).
    for name in ("text", "pdf64", "html"):
        url = api.get(ids[name])["document_content"]["download_url"]
        assert "tenant=acme" in url and "index_id=main" in url
        by_url = api.client.get(url, headers={"X-Auth": api.key}, follow_redirects=False)
        direct = api.content(ids[name])
        assert (by_url.status_code, by_url.content, by_url.headers.get("location")) == (
            direct.status_code, direct.content, direct.headers.get("location"),
        )  # fmt: skip


# --- 2. versions --------------------------------------------------------------------------------------


def test_reingesting_makes_a_new_version_that_replaces_the_old_in_search(api):
    first, second = sha1("versioned"), sha1("newcomer")
    api.ingest(doc(first, text="An albatross glides over the waves.", title="Seabird one"))
    process()
    assert api.get(first)["version"] == 1 and api.search("albatross") == {first}
    stored_v1 = api.get(first)

    response = api.ingest(
        doc(first, text="A pelican dives for fish.", title="Seabird two"), doc(second, text="A gannet.")
    )

    assert [(d["document_id"], d["version"], d["status"]) for d in response["documents"]] == [
        (first, 2, "ingesting"), (second, 1, "ingesting"),
    ]  # fmt: skip
    stored_v2 = api.get(first)
    assert stored_v2["request_created_at"] == stored_v1["request_created_at"]
    assert _when(stored_v2["request_last_updated_at"]) > _when(stored_v1["request_last_updated_at"])
    assert api.search("albatross") == {first}  # the indexed version serves until the new one is in

    # Claimed by a processor: the transient states (the flow releases such claims when it starts).
    claimed = claim_documents(db.get_engine(get_settings().database_url), 10)
    assert {w.document_id for w in claimed} == {first, second}
    assert (api.status(first), api.status(second)) == ("indexing_update", "indexing")

    process()

    assert (api.status(first), api.status(second)) == ("indexed_update", "indexed")
    assert api.search("pelican") == {first} and api.search("albatross") == set()
    assert api.search_page("pelican")["results"][0] | {"score": 0} == {
        "document_id": first, "version": 2, "score": 0, "title": "Seabird two", "uri": None, "content_source_id": None,
    }  # fmt: skip
    assert api.content(first).content == b"A pelican dives for fish."

    # A version that must not be indexed takes the document out of search.
    assert api.ingest(doc(first, text="A puffin.", is_indexable=False))["documents"][0]["version"] == 3
    process()
    assert api.get(first)["version"] == 3 and api.status(first) == "ingested"
    assert api.search("pelican") == set() and api.search("puffin") == set()
    assert api.search() == {second}


# --- 3. failures ----------------------------------------------------------------------------------------


def test_fetch_and_content_failures_fail_or_quarantine_each_document(api, site):
    closed = f"http://127.0.0.1:{free_port()}/gone.txt"
    cases = {  # name: (document, status, error code)
        "closed port": (doc(sha1("f1"), url=closed), "failed", "url_unreachable"),
        "404": (doc(sha1("f2"), url=site.url("/nowhere.txt")), "failed", "url_http_error"),
        "slow": (doc(sha1("f3"), url=site.url("/slow")), "failed", "url_timeout"),
        "png as pdf": (doc(sha1("f4"), url=site.url("/image.png"), content_type="application/pdf"), "quarantined",
                       "content_type_mismatch"),
        "inline png as pdf": (doc(sha1("f5"), data=PNG, content_type="application/pdf"), "quarantined",
                              "content_type_mismatch"),
        "oversize": (doc(sha1("f6"), url=site.url("/big.txt")), "quarantined", "content_too_large"),
        "garbage as text": (doc(sha1("f7"), url=site.url("/garbage.txt")), "quarantined", "undecodable_content"),
        "empty": (doc(sha1("f8"), text="   "), "quarantined", "empty_content"),
    }  # fmt: skip
    api.ingest(*(document for document, _, _ in cases.values()))

    process()

    outcomes = {name: api.get(document["document_id"]) for name, (document, _, _) in cases.items()}
    assert {name: (o["status"], o["error_codes"]) for name, o in outcomes.items()} == {
        name: (status, [code]) for name, (_, status, code) in cases.items()
    }
    assert all(o["error_message"] for o in outcomes.values())
    assert api.search() == set()


def test_private_addresses_are_refused_unless_allowed(api, site, sluice_env):
    document_id = sha1("private")
    sluice_env(FETCH_ALLOW_PRIVATE="false")
    api.ingest(doc(document_id, url=site.url("/notes.txt?attempt=refused")))

    process()

    stored = api.get(document_id)
    assert (stored["status"], stored["error_codes"]) == ("failed", ["url_refused"])
    assert "/notes.txt?attempt=refused" not in site.requested  # refused before connecting
    assert api.search("zeppelin") == set()

    sluice_env(FETCH_ALLOW_PRIVATE="true")
    api.ingest(doc(document_id, url=site.url("/notes.txt?attempt=allowed")))
    process()
    assert api.status(document_id) == "indexed" and "error_codes" not in api.get(document_id)
    assert api.search("zeppelin") == {document_id}


def test_a_failed_new_version_keeps_the_old_searchable_and_a_quarantined_one_removes_it(api, site):
    kept, dropped = sha1("kept"), sha1("dropped")
    api.ingest(doc(kept, text="A heron stands in the reeds."), doc(dropped, text="A bittern hides in the reeds."))
    process()
    assert api.search("reeds") == {kept, dropped}

    api.ingest(
        doc(kept, url=site.url("/missing.txt")),
        doc(dropped, url=site.url("/image.png"), content_type="application/pdf"),
    )
    process()

    failed, quarantined = api.get(kept), api.get(dropped)
    assert (failed["version"], failed["status"], failed["error_codes"]) == (2, "failed", ["url_http_error"])
    assert (quarantined["version"], quarantined["status"]) == (2, "quarantined")
    assert api.search("reeds") == {kept}
    assert api.search_page("heron")["results"][0]["version"] == 1  # the old version, still served
    assert api.search("bittern") == set()


def test_search_text_is_words_never_query_syntax(api):
    document_id = sha1("syntax")
    api.ingest(doc(document_id, text="The kingfisher (Alcedo) dives: NEAR the bank, AND OR NOT."))
    process()

    for q in ['"kingfisher', "kingfisher AND (", "NEAR(kingfisher bank)", "kingfisher*", "-kingfisher",
              "kingfisher\\", "kingfisher\x00", "kingfisher 💥", "alcedo)"]:  # fmt: skip
        assert api.search(q) == {document_id}, q
    for q in ["*", "-", "()", '"', "AND", "💥", "text:kingfisher", "title:(x OR y)"]:
        response = api.call("GET", "/search", params={"q": q})
        assert response.status_code == 200, (q, response.text)
    far = api.call("GET", "/search", params={"page": 100_000, "page_size": 1000})
    assert far.status_code in (200, 400), far.text
    assert far.status_code == 400 or far.json()["results"] == []


# --- 4. access rights ------------------------------------------------------------------------------------


def test_search_honours_access_rights_and_rights_changes_apply_without_reprocessing(api):
    staff, public, nobody, later = sha1("staff"), sha1("public"), sha1("nobody"), sha1("later")
    api.ingest(
        doc(staff, text="heron staff memo", rights=("staff",)),
        doc(public, text="heron public notice", rights=("public",)),
        doc(nobody, text="heron draft", rights=None),
        doc(later, text="heron queued", rights=("staff",)),
    )
    # Rights changed before the document was ever processed are the ones it is indexed with.
    assert api.set_rights({later: ("public",)})["documents"][0]["version"] == 1
    process()

    assert api.search("heron", ("staff",)) == {staff, public, later}
    assert api.search("heron", ("staff", "finance")) == {staff, public, later}
    assert api.search("heron") == {public, later}
    assert api.search("heron", ("finance",)) == {public, later}
    assert api.search("heron", ("",)) == {public, later}
    before = {i: (api.get(i), api.content(i).content) for i in (staff, public, nobody)}

    response = api.set_rights({staff: ("public",), public: (), nobody: ("staff",), sha1("unknown"): ("staff",)})

    assert [(d["document_id"], d["version"]) for d in response["documents"]] == [(staff, 1), (public, 1), (nobody, 1)]
    assert [e["document_id"] for e in response["errors"]] == [sha1("unknown")]
    assert "no document" in response["errors"][0]["error_message"]
    process()
    assert api.search("heron") == {staff, later}
    assert api.search("heron", ("staff",)) == {staff, nobody, later}
    for document_id, (old, old_content) in before.items():
        new = api.get(document_id)
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        assert changed == {"allow_access_rights", "request_last_updated_at"}, document_id
        assert (new["version"], new["status"], api.content(document_id).content) == (1, "indexed", old_content)
    assert api.get(nobody)["allow_access_rights"] == [{"name": "staff", "type": None, "content_source_id": None}]
    assert api.search_page("heron", ("staff",))["results"][0]["version"] == 1


# --- 5. deletes -----------------------------------------------------------------------------------------


def test_delete_removes_from_search_reads_deleted_and_reingest_brings_it_back(api, site):
    gone, linked, stays = sha1("gone"), sha1("gone-linked"), sha1("stays")
    api.ingest(
        doc(gone, text="An osprey over the lake."),
        doc(linked, url=site.url("/notes.txt")),
        doc(stays, text="An osprey nest."),
    )
    process()
    assert api.search("osprey") == {gone, stays} and api.search("zeppelin") == {linked}

    response = api.delete(gone, sha1("never-stored"), linked)

    assert [(d["document_id"], d["status"]) for d in response["documents"]] == [
        (gone, "marked_for_deletion"), (linked, "marked_for_deletion"),
    ]  # fmt: skip
    assert [e["document_id"] for e in response["errors"]] == [sha1("never-stored")]
    assert (api.status(gone), api.get(gone)["deleted"]) == ("marked_for_deletion", False)
    rights = api.set_rights({gone: ("staff",)})
    assert rights["documents"] == [] and "deleted" in rights["errors"][0]["error_message"]

    process()

    deleted = api.get(gone)
    assert (deleted["status"], deleted["deleted"], deleted["version"]) == ("deleted", True, 1)
    assert (api.status(linked), api.get(linked)["deleted"]) == ("deleted", True)
    assert api.search("osprey") == {stays} and api.search("zeppelin") == set()
    assert api.content(gone).status_code == 404
    assert api.content(linked).status_code == 404  # no redirect to a deleted document's URL either
    assert api.list(document_id_in=gone)["results"][0]["deleted"] is True

    again = api.delete(gone)
    assert [(d["document_id"], d["status"]) for d in again["documents"]] == [(gone, "deleted")]
    assert again["errors"] == []
    process()
    assert api.get(gone) == deleted

    back = api.ingest(doc(gone, text="The osprey returned."))["documents"][0]
    assert (back["version"], back["status"]) == (2, "ingesting")
    assert api.get(gone)["deleted"] is False
    process()
    assert (api.status(gone), api.get(gone)["deleted"]) == ("indexed", False)
    assert api.search("returned") == {gone} and api.search("osprey") == {gone, stays}
    assert api.content(gone).content == b"The osprey returned."


# --- 6. listing ----------------------------------------------------------------------------------------


def _ids(page: dict[str, Any]) -> list[str]:
    return [d["document_id"] for d in page["results"]]


def test_listing_filters(fresh):
    first = [sha1(f"first-{n}") for n in range(5)]
    second = [sha1(f"second-{n}") for n in range(3)]
    batch1 = fresh.ingest(*(doc(i, text="x", uri=f"https://example.com/{n}", content_source_id="wiki" if n % 2 else "crm")
                            for n, i in enumerate(first)))  # fmt: skip
    batch2 = fresh.ingest(
        doc(second[0], text="x", content_ingestion_job_id="job-7", content_source_id="wiki"),
        *(doc(i, text="x") for i in second[1:]),
    )
    fresh.ingest(doc(sha1("elsewhere"), text="x", content_source_id="wiki"), index_id="other")
    job1 = batch1["documents"][0]["content_ingestion_job_id"]
    job2 = batch2["documents"][1]["content_ingestion_job_id"]

    assert _ids(fresh.list()) == first + second  # oldest request first; only the default index
    assert _ids(fresh.list(index_id="other")) == [sha1("elsewhere")]
    assert _ids(fresh.list(content_source_id="wiki")) == [first[1], first[3], second[0]]
    assert _ids(fresh.list(content_ingestion_job_id=job1)) == first
    assert _ids(fresh.list(content_ingestion_job_id=job2)) == second[1:]
    assert _ids(fresh.list(content_ingestion_job_id="job-7")) == [second[0]]
    assert _ids(fresh.list(content_ingestion_job_id=str(uuid.uuid4()))) == []
    assert _ids(fresh.list(document_id_in=[second[2], first[0], sha1("unknown")])) == [first[0], second[2]]
    assert _ids(fresh.list(uri_in=["https://example.com/4", "https://example.com/0"])) == [first[0], first[4]]
    assert _ids(fresh.list(uri_in=["https://example.com/4", "https://example.com/1"], content_source_id="wiki")) == [
        first[1]
    ]
    page = fresh.list(document_id_in=[first[0]], include_document_status=True)
    assert page["count"] == 1 and page["results"][0]["status"] == "ingesting"
    assert "status" not in fresh.list(document_id_in=[first[0]])["results"][0]

    # request_last_updated_after is strict, and means the same instant in any offset.
    t1 = datetime.fromisoformat(fresh.get(first[0])["request_last_updated_at"])
    t2 = datetime.fromisoformat(fresh.get(second[0])["request_last_updated_at"])
    assert t1 < t2
    assert _ids(fresh.list(request_last_updated_after=t1.isoformat())) == second
    assert _ids(fresh.list(request_last_updated_after=(t1 - timedelta(microseconds=1)).isoformat())) == first + second
    plus5 = t1.astimezone(timezone(timedelta(hours=5))).isoformat()
    minus7 = t1.astimezone(timezone(timedelta(hours=-7))).isoformat()
    assert (
        _ids(fresh.list(request_last_updated_after=plus5))
        == _ids(fresh.list(request_last_updated_after=minus7))
        == second
    )
    assert _ids(fresh.list(request_last_updated_after=t2.isoformat())) == []
    fresh.set_rights({first[2]: ("staff",)})  # a rights change is an update too
    assert _ids(fresh.list(request_last_updated_after=t2.isoformat())) == [first[2]]
    fresh.delete(first[3])  # and so is a delete
    assert _ids(fresh.list(request_last_updated_after=t2.isoformat())) == [first[2], first[3]]


@pytest.mark.parametrize("page_size", [1, 3, 4, 8, 9, 1000])
def test_listing_pages_cover_every_document_once_with_consistent_links(fresh, page_size):
    expected = [sha1(f"paged-{n}") for n in range(9)]
    fresh.ingest(*(doc(i, text="x") for i in expected[:4]))
    fresh.ingest(*(doc(i, text="x") for i in expected[4:]))

    seen, pages, ref = [], 0, {"page": 1, "page_size": page_size}
    while ref is not None:
        page = fresh.list(**ref)
        pages += 1
        assert (page["count"], page["page"], page["page_size"]) == (9, ref["page"], page_size)
        assert page.get("previous") == ({"page": ref["page"] - 1, "page_size": page_size} if ref["page"] > 1 else None)
        assert len(page["results"]) == min(page_size, 9 - len(seen))
        seen += _ids(page)
        ref = page.get("next")
        if ref is not None:
            assert ref == {"page": page["page"] + 1, "page_size": page_size}
    assert seen == expected
    assert pages == -(-9 // page_size)
    beyond = fresh.list(page=pages + 1, page_size=page_size)
    assert beyond["results"] == [] and beyond["count"] == 9 and "next" not in beyond
    assert beyond["previous"] == {"page": pages, "page_size": page_size}


# --- 7 and 8: bad input and credentials, against one stored document --------------------------------


@dataclass
class World:
    api: Api  # answers 500s instead of raising them, so a test can see one
    stored: str  # a stored document each bad request aims at
    snapshot: dict[str, Any]
    count: int
    other_tenant_key: str
    no_role_key: str
    revoked_key: str

    def assert_untouched(self) -> None:
        assert self.api.get(self.stored) == self.snapshot
        assert self.api.list()["count"] == self.count
        assert self.api.content(self.stored).content == b"A kingfisher on the branch."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLUICE_DATA_DIR", str(tmp_path_factory.mktemp("ingestion-world") / "data"))
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        with open_api(raise_server_exceptions=False) as acme:
            other_tenant_key = new_tenant("globex")
            with db.session() as session:
                row, revoked_key = credentials.create_key(session, "acme", ["ingestion-manager"])
                credentials.revoke_key(session, row.key_id)
            stored = sha1("kingfisher")
            acme.ingest(doc(stored, text="A kingfisher on the branch.", title="Kingfisher", rights=("staff",),
                            custom_metadata={"colour": "blue"}, uri="https://example.com/kingfisher"))  # fmt: skip
            acme.ingest(doc(sha1("second"), text="A wren."))
            yield World(
                api=acme, stored=stored, snapshot=acme.get(stored), count=acme.list()["count"],
                other_tenant_key=other_tenant_key, no_role_key=key_with_roles("acme", ["viewer"]),
                revoked_key=revoked_key,
            )  # fmt: skip
    get_settings.cache_clear()
    db.get_engine.cache_clear()


@pytest.fixture
def acme(world) -> Api:
    # Tests that set their own SLUICE_* environment clear the settings cache when they end.
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    return world.api


def _bad_doc(name: str, fragment: str, make: Callable[[str], Any], claimed=lambda s: s, **marks: Any):
    """A document made from the stored id, invalid in one way; the error names ``claimed(stored id)``
    and its message holds ``fragment``."""
    return pytest.param(make, claimed, fragment, id=name, **marks)


def _sourced(document_id: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"document_id": document_id, "document_content": {"content_type": "text/plain", "from_": source}}


BAD_DOCUMENTS = [
    _bad_doc("is_indexable x", "is_indexable", lambda s: {"document_id": s, "is_indexable": "x"}),
    _bad_doc("authors 5", "authors", lambda s: {"document_id": s, "authors": 5}),
    _bad_doc("unknown metadata key", "shape", lambda s: {"document_id": s, "custom_metadata": {"colour": "red", "shape": "round"}}),
    _bad_doc("metadata not an object", "custom_metadata", lambda s: {"document_id": s, "custom_metadata": "blue"}),
    _bad_doc("unknown field", "colour", lambda s: doc(s, text="x", colour="red")),
    _bad_doc("bad date", "created_at", lambda s: doc(s, text="x", created_at="yesterday")),
    _bad_doc("title too long", "title", lambda s: doc(s, text="x", title="t" * 10_001)),
    _bad_doc("empty right", "allow_access_rights", lambda s: doc(s, text="x", rights=("",))),
    _bad_doc("rights not a list", "allow_access_rights", lambda s: {"document_id": s, "allow_access_rights": "public"}),
    _bad_doc("not base64", "base64", lambda s: _sourced(s, {"base64_string": "%%%not base64"})),
    _bad_doc("content_type with a newline", "content_type", lambda s: doc(s, text="x", content_type="text/plain\r\nX-Injected: yes")),
    _bad_doc("content_type without a slash", "content_type", lambda s: doc(s, text="x", content_type="plain")),
    _bad_doc("two content sources", "exactly one", lambda s: _sourced(s, {"plain_text_string": "x", "url": "https://example.com/"})),
    _bad_doc("no content source", "exactly one", lambda s: _sourced(s, {})),
    _bad_doc("ftp url", "url", lambda s: doc(s, url="ftp://example.com/file.txt")),
    _bad_doc("not a url", "url", lambda s: doc(s, url="not a url")),
    _bad_doc("uppercase sha1", "document_id", lambda s: doc(s.upper(), text="x"), lambda s: s.upper()),
    _bad_doc("41 hex digits", "document_id", lambda s: doc(s + "0", text="x"), lambda s: s + "0"),
    _bad_doc("empty id", "document_id", lambda s: doc("", text="x"), lambda s: ""),
    _bad_doc("path id", "document_id", lambda s: doc("../" + s, text="x"), lambda s: "../" + s),
    _bad_doc("not an object", "document", lambda s: "not an object", lambda s: None),
    _bad_doc("null document", "document", lambda s: None, lambda s: None),
    _bad_doc("numeric id", "document_id", lambda s: doc(5, text="x"), lambda s: None),
    _bad_doc("list id", "document_id", lambda s: doc([s], text="x"), lambda s: None),
]  # fmt: skip


@pytest.mark.parametrize(("make", "claimed", "fragment"), BAD_DOCUMENTS)
def test_a_bad_document_is_a_per_document_error_and_changes_nothing(acme, world, make, claimed, fragment):
    response = acme.call("POST", BATCH, json={"documents": [make(world.stored)]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["documents"] == [] and len(body["errors"]) == 1, body
    assert body["errors"][0]["document_id"] == claimed(world.stored)
    assert fragment in body["errors"][0]["error_message"]
    world.assert_untouched()


def _many(n: int) -> list[dict[str, Any]]:
    return [doc(sha1(f"many-{i}"), text="x") for i in range(n)]


def _raw(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": content_type}}


def _bad(method: str, path: str, make: Callable[[str], dict[str, Any]], status: int, name: str):
    """A request (its keyword arguments made from the stored id) and the status it must get."""
    return pytest.param(method, path, make, status, id=f"{method} {path or '/'} {name}")


BAD_REQUESTS = [
    _bad("POST", BATCH, lambda s: {"json": {"documents": "not a list"}}, 422, "documents a string"),
    _bad("POST", BATCH, lambda s: {"json": {"documents": {"document_id": s}}}, 422, "documents an object"),
    _bad("POST", BATCH, lambda s: {"json": {}}, 422, "no documents"),
    _bad("POST", BATCH, lambda s: {"json": [doc(s, text="x")]}, 422, "body a list"),
    _bad("POST", BATCH, lambda s: {"json": {"documents": _many(1001)}}, 422, "1001 documents"),
    _bad("POST", BATCH, lambda s: {"json": {"documents": [doc(s, text="x")], "index_id": "nope"}}, 400, "unknown index"),
    _bad("POST", BATCH, lambda s: {"json": {"documents": [doc(s, text="x")], "index_id": "x" * 65}}, 422, "long index"),
    _bad("POST", BATCH, lambda s: {"json": {"documents": [doc(s, text="x")], "index_id": 7}}, 422, "numeric index"),
    _bad("POST", BATCH, lambda s: _raw(b'{"documents": [{"document_id": "' + s.encode() + b'", '), 422, "cut JSON"),
    _bad("POST", BATCH, lambda s: _raw(b'{"documents": [{"title": "\xff\xfe\xc3("}]}'), 400, "not UTF-8"),
    _bad("POST", BATCH, lambda s: _raw(b"documents=" + s.encode(), "application/x-www-form-urlencoded"), 422, "form"),
    _bad("POST", RIGHTS, lambda s: {"json": {"documents": "x"}}, 422, "documents a string"),
    _bad("POST", RIGHTS, lambda s: {"json": {"documents": [{"document_id": s, "allow_access_rights": []}] * 1001}}, 422, "1001 documents"),
    _bad("POST", RIGHTS, lambda s: {"json": {"documents": [{"document_id": s, "allow_access_rights": []}], "index_id": "nope"}}, 400, "unknown index"),
    _bad("POST", RIGHTS, lambda s: _raw(b"{"), 422, "cut JSON"),
    _bad("POST", DELETE, lambda s: {"json": {"document_ids": s}}, 422, "ids a string"),
    _bad("POST", DELETE, lambda s: {"json": {"document_ids": [s] * 1001}}, 422, "1001 ids"),
    _bad("POST", DELETE, lambda s: {"json": {"document_ids": [s], "index_id": "nope"}}, 400, "unknown index"),
    _bad("POST", DELETE, lambda s: {"json": {}}, 422, "no ids"),
    _bad("GET", "", lambda s: {"params": {"page": 0}}, 422, "page 0"),
    _bad("GET", "", lambda s: {"params": {"page": -1}}, 422, "page -1"),
    _bad("GET", "", lambda s: {"params": {"page": "two"}}, 422, "page two"),
    _bad("GET", "", lambda s: {"params": {"page_size": 5000}}, 422, "page_size 5000"),
    _bad("GET", "", lambda s: {"params": {"page_size": 0}}, 422, "page_size 0"),
    _bad("GET", "", lambda s: {"params": {"request_last_updated_after": "last tuesday"}}, 422, "bad date"),
    _bad("GET", "", lambda s: {"params": {"include_document_status": "maybe"}}, 422, "status maybe"),
    _bad("GET", "", lambda s: {"params": {"document_id_in": [s] * 1001}}, 422, "1001 ids"),
    _bad("GET", "", lambda s: {"params": {"index_id": "nope"}}, 400, "unknown index"),
    _bad("GET", "", lambda s: {"params": {"tenant": ""}}, 422, "empty tenant"),
    _bad("GET", "/search", lambda s: {"params": {"page": 0}}, 422, "page 0"),
    _bad("GET", "/search", lambda s: {"params": {"page_size": 5000}}, 422, "page_size 5000"),
    _bad("GET", "/search", lambda s: {"params": {"q": "k" * 1001}}, 422, "long q"),
    _bad("GET", "/search", lambda s: {"params": {"access_rights": ["staff"] * 101}}, 422, "101 rights"),
    _bad("GET", "/search", lambda s: {"params": {"index_id": "nope"}}, 400, "unknown index"),
    _bad("GET", "/{stored}", lambda s: {"params": {"index_id": "nope"}}, 400, "unknown index"),
    _bad("GET", "/{stored}", lambda s: {"params": {"index_id": "other"}}, 404, "another index"),
    _bad("GET", "/{stored}", lambda s: {"params": {"include_document_status": "maybe"}}, 422, "status maybe"),
    _bad("GET", "/" + sha1("unknown"), lambda s: {}, 404, "unknown id"),
    _bad("GET", "/" + "x" * 5000, lambda s: {}, 404, "long id"),
    _bad("GET", "/{stored}/content", lambda s: {"params": {"index_id": "other"}}, 404, "another index"),
    _bad("GET", "/" + sha1("unknown") + "/content", lambda s: {}, 404, "unknown id"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "make", "expected"), BAD_REQUESTS)
def test_a_bad_request_is_refused_with_its_4xx_and_changes_nothing(acme, world, method, path, make, expected):
    response = acme.call(method, path.format(stored=world.stored), **make(world.stored))

    assert response.status_code == expected, response.text
    assert response.json()["detail"]
    world.assert_untouched()


BAD_ITEMS = [
    pytest.param(RIGHTS, lambda s: [{"document_id": s, "allow_access_rights": "staff"}], id="rights not a list"),
    pytest.param(RIGHTS, lambda s: [{"document_id": s}], id="rights missing"),
    pytest.param(RIGHTS, lambda s: [{"document_id": s, "allow_access_rights": [{"name": "x", "level": 3}]}], id="unknown right field"),
    pytest.param(RIGHTS, lambda s: [{"document_id": sha1("unknown"), "allow_access_rights": []}], id="unknown id"),
    pytest.param(RIGHTS, lambda s: [{"document_id": s.upper(), "allow_access_rights": []}], id="uppercase id"),
    pytest.param(RIGHTS, lambda s: ["not an object", None], id="not objects"),
    pytest.param(RIGHTS, lambda s: [{"document_id": 5, "allow_access_rights": []}], id="numeric id"),
    pytest.param(DELETE, lambda s: [sha1("unknown")], id="unknown id"),
    pytest.param(DELETE, lambda s: [s.upper()], id="uppercase id"),
    pytest.param(DELETE, lambda s: [5, None, "", "x" * 100, {"id": s}, [s]], id="not ids"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "items"), BAD_ITEMS)
def test_bad_rights_and_delete_items_are_per_document_errors(acme, world, endpoint, items):
    key = "documents" if endpoint == RIGHTS else "document_ids"
    sent = items(world.stored)

    response = acme.call("POST", endpoint, json={key: sent})

    assert response.status_code == 200, response.text
    assert response.json()["documents"] == []
    assert len(response.json()["errors"]) == len(sent)
    world.assert_untouched()


# --- 8. credentials -------------------------------------------------------------------------------


# Each endpoint, given (document id, index id): a request that would read or change that document.
ENDPOINTS: dict[str, Callable[[str, str | None], tuple[str, str, dict[str, Any]]]] = {
    "ingest": lambda i, ix: ("POST", BATCH, {"json": {"index_id": ix, "documents": [doc(i, text="overwritten")]}}),
    "access rights": lambda i, ix: (
        "POST", RIGHTS, {"json": {"index_id": ix, "documents": [{"document_id": i, "allow_access_rights": []}]}},
    ),
    "delete": lambda i, ix: ("POST", DELETE, {"json": {"index_id": ix, "document_ids": [i]}}),
    "list": lambda i, ix: ("GET", "", {"params": {"document_id_in": i}}),
    "search": lambda i, ix: ("GET", "/search", {"params": {"q": "kingfisher", "access_rights": "staff"}}),
    "get": lambda i, ix: ("GET", f"/{i}", {}),
    "content": lambda i, ix: ("GET", f"/{i}/content", {}),
}  # fmt: skip


def send(api: Api, endpoint: str, document_id: str, index_id: str | None, tenant: str, headers: dict[str, str]):
    """One endpoint's request with exactly these credential headers."""
    method, path, kwargs = ENDPOINTS[endpoint](document_id, index_id)
    params = {"tenant": tenant, **kwargs.pop("params", {})}
    return api.client.send(api.client.build_request(method, PREFIX + path, params=params, headers=headers, **kwargs))


# (status, credential headers, tenant asked for)
REFUSED: dict[str, tuple[int, Callable[[World], dict[str, str]], str]] = {
    "no credentials": (401, lambda w: {}, "acme"),
    "empty X-Auth": (401, lambda w: {"X-Auth": ""}, "acme"),
    "malformed key": (401, lambda w: {"X-Auth": "letmein"}, "acme"),
    "unknown key": (401, lambda w: {"X-Auth": "sk_AAAAAAAAAAAA_" + "x" * 40}, "acme"),
    "wrong secret": (401, lambda w: {"X-Auth": w.api.key + "x"}, "acme"),
    "revoked key": (401, lambda w: {"X-Auth": w.revoked_key}, "acme"),
    "basic scheme": (401, lambda w: {"Authorization": f"Basic {w.api.key}"}, "acme"),
    "bearer without token": (401, lambda w: {"Authorization": "Bearer"}, "acme"),
    "other tenant's key": (403, lambda w: {"X-Auth": w.other_tenant_key}, "acme"),
    "other tenant's bearer": (403, lambda w: {"Authorization": f"Bearer {w.other_tenant_key}"}, "acme"),
    "key without the role": (403, lambda w: {"X-Auth": w.no_role_key}, "acme"),
    "key for another tenant": (403, lambda w: {"X-Auth": w.api.key}, "globex"),
    "key for an unknown tenant": (403, lambda w: {"X-Auth": w.api.key}, "nobody"),
}


@pytest.mark.parametrize("credential", REFUSED)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_refuses_without_valid_credentials_for_the_tenant(acme, world, endpoint, credential):
    status, headers, tenant = REFUSED[credential]

    response = send(acme, endpoint, world.stored, None, tenant, headers(world))

    assert response.status_code == status, response.text
    assert response.json()["detail"]
    world.assert_untouched()


WRITES = ("ingest", "access rights", "delete")


@pytest.mark.parametrize("scheme", ["X-Auth", "Bearer", "bearer"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers_the_tenants_key(acme, world, endpoint, scheme):
    # Writes aim at a new document in the tenant's second index, so the stored one stays as it is.
    target, index_id = (sha1(f"{endpoint}-{scheme}"), "other") if endpoint in WRITES else (world.stored, None)
    headers = {"X-Auth": acme.key} if scheme == "X-Auth" else {"Authorization": f"{scheme} {acme.key}"}

    response = send(acme, endpoint, target, index_id, "acme", headers)

    assert response.status_code == 200, response.text
    if endpoint == "ingest":
        assert [d["document_id"] for d in response.json()["documents"]] == [target]
    elif endpoint in WRITES:
        assert "no document" in response.json()["errors"][0]["error_message"]
    elif endpoint == "list":
        assert [d["document_id"] for d in response.json()["results"]] == [world.stored]
    elif endpoint == "get":
        assert response.json()["title"] == "Kingfisher"
    elif endpoint == "content":
        assert response.content == b"A kingfisher on the branch."
    world.assert_untouched()


# --- limits and races ---------------------------------------------------------------------------------


def test_inline_content_over_the_configured_limit_is_refused_or_quarantined(sluice_env, prefect_api):
    sluice_env(DOCUMENT_MAX_CONTENT_BYTES="1000")
    with open_api() as api:
        document_id = sha1("too-big-inline")
        response = api.ingest(doc(document_id, text="capybara " * 500))  # 4500 bytes
        if response["errors"]:
            assert response["documents"] == [] and "limit" in response["errors"][0]["error_message"]
            return
        process()
        stored = api.get(document_id)
        assert (stored["status"], stored.get("error_codes")) == ("quarantined", ["content_too_large"])
        assert api.search("capybara") == set()


@pytest.mark.parametrize("existing", [False, True], ids=["new document", "stored document"])
def test_concurrent_batches_for_one_document_each_get_their_own_version(fresh, existing):
    document_id = sha1("contended")
    if existing:
        fresh.ingest(doc(document_id, text="first"))
    barrier = threading.Barrier(2, timeout=10)
    read_rows = documents._rows
    first_reads: set[int] = set()

    def read_then_wait(*args, **kwargs):
        found = read_rows(*args, **kwargs)
        if threading.get_ident() not in first_reads:  # a retry reads again without waiting
            first_reads.add(threading.get_ident())
            barrier.wait()  # both requests have read the document before either writes: the race, every time
        return found

    def post(n: int) -> httpx.Response:
        return fresh.call("POST", BATCH, json={"documents": [doc(document_id, text=f"writer {n}")]})

    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(2) as pool:
        patch.setattr(documents, "_rows", read_then_wait)
        responses = list(pool.map(post, range(2)))

    assert [r.status_code for r in responses] == [200, 200]
    base = 2 if existing else 1
    assert sorted(r.json()["documents"][0]["version"] for r in responses) == [base, base + 1]
    assert fresh.get(document_id)["version"] == base + 1
