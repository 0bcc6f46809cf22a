"""Elasticsearch adapter of the search-engine port (also speaks to OpenSearch-compatible servers)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from elastic_transport import HttpHeaders, SerializationError, TlsError, TransportError, Urllib3HttpNode
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError, helpers
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, SecretStr

from blocks.live import LiveState
from sluice.errors import (
    ConfigurationError,
    Conflict,
    EngineUnavailable,
    InvalidInput,
    NotFound,
    SluiceError,
)
from sluice.search import (
    AliasAction,
    BulkAction,
    BulkError,
    BulkResult,
    Filter,
    Hit,
    Phrase,
    Query,
    Range,
    SearchEngine,
    SearchResult,
    Term,
)

# Per-bool clause cap: OpenSearch (and older Elasticsearch) refuse more than 1024 in one bool.
MAX_BOOL_CLAUSES = 500
# A reindex of a big index runs for a long time in one request; it must not time out client-side.
COPY_TIMEOUT = 6 * 3600.0
_WILDCARD_CHARS = frozenset("*?,")


# --- query model -> Elasticsearch DSL (the one place) ------------------------------------------


def any_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """A query true when any clause is, nested so that no bool holds more than MAX_BOOL_CLAUSES."""
    if not clauses:
        return {"match_none": {}}
    while len(clauses) > MAX_BOOL_CLAUSES:
        clauses = [
            {"bool": {"should": clauses[i : i + MAX_BOOL_CLAUSES], "minimum_should_match": 1}}
            for i in range(0, len(clauses), MAX_BOOL_CLAUSES)
        ]
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def filter_to_dsl(flt: Filter) -> dict[str, Any]:
    if isinstance(flt, Term):
        if isinstance(flt.value, list | tuple | set | frozenset):
            return {"terms": {flt.field: list(flt.value)}}
        return {"term": {flt.field: flt.value}}
    if isinstance(flt, Range):
        bounds = {k: v for k in ("gte", "lte", "gt", "lt") if (v := getattr(flt, k)) is not None}
        return {"range": {flt.field: bounds}}
    if isinstance(flt, Phrase):
        return any_of([{"match_phrase": {f: p}} for p in flt.phrases for f in flt.fields])
    raise InvalidInput(f"unsupported filter {flt!r}")


def query_to_dsl(query: Query) -> dict[str, Any]:
    """The ``query`` clause of a search, count or reindex for ``query``."""
    if query.text and query.text.strip():
        text: dict[str, Any] = {"query": query.text, "lenient": True}
        if query.fields:
            text["fields"] = list(query.fields)
        must: dict[str, Any] = {"multi_match": text}
    else:
        must = {"match_all": {}}
    if not query.filters and not query.exclude:
        return must
    boolean: dict[str, Any] = {"must": [must]}
    if query.filters:
        boolean["filter"] = [filter_to_dsl(f) for f in query.filters]
    if query.exclude:
        boolean["must_not"] = [filter_to_dsl(f) for f in query.exclude]
    return {"bool": boolean}


def sort_to_dsl(query: Query) -> list[dict[str, Any]]:
    out = []
    for name, order in query.sort:
        if order not in ("asc", "desc"):
            raise InvalidInput(f"sort order of {name!r} must be 'asc' or 'desc', not {order!r}")
        out.append({name: {"order": order}})
    return out


# --- transport ---------------------------------------------------------------------------------


class PlainJsonNode(Urllib3HttpNode):
    """Sends ``application/json`` / ``application/x-ndjson`` instead of Elasticsearch's
    ``application/vnd.elasticsearch+json; compatible-with=8``, which OpenSearch refuses (406)."""

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        **kwargs: Any,
    ) -> Any:
        if headers:
            headers = headers.copy()
            for name in ("content-type", "accept"):
                value = headers.get(name)
                if value and "vnd.elasticsearch+" in value:
                    headers[name] = value.split(";", 1)[0].strip().replace("vnd.elasticsearch+", "")
        return super().perform_request(method, target, body=body, headers=headers, **kwargs)


def _error_body(error: ApiError) -> tuple[str, str]:
    body = error.body if isinstance(error.body, dict) else {}
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("type", "")), str(err.get("reason", ""))
    return "", str(err or error.message)


def translate_api_error(error: ApiError) -> SluiceError:
    """The Sluice error for an error response of Elasticsearch."""
    status = error.status_code
    kind, reason = _error_body(error)
    message = f"{kind}: {reason}" if kind else reason
    if isinstance(error, UnsupportedProductError):
        return ConfigurationError(f"ElasticsearchEngine.url does not point at Elasticsearch: {message}")
    if status == 404:
        return NotFound(message)
    if status == 409 or kind == "resource_already_exists_exception":
        return Conflict(message)
    if kind == "invalid_index_name_exception" and "already exists" in reason:
        return Conflict(message)
    if kind == "invalid_alias_name_exception" and "same name" in reason:
        return Conflict(message)
    if status in (401, 403):
        return ConfigurationError(f"ElasticsearchEngine credentials (api_key/username/password) refused: {message}")
    if status == 406:
        return ConfigurationError(
            "the server refused Elasticsearch's media types; set ElasticsearchEngine.vendor_media_types "
            f"to False for an OpenSearch-compatible server ({message})"
        )
    if status == 429 or status >= 500:
        return EngineUnavailable(f"Elasticsearch answered {status}: {message}")
    return InvalidInput(message)


class _Live(LiveState):
    """The live client; never pickled or deep-copied with the block (a copy connects anew)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Elasticsearch | None = None


# --- the block ---------------------------------------------------------------------------------


class ElasticsearchEngine(Block, SearchEngine):
    """An Elasticsearch 8 cluster (or an OpenSearch-compatible server) that Sluice indexes into."""

    _block_type_name = "Elasticsearch Engine"

    url: str = Field(description="Cluster URL, e.g. https://search.example.org:9200 (no credentials in it).")
    api_key: SecretStr | None = Field(
        default=None, description="API key (base64 'id:key'); use it or username/password."
    )
    username: str | None = Field(default=None, description="User for basic authentication.")
    password: SecretStr | None = Field(default=None, description="Password for basic authentication.")
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")
    request_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one request.")
    copy_requests_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Throttle for index copies such as the filtered index (documents/s); unset: as fast as "
        "the cluster goes. Keeps a big copy from pinning the cluster's CPU while it serves searches.",
    )
    vendor_media_types: bool = Field(
        default=True,
        description=(
            "Send Elasticsearch's versioned media types (application/vnd.elasticsearch+json; "
            "compatible-with=8). Set to False for an OpenSearch-compatible server, which only "
            "accepts plain application/json."
        ),
    )

    _live: _Live = PrivateAttr(default_factory=_Live)

    # --- connection ---

    def _client(self) -> Elasticsearch:
        live = self._live
        with live.lock:
            if live.client is None:
                live.client = self._build_client()
            return live.client

    def _build_client(self) -> Elasticsearch:
        if not self.url.strip():
            raise ConfigurationError("ElasticsearchEngine.url is empty")
        if "@" in urlsplit(self.url.strip()).netloc:
            # The URL is shown in logs and block listings; credentials belong in the secret fields.
            raise ConfigurationError(
                "ElasticsearchEngine.url must not hold credentials; use api_key or username/password"
            )
        if self.api_key is not None and (self.username or self.password is not None):
            raise ConfigurationError("ElasticsearchEngine: set api_key or username/password, not both")
        if bool(self.username) != (self.password is not None):
            raise ConfigurationError("ElasticsearchEngine: username and password go together")
        kwargs: dict[str, Any] = {
            "hosts": [self.url],
            "verify_certs": self.verify_certs,
            "request_timeout": self.request_timeout,
        }
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.username and self.password is not None:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value())
        if not self.vendor_media_types:
            kwargs["node_class"] = PlainJsonNode
        try:
            return Elasticsearch(**kwargs)
        except ValueError as e:
            raise ConfigurationError(f"ElasticsearchEngine.url {self.url!r}: {e}") from None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ApiError as e:
            raise translate_api_error(e) from e
        except SerializationError as e:
            raise InvalidInput(f"cannot serialise the request: {e}") from e
        except TlsError as e:
            raise ConfigurationError(f"TLS to {self.url} failed (see verify_certs): {e}") from e
        except TransportError as e:
            raise EngineUnavailable(f"Elasticsearch at {self.url} unreachable: {e}") from e

    def close(self) -> None:
        live = self._live
        with live.lock:
            client, live.client = live.client, None
        if client is not None:
            client.close()

    # --- indices ---

    def ping(self) -> bool:
        try:
            return bool(self._client().ping())  # the client answers False when unreachable
        except ConfigurationError:
            return False

    def _concrete_aliases(self) -> dict[str, list[str]]:
        """Every concrete index and its aliases."""
        with self._errors():
            body = self._client().indices.get_alias(index="*").body
        return {name: sorted(info.get("aliases", {})) for name, info in body.items()}

    def create_index(self, name: str, mappings: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        with self._errors():
            self._client().indices.create(index=name, mappings=mappings, settings=settings or None)

    def delete_index(self, name: str) -> None:
        if not name or name.startswith("_") or _WILDCARD_CHARS & set(name):
            raise InvalidInput(f"not an index name: {name!r}")
        with self._errors():
            client = self._client()
            # Checked here: some servers delete every index behind an alias name.
            if client.indices.exists_alias(name=name):
                raise Conflict(f"[{name}] is an alias; delete its indices by their own names")
            client.indices.delete(index=name)

    def index_exists(self, name: str) -> bool:
        if not name or _WILDCARD_CHARS & set(name):
            return False
        try:
            with self._errors():
                body = self._client().indices.get_alias(index=name).body
        except NotFound:
            return False
        return name in body

    def list_indices(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._concrete_aliases() if n.startswith(prefix))

    def get_aliases(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for index, aliases in self._concrete_aliases().items():
            for alias in aliases:
                out.setdefault(alias, []).append(index)
        return {alias: sorted(indices) for alias, indices in sorted(out.items())}

    def update_aliases(self, actions: Iterable[AliasAction]) -> None:
        actions = list(actions)
        if not actions:
            return
        # Validated against the current state first so both engines refuse the same things.
        state = {index: set(aliases) for index, aliases in self._concrete_aliases().items()}
        body = []
        for action in actions:
            if action.op not in ("add", "remove"):
                raise InvalidInput(f"alias action must be 'add' or 'remove', not {action.op!r}")
            if action.alias in state:
                raise Conflict(f"alias name [{action.alias}] is an index")
            if action.index not in state:
                raise NotFound(f"no such index [{action.index}]")
            if action.op == "add":
                state[action.index].add(action.alias)
            elif action.alias in state[action.index]:
                state[action.index].discard(action.alias)
            else:
                raise NotFound(f"alias [{action.alias}] is not on index [{action.index}]")
            body.append({action.op: {"index": action.index, "alias": action.alias}})
        with self._errors():
            self._client().indices.update_aliases(actions=body)

    def put_settings(self, index: str, settings: dict[str, Any]) -> None:
        with self._errors():
            self._client().indices.put_settings(index=index, settings=settings)

    def refresh(self, index: str) -> None:
        with self._errors():
            self._client().indices.refresh(index=index)

    # --- documents ---

    def bulk(self, index: str, actions: Iterable[BulkAction]) -> BulkResult:
        result = BulkResult()

        def es_actions() -> Iterator[dict[str, Any]]:
            for action in actions:
                problem = _invalid_action(action)
                if problem:
                    result.errors.append(BulkError(id=str(action.id), status=400, reason=problem))
                elif action.op == "index":
                    yield {"_op_type": "index", "_index": index, "_id": action.id, "_source": action.doc}
                elif action.op == "update":
                    yield {
                        "_op_type": "update",
                        "_index": index,
                        "_id": action.id,
                        "doc": action.doc,
                        "doc_as_upsert": action.upsert,
                    }
                else:
                    yield {"_op_type": "delete", "_index": index, "_id": action.id}

        with self._errors():
            client = self._client()
            # Elasticsearch would create a missing index with guessed mappings.
            if not client.indices.exists(index=index):
                raise NotFound(f"no such index [{index}]")
            # raise_on_exception: a failed request (5xx, unreachable) raises for the caller to retry;
            # raise_on_error=False: every failed document comes back in the items.
            for ok, item in helpers.streaming_bulk(
                client, es_actions(), raise_on_error=False, raise_on_exception=True, max_retries=0
            ):
                op, info = next(iter(item.items()))
                status = int(info.get("status", 500))
                # A delete of a missing document leaves the wanted state: not a failure.
                if ok or (op == "delete" and status == 404 and "error" not in info):
                    result.succeeded += 1
                else:
                    result.errors.append(BulkError(id=str(info.get("_id")), status=status, reason=_item_reason(info)))
        return result

    def count(self, index: str, query: Query | None = None) -> int:
        with self._errors():
            if query is None:
                return int(self._client().count(index=index)["count"])
            return int(self._client().count(index=index, query=query_to_dsl(query))["count"])

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            with self._errors():
                return self._client().get(index=index, id=doc_id)["_source"]
        except NotFound as e:
            body = getattr(e.__cause__, "body", None)
            if isinstance(body, dict) and body.get("found") is False:
                return None
            raise

    def search(self, index: str, query: Query) -> SearchResult:
        kwargs: dict[str, Any] = {
            "index": index,
            "query": query_to_dsl(query),
            "from_": query.offset,
            "size": query.limit,
            "track_total_hits": True,
        }
        if query.sort:
            kwargs["sort"] = sort_to_dsl(query)
            kwargs["track_scores"] = True
        with self._errors():
            body = self._client().search(**kwargs).body
        hits = body["hits"]
        return SearchResult(total=int(hits["total"]["value"]), hits=[_hit(h) for h in hits["hits"]])

    def copy_index(self, source: str, dest: str, exclude: Iterable[Filter] = ()) -> int:
        if source == dest:
            raise InvalidInput("copy_index: source and dest are the same index")
        query = query_to_dsl(Query(exclude=tuple(exclude)))
        with self._errors():
            client = self._client()
            # _reindex would create a missing dest with guessed mappings.
            if not client.indices.exists(index=dest):
                raise NotFound(f"no such index [{dest}]")
            body = (
                client.options(request_timeout=max(COPY_TIMEOUT, self.request_timeout))
                .reindex(
                    source={"index": source, "query": query},
                    dest={"index": dest},
                    wait_for_completion=True,
                    refresh=True,
                    **({"requests_per_second": self.copy_requests_per_second} if self.copy_requests_per_second else {}),
                )
                .body
            )
        failures = body.get("failures") or []
        if failures:
            first = failures[0]
            status = int(first.get("status", 500))
            cause = first.get("cause") or {}
            message = (
                f"copy {source} -> {dest}: {len(failures)} failure(s), first: "
                f"{cause.get('type', '')}: {cause.get('reason', first)}"
            )
            if status == 409:
                raise Conflict(message)
            raise EngineUnavailable(message) if status >= 500 or status == 429 else InvalidInput(message)
        if body.get("timed_out"):
            raise EngineUnavailable(f"copy {source} -> {dest} timed out on the server")
        return int(body.get("created", 0)) + int(body.get("updated", 0))

    def scan(self, index: str, batch_size: int = 1000) -> Iterator[list[Hit]]:
        batch: list[Hit] = []
        with self._errors():
            for doc in helpers.scan(self._client(), index=index, query={"query": {"match_all": {}}}, size=batch_size):
                batch.append(_hit(doc))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch


def _invalid_action(action: BulkAction) -> str | None:
    if not isinstance(action.id, str) or not action.id or len(action.id.encode()) > 512:
        return "document id must be a non-empty string of at most 512 bytes"
    if action.op not in ("index", "update", "delete"):
        return f"unknown bulk op {action.op!r}"
    if action.op != "delete" and not isinstance(action.doc, dict):
        return f"{action.op} needs a document"
    return None


def _item_reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', '')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return reason
    return str(error or info.get("result") or "failed")


def _hit(doc: dict[str, Any]) -> Hit:
    return Hit(id=str(doc["_id"]), score=float(doc.get("_score") or 0.0), source=doc.get("_source") or {})
