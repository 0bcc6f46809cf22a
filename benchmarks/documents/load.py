"""The load generator and the status poller that run against ``sluice up``.

Senders: batch ``i`` is due at ``start + i * interval``; a scheduler thread hands it, on time, to a
pool of client threads (one ``httpx.Client``, one keep-alive connection each). The pool reuses an
idle client and opens another only when every one is waiting for an answer, up to ``clients``:
a slow answer ties up one client, not the schedule, so the offered load stays what was asked for
(open loop) unless ``clients`` answers are outstanding at once. Any lag behind the schedule is
recorded (``Post.sent - Post.scheduled``), and so is the peak number of POSTs in flight.

Poller: about ``poll_hz`` times a second it asks the list endpoint (``document_id_in``, in bulk)
for acknowledged documents not yet seen indexed, oldest POST first. Every document it returns
costs the API time (about 0.15 ms each, on top of ~5 ms a GET, on this machine), and the API is
what is measured, so a cycle does not ask for every pending document. The processor claims the
oldest requests first and records a whole pass in one transaction, so the indexed documents are
(nearly) a prefix of that order: a cycle asks for the oldest few, then for more (4x) while
everything it got back is resolved, peeks a little further past a chunk that was only partly
resolved, and stops at a chunk with nothing resolved. The documents behind it are taken to be
unresolved at that moment too. The first chunk is sized from what recent cycles found, so a
cycle is one or two GETs and each indexed document is returned about once. Documents found
indexed behind an unresolved one are counted (``out_of_order``): they may have been seen late.

Cross-check: ``DbObserver`` reads the app database itself (SQLite in WAL mode: a reader neither
waits for nor blocks a writer) at the same rate and notes when each document's row first reads
``indexed``. It is the same fact the API reports, seen without going through the API, whose
threads may all be busy with POSTs under load: the gap between the two is what polling the API
adds. It uses only the row ids and the status index, so it costs little.

For each document the poller keeps two times: ``seen`` (the answer that first showed it indexed
arrived; the latency reported) and ``lower`` (the request that last showed it, or an older one,
unresolved was sent). The document became indexed between the two: their gap is the error bar
that polling adds.
"""

from __future__ import annotations

import contextlib
import heapq
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import orjson

PREFIX = "/v0/service/ingestion/documents"
# uvicorn's h11 parser refuses a request line over 16 KiB: 200 ids of 40 hex characters with
# "&document_id_in=" take about 11.2 KiB.
POLL_IDS = 200
MIN_PROBE = 10  # ids in the first chunk of an idle cycle and in a peek past a partly resolved chunk
GROWTH = 4  # the next chunk's size after a fully resolved one
DONE = frozenset({"indexed", "indexed_update"})
WAITING = frozenset({"ingesting", "indexing", "indexing_update"})  # anything else is a failure


@dataclass
class Post:
    batch: int
    scheduled: float  # time.monotonic() values
    sent: float = 0.0
    received: float = 0.0
    status: int | None = None
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.received - self.sent


@dataclass
class Tracker:
    """Every document's times, shared by the senders and the poller."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: dict[str, float] = field(default_factory=dict)  # id -> its POST was sent at
    acknowledged: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    lower: dict[str, float] = field(default_factory=dict)
    unresolved_at: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    poll_requests: list[tuple[float, float]] = field(default_factory=list)  # (sent, seconds)
    poll_cycles: list[tuple[float, float, int]] = field(default_factory=list)  # (started, seconds, GETs)
    poll_errors: list[str] = field(default_factory=list)
    out_of_order: int = 0

    def acknowledge(self, ids: list[str], sent: float, at: float) -> None:
        with self.lock:
            for doc_id in ids:
                self.pending[doc_id] = sent
                self.acknowledged[doc_id] = at

    def latencies(self) -> list[float]:
        return [self.seen[i] - self.acknowledged[i] for i in self.seen]

    def lower_latencies(self) -> list[float]:
        return [max(0.0, self.lower.get(i, self.acknowledged[i]) - self.acknowledged[i]) for i in self.seen]

    def error_bars(self) -> list[float]:
        return [self.seen[i] - max(self.lower.get(i, self.acknowledged[i]), self.acknowledged[i]) for i in self.seen]


class Poller(threading.Thread):
    def __init__(self, api: str, key: str, tenant: str, tracker: Tracker, hz: float) -> None:
        super().__init__(name="poller", daemon=True)
        self.tracker, self.interval, self.tenant = tracker, 1.0 / hz, tenant
        self.client = httpx.Client(base_url=api, headers={"X-Auth": key}, timeout=120)  # GETs queue behind POSTs
        self.halt = threading.Event()
        self.recent = 0.0  # documents resolved per cycle, smoothed: sizes the first chunk

    def run(self) -> None:
        try:
            due = time.monotonic()
            while not self.halt.is_set():
                self.cycle()
                due += self.interval
                delay = due - time.monotonic()
                if delay > 0:
                    self.halt.wait(delay)
                else:
                    due = time.monotonic()  # behind: start the next cycle now, do not burst
        finally:
            self.client.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=60)

    def get(self, chunk: list[str]) -> tuple[float, float, dict[str, str | None]] | None:
        """(sent, received, status by id) of one GET, or None when it failed."""
        t = self.tracker
        params = [("tenant", self.tenant), ("include_document_status", "true"), ("page_size", "1000")]
        params += [("document_id_in", i) for i in chunk]
        sent = time.monotonic()
        try:
            response = self.client.get(PREFIX, params=params)
        except httpx.HTTPError as exc:
            t.poll_errors.append(f"{type(exc).__name__}: {exc}")
            return None
        received = time.monotonic()
        t.poll_requests.append((sent, received - sent))
        if response.status_code != 200:
            t.poll_errors.append(f"GET {response.status_code}: {response.text[:200]}")
            return None
        return sent, received, {d["document_id"]: d.get("status") for d in orjson.loads(response.content)["results"]}

    def cycle(self) -> None:
        t = self.tracker
        started = time.monotonic()
        with t.lock:
            ids = sorted(t.pending, key=t.pending.__getitem__)  # oldest POST first (stable within a batch)
        gets = resolved = 0
        behind = False  # an older document was seen unresolved in this cycle
        size = max(MIN_PROBE, min(POLL_IDS, round(self.recent * 1.25) + MIN_PROBE))
        position, stop_sent = 0, None
        while position < len(ids):
            chunk = ids[position : position + size]
            answer = self.get(chunk)
            if answer is None:
                break
            sent, received, statuses = answer
            gets += 1
            found = 0
            with t.lock:
                for doc_id in chunk:
                    status = statuses.get(doc_id)
                    if status is None or status in WAITING:
                        behind = True
                        t.unresolved_at[doc_id] = sent
                        continue
                    found += 1
                    if behind:
                        t.out_of_order += 1
                    if status not in DONE:
                        t.failed[doc_id] = status
                    t.seen[doc_id] = received
                    if doc_id in t.unresolved_at:
                        t.lower[doc_id] = t.unresolved_at.pop(doc_id)
                    t.pending.pop(doc_id, None)
            resolved += found
            position += len(chunk)
            if found == 0:
                stop_sent = sent
                break
            size = min(POLL_IDS, size * GROWTH) if found == len(chunk) else MIN_PROBE
        self.recent = 0.7 * self.recent + 0.3 * resolved
        with t.lock:
            if stop_sent is not None:
                for doc_id in ids[position:]:
                    if doc_id in t.pending:
                        t.unresolved_at[doc_id] = stop_sent
        t.poll_cycles.append((started, time.monotonic() - started, gets))


class Senders:
    """Up to ``clients`` threads, each with its own connection, posting pre-encoded batches."""

    def __init__(self, api: str, key: str, tenant: str, tracker: Tracker, clients: int, batch: int) -> None:
        self.api, self.key, self.tenant, self.tracker, self.batch = api, key, tenant, tracker, batch
        self.local = threading.local()
        self.clients: list[httpx.Client] = []
        self.in_flight = self.peak_in_flight = 0
        self.count_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client")

    def _client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.api, headers={"X-Auth": self.key}, timeout=60)
            self.local.client = client
            self.clients.append(client)
        return client

    def post(self, post: Post, body: bytes) -> Post:
        with self.count_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._post(post, body)
        finally:
            with self.count_lock:
                self.in_flight -= 1

    def _post(self, post: Post, body: bytes) -> Post:
        client = self._client()
        post.sent = time.monotonic()
        try:
            response = client.post(
                f"{PREFIX}/document-batches", params={"tenant": self.tenant}, content=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            post.received, post.error = time.monotonic(), f"{type(exc).__name__}: {exc}"
            return post
        post.received, post.status = time.monotonic(), response.status_code
        if response.status_code != 200:
            post.error = f"POST {response.status_code}: {response.text[:300]}"
            return post
        answer = orjson.loads(response.content)
        ids = [d["document_id"] for d in answer["documents"] if d.get("status") == "ingesting"]
        if answer.get("errors") or len(ids) != self.batch:
            post.error = f"{len(ids)} of {self.batch} documents accepted; errors: {str(answer.get('errors'))[:300]}"
        self.tracker.acknowledge(ids, post.sent, post.received)
        return post

    def run_schedule(self, bodies: list[bytes], interval: float, start: float) -> list[Post]:
        """Batch ``i`` is due at ``start + i * interval``; returns when every answer is in."""
        futures = []
        for i, body in enumerate(bodies):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            post = Post(i, due)
            self.tracker.posts.append(post)
            futures.append(self.pool.submit(self.post, post, body))
        for future in futures:
            future.result()
        return self.tracker.posts

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()


class DbObserver(threading.Thread):
    """When each document of ``ids`` first reads ``indexed`` in the app database (``seen``)."""

    def __init__(self, path: str, ids: set[str], hz: float) -> None:
        super().__init__(name="db-observer", daemon=True)
        self.path, self.ids, self.interval = path, ids, 1.0 / hz
        self.seen: dict[str, float] = {}
        self.cycles: list[float] = []  # seconds per cycle
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5)
        conn.execute("PRAGMA query_only = 1")
        unseen: dict[int, str] = {}  # row id -> document id, of the documents not seen indexed yet
        heap: list[int] = []  # the same row ids, smallest first (entries of seen ones are dropped lazily)
        last_pk = 0
        due = time.monotonic()
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    for pk, doc_id in conn.execute(
                        "SELECT id, document_id FROM document WHERE id > ? ORDER BY id", (last_pk,)
                    ):
                        last_pk = pk
                        if doc_id in self.ids:
                            unseen[pk] = doc_id
                            heapq.heappush(heap, pk)
                    while heap and heap[0] not in unseen:
                        heapq.heappop(heap)
                    if heap:
                        rows = conn.execute(
                            "SELECT id FROM document WHERE status IN ('indexed', 'indexed_update') AND id >= ?",
                            (heap[0],),
                        ).fetchall()
                        now = time.monotonic()
                        for (pk,) in rows:
                            doc_id = unseen.pop(pk, None)
                            if doc_id is not None:
                                self.seen[doc_id] = now
                except sqlite3.Error as exc:  # e.g. a checkpoint at the wrong moment: try again next cycle
                    self.errors.append(str(exc))
                self.cycles.append(time.monotonic() - started)
                due += self.interval
                delay = due - time.monotonic()
                if delay > 0:
                    self.halt.wait(delay)
                else:
                    due = time.monotonic()
        finally:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def wait_until_resolved(tracker: Tracker, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tracker.lock:
            if not tracker.pending:
                return True
        time.sleep(0.02)
    return False
