"""The search-engine blocks themselves: construction, secrets, settings, error translation, the
Elasticsearch DSL and the embedded engine's own guarantees. The behaviour both engines share is
in tests/search/test_contract.py."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect.blocks.core import Block

from blocks.elasticsearch import MAX_BOOL_CLAUSES, query_to_dsl
from blocks.embedded import _each_value, _typed, date_millis
from blocks.search_engine import ElasticsearchEngine, EmbeddedEngine, engine_from_settings
from sluice.errors import ConfigurationError, EngineUnavailable, InvalidInput
from sluice.search import BulkAction, Phrase, Query, Range, SearchEngine, Term
from sluice.settings import Settings

SECRET_KEY = "c2VjcmV0LWFwaS1rZXktdmFsdWU="
SECRET_PASSWORD = "hunter2-never-printed"


# --- construction and secrets --------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ElasticsearchEngine, EmbeddedEngine])
def test_blocks_are_search_engines_with_described_fields(cls):
    assert issubclass(cls, Block) and issubclass(cls, SearchEngine)
    assert not cls.__abstractmethods__
    assert cls.get_description()
    assert all(field.description for field in cls.model_fields.values())


def test_block_type_names():
    assert ElasticsearchEngine.get_block_type_name() == "Elasticsearch Engine"
    assert EmbeddedEngine.get_block_type_name() == "Embedded Search Engine"


def test_construction_does_not_connect(tmp_path):
    engine = ElasticsearchEngine(url="http://127.0.0.1:1")  # nothing listens there
    assert engine.request_timeout == 60.0 and engine.verify_certs and engine.vendor_media_types
    EmbeddedEngine(path=str(tmp_path / "never-created.sqlite3"))
    assert not (tmp_path / "never-created.sqlite3").exists()


def test_secrets_never_leak():
    engine = ElasticsearchEngine(url="https://es.example:9200", api_key=SECRET_KEY)
    basic = ElasticsearchEngine(url="https://es.example:9200", username="sluice", password=SECRET_PASSWORD)
    for block in (engine, basic):
        shown = [
            repr(block),
            str(block),
            str(block.model_dump()),
            block.model_dump_json(),
            json.dumps(block.model_dump(mode="json")),
        ]
        for text in shown:
            assert SECRET_KEY not in text and SECRET_PASSWORD not in text
    assert engine.api_key.get_secret_value() == SECRET_KEY


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"url": " "}, "url"),
        ({"url": "not a url at all"}, "url"),
        ({"url": "http://127.0.0.1:9", "username": "sluice"}, "password"),
        ({"url": "http://127.0.0.1:9", "password": SECRET_PASSWORD}, "password"),
        ({"url": "http://127.0.0.1:9", "api_key": SECRET_KEY, "username": "u", "password": "p"}, "api_key"),
        ({"url": f"https://sluice:{SECRET_PASSWORD}@es.example:9200"}, "credentials"),
    ],
)
def test_bad_configuration_is_configuration_error(fields, named):
    engine = ElasticsearchEngine(**fields)
    with pytest.raises(ConfigurationError, match=named) as caught:
        engine.list_indices()
    assert SECRET_KEY not in str(caught.value) and SECRET_PASSWORD not in str(caught.value)
    assert engine.ping() is False


def test_engines_pickle_and_deepcopy_without_their_connections(tmp_path):
    engine = EmbeddedEngine(path=str(tmp_path / "s.sqlite3"))
    engine.create_index("sluice-test-a", {"properties": {"title": {"type": "text"}}})
    for clone in (pickle.loads(pickle.dumps(engine)), copy.deepcopy(engine)):
        assert clone.list_indices() == ["sluice-test-a"]  # connects anew
        clone.close()
    assert engine.list_indices() == ["sluice-test-a"]
    engine.close()
    es = ElasticsearchEngine(url="http://127.0.0.1:9", api_key=SECRET_KEY)
    es._client()
    assert pickle.loads(pickle.dumps(es)).api_key.get_secret_value() == SECRET_KEY
    es.close()


# --- settings --------------------------------------------------------------------------------------


def test_engine_from_settings_defaults_to_embedded(tmp_path):
    settings = Settings(_env_file=None, DATA_DIR=tmp_path)
    engine = engine_from_settings(settings)
    assert isinstance(engine, EmbeddedEngine)
    assert engine.path == str(settings.search_path)


def test_engine_from_settings_uses_elasticsearch_when_configured(tmp_path):
    settings = Settings(
        _env_file=None,
        DATA_DIR=tmp_path,
        ELASTICSEARCH_URL="https://es.example:9200",
        ELASTICSEARCH_USERNAME="sluice",
        ELASTICSEARCH_PASSWORD=SECRET_PASSWORD,
        ELASTICSEARCH_VERIFY_CERTS=False,
        ELASTICSEARCH_TIMEOUT=12.5,
        ELASTICSEARCH_VENDOR_MEDIA_TYPES=False,
    )
    engine = engine_from_settings(settings)
    assert isinstance(engine, ElasticsearchEngine)
    assert (engine.url, engine.username, engine.verify_certs, engine.request_timeout, engine.vendor_media_types) == (
        "https://es.example:9200",
        "sluice",
        False,
        12.5,
        False,
    )
    assert engine.password.get_secret_value() == SECRET_PASSWORD
    assert engine.api_key is None


# --- Elasticsearch: error translation --------------------------------------------------------------


def test_vendor_media_types_refused_by_opensearch_server(osmem_url):
    engine = ElasticsearchEngine(url=osmem_url)  # vendor_media_types left True
    with pytest.raises(ConfigurationError, match="vendor_media_types"):
        engine.create_index("sluice-test-a", {"properties": {}})
    engine.close()


@pytest.fixture
def answering() -> Iterator[Callable[[int], str]]:
    """A local HTTP server answering every request with one status (HEAD says it is Elasticsearch)."""
    servers = []

    def start(status: int) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: bytes = b"") -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                self.send_response(code)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self):  # noqa: N802 - http.server's naming
                self._answer(200)

            def do_GET(self):  # noqa: N802
                body = {"error": {"type": "some_exception", "reason": "answered on purpose"}, "status": status}
                self._answer(status, json.dumps(body).encode())

            do_POST = do_PUT = do_DELETE = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "status, error",
    [
        (503, EngineUnavailable),
        (500, EngineUnavailable),
        (429, EngineUnavailable),
        (401, ConfigurationError),
        (400, InvalidInput),
    ],
)
def test_error_responses_are_translated(answering, status, error):
    engine = ElasticsearchEngine(url=answering(status))
    with pytest.raises(error):
        engine.search("sluice-test-a", Query(text="dog"))
    with pytest.raises(error):  # a failed bulk request raises: the caller retries the chunk
        engine.bulk("sluice-test-a", [BulkAction("index", "1", {"id": 1})])
    engine.close()


# --- Elasticsearch: the DSL -------------------------------------------------------------------------


def _bools(node) -> Iterator[dict]:
    if isinstance(node, dict):
        if "bool" in node:
            yield node["bool"]
        for value in node.values():
            yield from _bools(value)
    elif isinstance(node, list):
        for item in node:
            yield from _bools(item)


def _leaves(node, kind: str) -> int:
    if isinstance(node, dict):
        return (1 if kind in node else 0) + sum(_leaves(v, kind) for v in node.values())
    if isinstance(node, list):
        return sum(_leaves(v, kind) for v in node)
    return 0


def test_many_phrases_are_chunked_below_the_clause_limit():
    phrases = tuple(f"phrase {i}" for i in range(1200))
    fields = ("title.raw", "description.raw", "tags.name.raw")
    dsl = query_to_dsl(Query(filters=(Phrase(fields, phrases),), exclude=(Phrase(fields, phrases),)))
    assert _leaves(dsl, "match_phrase") == 2 * 3600
    for boolean in _bools(dsl):
        for clauses in boolean.values():
            if isinstance(clauses, list):
                assert len(clauses) <= MAX_BOOL_CLAUSES
    assert MAX_BOOL_CLAUSES <= 500


def test_query_translation():
    assert query_to_dsl(Query()) == {"match_all": {}}
    assert query_to_dsl(Query(text="  ")) == {"match_all": {}}
    dsl = query_to_dsl(
        Query(
            text="red fox",
            fields=("title", "description"),
            filters=(
                Term("provider", ["flickr", "wiki"]),
                Term("mature", False),
                Range("created_on", gte="2020-01-01"),
            ),
            exclude=(Term("license", "by-nd"), Phrase(("title.raw",), ("bad word",))),
        )
    )
    assert dsl == {
        "bool": {
            "must": [{"multi_match": {"query": "red fox", "lenient": True, "fields": ["title", "description"]}}],
            "filter": [
                {"terms": {"provider": ["flickr", "wiki"]}},
                {"term": {"mature": False}},
                {"range": {"created_on": {"gte": "2020-01-01"}}},
            ],
            "must_not": [{"term": {"license": "by-nd"}}, {"match_phrase": {"title.raw": "bad word"}}],
        }
    }
    assert query_to_dsl(Query(text="fox"))["multi_match"] == {"query": "fox", "lenient": True}
    assert query_to_dsl(Query(filters=(Phrase(("title.raw",), ()),)))["bool"]["filter"] == [{"match_none": {}}]


# --- embedded engine -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-15",
        "2020-01-15T10:00:00Z",
        "2020-01-15T10:00:00.123Z",
        "2020-01-15T10:00:00+02:00",
        "2020-01-15T10:00",
        "2020",
        "2020-06",
        "2020-01-15T10:00:00+0200",
        1579082400000,
        "1579082400000",
    ],
)
def test_embedded_date_comparison_in_sql_matches_python(tmp_path, value):
    engine = EmbeddedEngine(path=str(tmp_path / "s.sqlite3"))
    source, alias = _each_value(("d",))
    sql = f"SELECT {_typed('date', alias, None)} FROM (SELECT ? AS source) d, {source.text}"
    (got,) = engine._conn().execute(sql, [json.dumps({"d": value}), *source.params]).fetchone()
    assert date_millis(value) is not None
    assert got == date_millis(value)
    engine.close()


def test_embedded_refuses_bad_names_and_undefined_analyzers(tmp_path):
    engine = EmbeddedEngine(path=str(tmp_path / "s.sqlite3"))
    for name in ("Upper", "has space", "_leading", "a*b", "a,b", ""):
        with pytest.raises(InvalidInput):
            engine.create_index(name, {"properties": {}})
    with pytest.raises(InvalidInput, match="nope"):
        engine.create_index("sluice-test-a", {"properties": {"title": {"type": "text", "analyzer": "nope"}}})
    assert engine.list_indices() == []
    engine.close()


def test_embedded_unusable_path_is_configuration_error(tmp_path):
    engine = EmbeddedEngine(path=str(tmp_path))  # a directory
    with pytest.raises(ConfigurationError, match="path"):
        engine.list_indices()
    assert engine.ping() is False


def test_embedded_readers_see_committed_writes_while_another_instance_writes(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    writer, reader = EmbeddedEngine(path=path), EmbeddedEngine(path=path)
    writer.create_index("sluice-test-a", {"properties": {"title": {"type": "text"}, "n": {"type": "long"}}})
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for batch in range(10):
                result = writer.bulk(
                    "sluice-test-a",
                    [BulkAction("index", f"{batch}-{i}", {"title": f"photo {i}", "n": i}) for i in range(200)],
                )
                assert not result.errors
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    def read() -> None:
        try:
            last = 0
            while thread.is_alive():
                count = reader.count("sluice-test-a")
                assert count % 200 == 0  # whole bulk calls only: each is one transaction
                assert count >= last
                last = count
                reader.search("sluice-test-a", Query(text="photo", filters=(Range("n", gte=100),)))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    thread.join()
    for r in readers:
        r.join()
    assert errors == []
    assert reader.count("sluice-test-a") == 2000
    writer.close()
    reader.close()


WRITER = textwrap.dedent("""
    import sys
    from blocks.embedded import EmbeddedEngine
    from sluice.search import BulkAction
    engine = EmbeddedEngine(path=sys.argv[1])
    for batch in range(30):
        result = engine.bulk("sluice-test-a", [
            BulkAction("index", f"{batch}-{i}", {"title": f"photo {i}", "n": i}) for i in range(200)
        ])
        assert not result.errors, result.errors
    engine.close()
""")


def test_embedded_reader_process_and_writer_process_share_the_file(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    reader = EmbeddedEngine(path=path)
    reader.create_index("sluice-test-a", {"properties": {"title": {"type": "text"}, "n": {"type": "long"}}})
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path], cwd=Path(__file__).parents[2], stderr=subprocess.PIPE, text=True
    )
    counts = []
    while writer.poll() is None:
        counts.append(reader.count("sluice-test-a"))
        reader.search("sluice-test-a", Query(text="photo", filters=(Range("n", gte=100),)))
    assert writer.returncode == 0, writer.stderr.read()
    assert all(c % 200 == 0 for c in counts) and counts == sorted(counts)
    assert any(0 < c < 6000 for c in counts)  # read while the other process wrote
    assert reader.count("sluice-test-a") == 6000
    reader.close()


def test_embedded_copy_between_different_mappings_validates(tmp_path):
    engine = EmbeddedEngine(path=str(tmp_path / "s.sqlite3"))
    engine.create_index("sluice-test-src", {"properties": {"n": {"type": "keyword"}, "t": {"type": "text"}}})
    engine.create_index("sluice-test-ok", {"properties": {"t": {"type": "text", "analyzer": "english"}}})
    engine.create_index("sluice-test-num", {"properties": {"n": {"type": "long"}}})
    engine.bulk(
        "sluice-test-src",
        [BulkAction("index", "1", {"n": "7", "t": "Running dogs"}), BulkAction("index", "2", {"n": "x", "t": "cats"})],
    )
    assert engine.copy_index("sluice-test-src", "sluice-test-ok") == 2
    assert [h.id for h in engine.search("sluice-test-ok", Query(text="run")).hits] == ["1"]  # re-analysed
    with pytest.raises(InvalidInput, match="refused"):
        engine.copy_index("sluice-test-src", "sluice-test-num")
    assert engine.count("sluice-test-num") == 0  # all or nothing
    engine.close()


def test_embedded_path_parent_is_created(tmp_path):
    engine = EmbeddedEngine(path=str(tmp_path / "deep" / "er" / "s.sqlite3"))
    assert engine.ping()
    assert Path(engine.path).exists()
    engine.close()


def test_throttled_copy_still_copies_everything(osmem_url):
    engine = ElasticsearchEngine(url=osmem_url, vendor_media_types=False, copy_requests_per_second=500)
    engine.create_index("sluice-test-src", {"properties": {"n": {"type": "long"}}})
    engine.create_index("sluice-test-dst", {"properties": {"n": {"type": "long"}}})
    engine.bulk("sluice-test-src", [BulkAction("index", str(i), {"n": i}) for i in range(50)])
    engine.refresh("sluice-test-src")

    assert engine.copy_index("sluice-test-src", "sluice-test-dst") == 50
    assert engine.count("sluice-test-dst") == 50
    engine.close()
