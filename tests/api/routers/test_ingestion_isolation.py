"""Acceptance: a randomized probe of 1,000 ingestion-API requests across two tenants finds 0
cross-tenant reads or writes.

Two tenants (acme, globex) hold documents under the SAME document ids, uris, content sources and
ingestion jobs, each marked with its own secret word in title, text, content, metadata and content
URL. A seeded ``random.Random`` then sends requests to every ingestion route with a random acting
key (acme's, globex's, or none, garbage, forged, revoked, role-less), a random ``?tenant=`` (own,
the other, unknown, repeated), random index ids and document ids, and random write bodies, running
the real ``process-documents`` flow now and then so writes reach the search index. Every response
is checked on the spot; a model of each tenant's stored documents (read back with that tenant's own
key) is compared after every write and every processing pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from api.main import app
from flows.ingest_documents import process_documents
from sluice import credentials, db
from sluice.models import ApiKey
from sluice.settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_api")

PREFIX = "/v0/service/ingestion/documents"
SEED = 20260815
REQUESTS = 1000
PROCESS_RATE = 0.025  # chance, before each request, of a processing pass (about 25 in the probe)
INTRUDER = "zintrudermarkq"  # what requests without valid credentials try to write
ENDPOINTS = ("ingest", "rights", "delete", "list", "search", "get", "content")
WRITES = frozenset({"ingest", "rights", "delete"})
RIGHT_NAMES = ("public", "staff", "acme-staff", "globex-staff")
FINAL = frozenset({"indexed", "indexed_update", "ingested", "quarantined", "quarantine_failed", "failed", "deleted"})
IN_SEARCH = frozenset({"indexed", "indexed_update"})


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


SHARED_IDS = [sha1(f"shared-{i}") for i in range(4)]  # seeded in both tenants
FRESH_IDS = [sha1(f"fresh-{i}") for i in range(4)]  # seeded nowhere: either tenant may create them
BOGUS_IDS = ["not-a-sha1", "0" * 41, "missing", sha1("never")]


@dataclass
class Side:
    """One tenant: its indexes, key and the word that marks everything it ever stores."""

    name: str
    marker: str
    indexes: tuple[str, ...]
    default_index: str
    key: str = ""
    key_id: str = ""
    own_ids: list[str] = field(default_factory=list)


@dataclass
class Cred:
    """A way of presenting credentials, and whom they prove (``tenant``) with the role or not."""

    kind: str
    headers: dict[str, str]
    tenant: str | None
    has_role: bool = True


@dataclass
class Sent:
    endpoint: str
    method: str
    path: str
    params: list[tuple[str, Any]]
    body: Any = None
    malformed: bool = False


def _tenant_fields(value: Any) -> list[str]:
    """Every ``tenant`` value anywhere in a JSON body."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "tenant" and isinstance(v, str):
                found.append(v)
            found += _tenant_fields(v)
    elif isinstance(value, list):
        for v in value:
            found += _tenant_fields(v)
    return found


class Probe:
    def __init__(self, client: TestClient, sides: dict[str, Side], creds: list[Cred], rng: random.Random):
        self.client, self.sides, self.creds, self.rng = client, sides, creds, rng
        self.cross_reads: list[str] = []
        self.cross_writes: list[str] = []
        self.server_errors: list[str] = []
        self.failures: list[str] = []  # broken expectations that are neither (wrong status class, lost data)
        self.by_endpoint: Counter[tuple[str, int]] = Counter()
        self.by_actor: Counter[tuple[str, str]] = Counter()  # (acting key kind, outcome)
        self.positive: Counter[str] = Counter()  # successful own-tenant operations worth counting
        self.model: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.checked_reads = 0
        self.passes = 0

    # --- the model: each tenant's documents, read back with its own key ---------------------

    def _get(self, side: Side, path: str, params: list[tuple[str, Any]]):
        response = self.client.get(
            PREFIX + path, params=[("tenant", side.name), *params], headers={"X-Auth": side.key},
            follow_redirects=False,
        )  # fmt: skip
        self.checked_reads += 1
        self._scan(response, side.name, f"model read {path}")
        return response

    def snapshot(self, side: Side) -> dict[tuple[str, str], dict[str, Any]]:
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for index in side.indexes:
            page = self._get(side, "", [("index_id", index), ("include_document_status", "true"), ("page_size", 1000)])
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["count"] == len(body["results"]) < 1000
            for doc in body["results"]:
                entry = {k: doc.get(k) for k in ("version", "title", "status", "deleted", "allow_access_rights",
                                                 "custom_metadata", "uri", "content_source_id", "tenant",
                                                 "index_id", "request_last_updated_at", "is_indexable",
                                                 "content_ingestion_job_id")}  # fmt: skip
                if doc.get("document_content"):
                    got = self._get(side, f"/{doc['document_id']}/content", [("index_id", index)])
                    entry["content"] = (got.status_code, got.headers.get("location"), got.content)
                state[(index, doc["document_id"])] = entry
        return state

    def refresh(self) -> None:
        self.model = {name: self.snapshot(side) for name, side in self.sides.items()}

    def compare_strict(self, victim: Side, why: str) -> None:
        """After a write not made by ``victim`` itself: nothing of the victim's may have changed."""
        before, after = self.model[victim.name], self.snapshot(victim)
        if before != after:
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            detail = [(k, before.get(k), after.get(k)) for k in changed[:3]]
            self.cross_writes.append(f"{why}: {victim.name}'s documents changed: {detail}")
        self.model[victim.name] = after

    def compare_processed(self, side: Side) -> None:
        """After a processing pass: only statuses (and content of newly deleted documents) move."""
        before, after = self.model[side.name], self.snapshot(side)
        if before.keys() != after.keys():
            self.cross_writes.append(f"processing changed {side.name}'s ids: {before.keys() ^ after.keys()}")
        fixed = ("version", "title", "allow_access_rights", "custom_metadata", "uri", "content_source_id", "tenant")
        for key in before.keys() & after.keys():
            old, new = before[key], after[key]
            if any(old[f] != new[f] for f in fixed):
                self.cross_writes.append(f"processing changed {side.name} {key}: {old} -> {new}")
            if old["status"] in FINAL and old["status"] != new["status"]:
                self.failures.append(f"processing moved a finished {side.name} {key}: {old} -> {new}")
            if new["status"] not in FINAL:
                self.failures.append(f"processing left {side.name} {key} unfinished: {new}")
            if not new["deleted"] and old.get("content") != new.get("content"):
                self.cross_writes.append(f"processing changed {side.name} {key} content: {old} -> {new}")
        self.model[side.name] = after

    def check_search_index(self, side: Side) -> None:
        """The tenant's search indexes hold exactly its own searchable documents, as stored."""
        rights = [("access_rights", r) for r in RIGHT_NAMES]
        for index in side.indexes:
            got = self._get(side, "/search", [("index_id", index), ("page_size", 1000), *rights])
            assert got.status_code == 200, got.text
            hits = {h["document_id"]: h for h in got.json()["results"]}
            mine = {doc_id: doc for (ix, doc_id), doc in self.model[side.name].items() if ix == index}
            # Documents that grant no right at all are indexed but no search can show them.
            must = {d for d, doc in mine.items() if doc["status"] in IN_SEARCH and doc["allow_access_rights"]}
            may = {doc_id for doc_id, doc in mine.items() if not doc["deleted"]}
            if not must <= hits.keys() <= may:
                self.cross_reads.append(
                    f"search index {side.name}/{index}: hits {sorted(hits)} not between {sorted(must)} and {sorted(may)}"
                )
            for doc_id in must & hits.keys():
                hit, doc = hits[doc_id], mine[doc_id]
                if (hit["version"], hit["title"]) != (doc["version"], doc["title"]):
                    self.cross_reads.append(f"search hit {side.name}/{index}/{doc_id}: {hit} vs stored {doc}")
            self.positive[f"indexed documents seen ({side.name})"] += len(hits)

    def process(self) -> None:
        process_documents(until_idle=True)
        self.passes += 1
        for side in self.sides.values():
            self.compare_processed(side)
            self.check_search_index(side)

    # --- every response ---------------------------------------------------------------------

    def _scan(self, response, actor: str | None, what: str) -> None:
        """No response to ``actor`` (None: no valid credentials) shows anything of another tenant."""
        if response.status_code >= 500:
            self.server_errors.append(f"{what}: {response.status_code} {response.text[:300]}")
        text = (json.dumps(dict(response.headers)) + response.content.decode("utf-8", "replace")).lower()
        for side in self.sides.values():
            if side.name != actor and side.marker in text:
                self.cross_reads.append(f"{what} (as {actor}) shows {side.name}'s marker: {text[:400]}")
        if INTRUDER in text:
            self.cross_reads.append(f"{what} (as {actor}) shows a write made without credentials: {text[:400]}")
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
            strangers = {t for t in _tenant_fields(response.json()) if t != actor}
            if strangers:
                self.cross_reads.append(f"{what} (as {actor}) answers for tenants {strangers}: {response.text[:400]}")

    # --- random requests -----------------------------------------------------------------------

    def pick_ids(self, n: int, shared: int = 4) -> list[str]:
        pools = [SHARED_IDS, self.sides["acme"].own_ids, self.sides["globex"].own_ids, FRESH_IDS, BOGUS_IDS]
        weights = [shared, 2, 2, 1, 1]
        return [self.rng.choice(self.rng.choices(pools, weights)[0]) for _ in range(n)]

    def pick_index(self) -> str | None:
        a, g = self.sides["acme"], self.sides["globex"]
        return self.rng.choice([None, None, "", *a.indexes, *g.indexes, "nope", "globex-research", "acme-archive"])

    def pick_tenants(self, cred: Cred) -> list[str]:
        """The ``tenant`` query values to send (the last one counts); empty: none."""
        other = {"acme": "globex", "globex": "acme"}
        r = self.rng.random()
        if cred.tenant in other:
            own, theirs = cred.tenant, other[cred.tenant]
            if r < 0.55:
                return [own]
            if r < 0.85:
                return [theirs]
            return self.rng.choice([["initech"], [own.upper()], [f"{own} "], [], [own, theirs], [theirs, own]])
        return self.rng.choice([["acme"], ["globex"], ["acme"], ["globex"], ["initech"], []])

    def marker_for(self, cred: Cred) -> str:
        return self.sides[cred.tenant].marker if cred.tenant in self.sides and cred.has_role else INTRUDER

    def document(self, marker: str, document_id: str | None) -> Any:
        rng = self.rng
        if rng.random() < 0.04:
            return rng.choice(["not an object", 7, None, {"document_id": document_id, "colour": "red"}])
        doc: dict[str, Any] = {"title": f"{marker} probe {rng.randint(0, 999)}"}
        if document_id is not None:
            doc["document_id"] = document_id
        kind = rng.choice(["text", "html", "none", "url", "bad64", "pdf"])
        if kind == "text":
            text = f"{marker} probe text quarterly {rng.randint(0, 999)}"
            doc["document_content"] = {"content_type": "text/plain", "from_": {"plain_text_string": text}}
        elif kind == "html":
            html = f"<html><head><title>{marker}</title></head><body><p>{marker} quarterly</p></body></html>"
            encoded = base64.b64encode(html.encode()).decode()
            doc["document_content"] = {"content_type": "text/html", "from": {"base64_string": encoded}}
        elif kind == "url":  # never fetched: not indexable
            doc["is_indexable"] = False
            doc["document_content"] = {"content_type": "text/plain",
                                       "from_": {"url": f"https://files.example/{marker}/{rng.randint(0, 9)}.txt"}}  # fmt: skip
        elif kind == "bad64":
            doc["document_content"] = {"content_type": "text/plain", "from_": {"base64_string": "%%%"}}
        elif kind == "pdf":  # quarantined by extraction
            data = base64.b64encode(f"not a pdf {marker}".encode()).decode()
            doc["document_content"] = {"content_type": "application/pdf", "from_": {"base64_string": data}}
        if rng.random() < 0.6:
            doc["allow_access_rights"] = [{"name": n} for n in rng.sample(RIGHT_NAMES, rng.randint(0, 2))]
        if rng.random() < 0.5:
            doc["custom_metadata"] = {"note": f"{marker} note"}
            if rng.random() < 0.2:
                doc["custom_metadata"]["colour"] = "red"  # not allowed: an error entry
        if rng.random() < 0.5:
            doc["uri"] = f"https://shared.example/doc/{rng.randint(0, 3)}"
        if rng.random() < 0.5:
            doc["content_source_id"] = rng.choice(["shared-source", "acme-source", "globex-source"])
        if rng.random() < 0.3:
            doc["content_ingestion_job_id"] = "shared-job"
        return doc

    def build(self, endpoint: str, cred: Cred, tenants: list[str]) -> Sent:
        rng = self.rng
        params: list[tuple[str, Any]] = [("tenant", t) for t in tenants]
        index = self.pick_index()
        if endpoint in WRITES:
            body: dict[str, Any] = {} if index is None else {"index_id": index}
            marker = self.marker_for(cred)
            ids = self.pick_ids(rng.randint(1, 4))
            if endpoint == "ingest":
                body["documents"] = [self.document(marker, None if rng.random() < 0.05 else i) for i in ids]
                path = "/document-batches"
            elif endpoint == "rights":
                body["documents"] = [{"document_id": i, "allow_access_rights": [
                    {"name": n} for n in rng.sample(RIGHT_NAMES, rng.randint(0, 3))]} for i in ids]  # fmt: skip
                path = "/access-rights-batches"
            else:
                body["document_ids"] = ids
                path = "/delete-document-batches"
            malformed = rng.random() < 0.04
            if malformed:
                body[next(k for k in body if k != "index_id")] = "not a list"
            return Sent(endpoint, "POST", path, params, body, malformed)
        if index is not None:
            params.append(("index_id", index))
        malformed = False
        if endpoint == "list":
            if rng.random() < 0.4:
                params += [("document_id_in", i) for i in self.pick_ids(rng.randint(1, 4))]
            if rng.random() < 0.3:
                params += [
                    ("uri_in", f"https://shared.example/doc/{rng.randint(0, 4)}") for _ in range(rng.randint(1, 2))
                ]
            for name, values in (("content_source_id", ["shared-source", "acme-source", "globex-source"]),
                                 ("content_ingestion_job_id", ["shared-job"])):  # fmt: skip
                if rng.random() < 0.3:
                    params.append((name, rng.choice(values)))
            if rng.random() < 0.5:
                params.append(("include_document_status", "true"))
            if rng.random() < 0.2:
                params += [("page", rng.randint(1, 3)), ("page_size", rng.randint(1, 5))]
            malformed = rng.random() < 0.03
            if malformed:
                params.append(("page", 0))
            return Sent(endpoint, "GET", "", params, malformed=malformed)
        if endpoint == "search":
            a, g = self.sides["acme"].marker, self.sides["globex"].marker
            q = rng.choice([None, a, g, "quarterly", "probe", "report", f"{a} {g}", INTRUDER])
            if q is not None:
                params.append(("q", q))
            params += [("access_rights", n) for n in rng.sample(RIGHT_NAMES, rng.randint(0, 4))]
            if rng.random() < 0.2:
                params += [("page", rng.randint(1, 2)), ("page_size", rng.randint(1, 5))]
            return Sent(endpoint, "GET", "/search", params)
        (document_id,) = self.pick_ids(1, shared=7)
        if endpoint == "get":
            if rng.random() < 0.5:
                params.append(("include_document_status", "true"))
            return Sent(endpoint, "GET", f"/{document_id}", params)
        return Sent(endpoint, "GET", f"/{document_id}/content", params)

    def send(self, n: int) -> None:
        rng = self.rng
        endpoint = rng.choice(ENDPOINTS)
        cred = rng.choices(self.creds, [c.kind.count("*") or 6 for c in self.creds])[0]
        tenants = self.pick_tenants(cred)
        sent = self.build(endpoint, cred, tenants)
        response = self.client.request(
            sent.method, PREFIX + sent.path, params=sent.params, json=sent.body, headers=cred.headers,
            follow_redirects=False,
        )  # fmt: skip
        status = response.status_code
        target = tenants[-1] if tenants else None
        authorized = cred.tenant is not None and cred.has_role and target == cred.tenant
        actor = cred.tenant if cred.has_role else None
        what = f"#{n} {cred.kind} {sent.method} {sent.path} {sent.params} {json.dumps(sent.body)[:300]} -> {status}"
        self.by_endpoint[(endpoint, status)] += 1
        self.by_actor[(cred.kind, "own" if authorized else "refused")] += 1
        self._scan(response, actor, what)

        if not authorized:
            expected = {401} if cred.tenant is None else {403}
            if target is None:  # no ?tenant= at all: a validation error, before any credentials check
                expected = {422}
            if sent.malformed:
                expected = expected | {422}
            if 200 <= status < 400:
                (self.cross_writes if endpoint in WRITES else self.cross_reads).append(f"not refused: {what}")
            elif status not in expected:
                self.failures.append(f"expected {sorted(expected)}: {what} {response.text[:200]}")
        else:
            self.check_own(sent, cred.tenant, response, what)

        if endpoint in WRITES:
            for side in self.sides.values():
                if authorized and side.name == cred.tenant and 200 <= status < 300:
                    self.model[side.name] = self.snapshot(side)
                    self.check_accepted(side, response.json(), what)
                else:
                    self.compare_strict(side, what)

    def check_own(self, sent: Sent, tenant: str, response, what: str) -> None:
        side, status = self.sides[tenant], response.status_code
        if status in (401, 403) or not (status in (200, 307) or 400 <= status < 500):
            self.failures.append(f"own-tenant request refused or odd: {what} {response.text[:200]}")
            return
        if status not in (200, 307):
            return
        self.positive[f"{sent.endpoint} ok ({tenant})"] += 1
        params = dict(sent.params)  # the last value of each
        index = params.get("index_id") or side.default_index
        mine = {doc_id: doc for (ix, doc_id), doc in self.model[tenant].items() if ix == index}
        document_id = sent.path.split("/")[1] if sent.endpoint in ("get", "content") else None
        if document_id in SHARED_IDS:
            self.positive[f"shared id read ok ({tenant})"] += 1
        if sent.endpoint == "content":
            shown = (response.headers.get("location") or response.content.decode("utf-8", "replace")).lower()
            if side.marker not in shown:
                self.cross_reads.append(f"content not marked as {tenant}'s: {what} {shown[:200]}")
        elif sent.endpoint == "get":
            doc = response.json()
            held = mine.get(document_id) or {}
            if side.marker not in (doc.get("title") or "") or (doc["version"], doc["title"], doc["index_id"]) != (
                held.get("version"),
                held.get("title"),
                index,
            ):
                self.cross_reads.append(f"document not {tenant}'s: {what} {response.text[:300]} model {held}")
            url = (doc.get("document_content") or {}).get("download_url")
            if url is not None and f"tenant={tenant}&" not in url:
                self.cross_reads.append(f"download_url for another tenant: {what} {url}")
        elif sent.endpoint == "list":
            for doc in response.json()["results"]:
                if side.marker not in (doc.get("title") or "") or doc["index_id"] not in side.indexes:
                    self.cross_reads.append(f"listed document not {tenant}'s: {what} {doc}")
            self.positive[f"listed documents ({tenant})"] += len(response.json()["results"])
            ids, uris = (
                {v for k, v in sent.params if k == "document_id_in"},
                {v for k, v in sent.params if k == "uri_in"},
            )
            expected = sum(
                1 for doc_id, doc in mine.items()
                if (not ids or doc_id in ids) and (not uris or doc["uri"] in uris)
                and params.get("content_source_id", doc["content_source_id"]) == doc["content_source_id"]
                and params.get("content_ingestion_job_id", doc["content_ingestion_job_id"]) == doc["content_ingestion_job_id"]
            )  # fmt: skip
            if response.json()["count"] != expected:
                self.cross_reads.append(f"list count is not {tenant}'s {expected}: {what} {response.text[:300]}")
        elif sent.endpoint == "search":
            hits = response.json()["results"]
            for hit in hits:
                if side.marker not in (hit.get("title") or ""):
                    self.cross_reads.append(f"search hit not {tenant}'s: {what} {hit}")
            self.positive[f"search hits ({tenant})"] += len(hits)
            if response.json()["count"] > sum(1 for doc in mine.values() if not doc["deleted"]):
                self.cross_reads.append(f"search counts more than {tenant} holds: {what} {response.text[:300]}")

    def check_accepted(self, side: Side, body: dict[str, Any], what: str) -> None:
        """Every document a write accepted is the acting tenant's own, at the version it now holds."""
        model = self.model[side.name]
        for doc in body["documents"]:
            held = model.get((body["index_id"], doc["document_id"]))
            if body["index_id"] not in side.indexes or held is None or held["version"] != doc["version"]:
                self.cross_writes.append(f"accepted a document {side.name} does not hold: {what} {doc} {held}")
        self.positive[f"documents accepted ({side.name})"] += len(body["documents"])


# --- set-up ------------------------------------------------------------------------------------------


def _seed_documents(side: Side, index: str) -> list[dict[str, Any]]:
    """Shared ids with the same uri/source/job in both tenants, plus ids only this tenant has."""
    m, name = side.marker, side.name
    docs = []
    for k, document_id in enumerate(SHARED_IDS if index == "main" else SHARED_IDS[:2]):
        doc: dict[str, Any] = {
            "document_id": document_id, "title": f"{m} {name} report {k}", "uri": f"https://shared.example/doc/{k}",
            "content_source_id": "shared-source", "content_ingestion_job_id": "shared-job",
            "custom_metadata": {"note": f"{m} note", "owner": name},
            "allow_access_rights": [{"name": ["public", "staff", f"{name}-staff", "public"][k]}],
        }  # fmt: skip
        if k == 0:
            text = f"{m} quarterly numbers for {name} document {k}"
            doc["document_content"] = {"content_type": "text/plain", "from_": {"plain_text_string": text}}
        elif k == 1:
            html = f"<html><head><title>{m}</title></head><body><p>{m} quarterly {name}</p></body></html>"
            doc["document_content"] = {"content_type": "text/html",
                                       "from_": {"base64_string": base64.b64encode(html.encode()).decode()}}  # fmt: skip
        elif k == 3:  # kept, never fetched
            doc["is_indexable"] = False
            doc["document_content"] = {"content_type": "text/plain",
                                       "from_": {"url": f"https://files.example/{m}/{k}.txt"}}  # fmt: skip
        docs.append(doc)
    for document_id in side.own_ids[:3] if index == "main" else side.own_ids[3:]:
        text = f"{m} quarterly {name} own {document_id}"
        docs.append({"document_id": document_id, "title": f"{m} {name} own", "uri": f"https://{name}.example/x",
                     "content_source_id": f"{name}-source", "allow_access_rights": [{"name": "public"}],
                     "document_content": {"content_type": "text/plain", "from_": {"plain_text_string": text}}})  # fmt: skip
    return docs


def _set_up(client: TestClient) -> tuple[dict[str, Side], list[Cred]]:
    settings = get_settings()
    db.upgrade(settings.database_url)
    sides = {
        "acme": Side("acme", "zacmemarkq", ("main", "acme-archive"), "main"),
        "globex": Side("globex", "zglobexmarkq", ("main", "globex-research"), "globex-research"),
    }
    hasher = PasswordHasher()
    with db.session(settings.database_url) as session:
        for side in sides.values():
            credentials.create_tenant(session, side.name)
            for index in side.indexes:
                credentials.create_index(session, side.name, index, ["note", "owner"],
                                         default=index == side.default_index)  # fmt: skip
            row, side.key = credentials.create_key(session, side.name, ["ingestion-manager"])
            side.key_id = row.key_id
            side.own_ids = [sha1(f"{side.name}-own-{i}") for i in range(5)]
        credentials.create_tenant(session, "initech")  # a tenant nobody here holds a key for
        credentials.create_index(session, "initech", "main", [])
        revoked, revoked_key = credentials.create_key(session, "acme", ["ingestion-manager"])
        credentials.revoke_key(session, revoked.key_id)
        # A key of acme without the role (only the CLI's validation stops one being made).
        secret = secrets.token_urlsafe(32)
        session.add(ApiKey(key_id="Roleless2345", tenant="acme", secret_hash=hasher.hash(secret), roles=["viewer"]))
        session.commit()
    roleless_key = f"sk_Roleless2345_{secret}"
    a, g = sides["acme"], sides["globex"]
    creds = [
        Cred("acme", {"X-Auth": a.key}, "acme"),
        Cred("acme-bearer", {"Authorization": f"Bearer {a.key}"}, "acme"),
        Cred("globex", {"X-Auth": g.key}, "globex"),
        Cred("globex-bearer", {"Authorization": f"bearer {g.key}"}, "globex"),
        # X-Auth wins over Authorization (api/deps.py): a globex bearer token rides along unused.
        Cred("acme+globex*", {"X-Auth": a.key, "Authorization": f"Bearer {g.key}"}, "acme"),
        Cred("globex+acme*", {"X-Auth": g.key, "Authorization": f"Bearer {a.key}"}, "globex"),
        Cred("none*", {}, None),
        Cred("garbage*", {"X-Auth": "sk_garbage"}, None),
        Cred("basic*", {"Authorization": f"Basic {a.key}"}, None),
        Cred("forged-acme-secret*", {"X-Auth": f"sk_{a.key_id}_{secrets.token_urlsafe(32)}"}, None),
        Cred("forged-globex-secret*", {"Authorization": f"Bearer sk_{g.key_id}_{secrets.token_urlsafe(32)}"}, None),
        Cred("revoked-acme*", {"X-Auth": revoked_key}, None),
        Cred("roleless-acme*", {"X-Auth": roleless_key}, "acme", has_role=False),
    ]
    for side in sides.values():
        for index in side.indexes:
            response = client.post(
                f"{PREFIX}/document-batches", params={"tenant": side.name}, headers={"X-Auth": side.key},
                json={"index_id": index, "documents": _seed_documents(side, index)},
            )  # fmt: skip
            assert response.status_code == 200 and not response.json()["errors"], response.text
    return sides, creds


def test_random_probe_finds_no_cross_tenant_reads_or_writes(flow_engine):
    started = time.monotonic()
    with TestClient(app) as client:
        sides, creds = _set_up(client)
        probe = Probe(client, sides, creds, random.Random(SEED))
        process_documents(until_idle=True)
        probe.refresh()
        for side in sides.values():  # the seed is indexed and searchable, shared ids and all
            statuses = Counter(doc["status"] for doc in probe.model[side.name].values())
            assert statuses == {"indexed": 10, "ingested": 1}, statuses
            probe.check_search_index(side)
        assert not (probe.cross_reads or probe.cross_writes or probe.failures), probe.cross_reads + probe.failures

        for n in range(REQUESTS):
            if probe.rng.random() < PROCESS_RATE:
                probe.process()
            probe.send(n)
        probe.process()  # the model after the probe, with every write applied to the search index
        indices = set(flow_engine.list_indices("sluice-docs"))
    elapsed = time.monotonic() - started

    endpoints: dict[str, dict[int, int]] = {}
    for (endpoint, status), count in sorted(probe.by_endpoint.items()):
        endpoints.setdefault(endpoint, {})[status] = count
    lines = [
        f"{REQUESTS} probe requests, {probe.passes} processing passes, {probe.checked_reads} model reads, "
        f"{elapsed:.0f} s",
        *(f"  {endpoint:8} {statuses}" for endpoint, statuses in endpoints.items()),
        f"  actors: {dict(sorted(probe.by_actor.items()))}",
        f"  positive: {dict(sorted(probe.positive.items()))}",
        f"  cross-tenant reads: {len(probe.cross_reads)}, cross-tenant writes: {len(probe.cross_writes)}, "
        f"5xx: {len(probe.server_errors)}, other failures: {len(probe.failures)}",
    ]
    print("\n" + "\n".join(lines))  # noqa: T201 - the probe's summary, shown with -s

    assert probe.cross_reads == [], probe.cross_reads[:5]
    assert probe.cross_writes == [], probe.cross_writes[:5]
    assert probe.server_errors == [], probe.server_errors[:5]
    assert probe.failures == [], probe.failures[:5]
    expected_indices = {f"sluice-docs.{s.name}.{ix}" for s in sides.values() for ix in s.indexes}
    assert indices <= expected_indices, indices
    # The probe really exercised everything: each endpoint served own-tenant requests and refused
    # the other tenant's and credential-less ones; both tenants read, searched and wrote.
    assert sum(probe.by_endpoint.values()) == REQUESTS
    for endpoint, statuses in endpoints.items():
        assert statuses.get(401, 0) >= 5 and statuses.get(403, 0) >= 10, (endpoint, statuses)
        assert statuses.get(200, 0) + statuses.get(307, 0) >= 10, (endpoint, statuses)
    assert set(endpoints) == set(ENDPOINTS)
    for name in sides:
        for what in ("ingest", "rights", "delete", "list", "search", "get", "content"):
            assert probe.positive[f"{what} ok ({name})"] >= 3, (name, what, probe.positive)
        for what in ("shared id read ok", "search hits", "listed documents", "documents accepted"):
            assert probe.positive[f"{what} ({name})"] >= 5, (name, what, probe.positive)
        refused = sum(
            n for (kind, outcome), n in probe.by_actor.items() if kind.startswith(name) and outcome == "refused"
        )
        assert refused >= 50, probe.by_actor
    assert probe.passes >= 10
