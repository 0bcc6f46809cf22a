"""The search-engine contract: what every engine Sluice supports must do alike.

Runs against the embedded engine, osmem-server (through the real elasticsearch client) and a
real cluster when ELASTICSEARCH_URL is set (see ``any_engine`` in tests/conftest.py).
"""

from __future__ import annotations

import pytest

from blocks.search_engine import ElasticsearchEngine, EmbeddedEngine
from sluice.errors import Conflict, EngineUnavailable, NotFound
from sluice.search import (
    AliasAction,
    BulkAction,
    Phrase,
    Query,
    Range,
    SearchEngine,
    Term,
)
from tests.conftest import free_port

# Openverse-style index. The possessive_english stemmer is left out of the analyzer: osmem-server
# accepts it but then matches every document for any query on the field (its bug, not ours).
SETTINGS = {
    "analysis": {
        "filter": {
            "english_stop": {"type": "stop", "stopwords": "_english_"},
            "english_stemmer": {"type": "stemmer", "language": "english"},
        },
        "analyzer": {
            "custom_english": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "english_stop", "english_stemmer"],
            }
        },
    }
}
MAPPINGS = {
    "properties": {
        "id": {"type": "long"},
        "identifier": {"type": "keyword"},
        "title": {
            "type": "text",
            "analyzer": "custom_english",
            "fields": {"keyword": {"type": "keyword", "ignore_above": 256}, "raw": {"type": "text"}},
        },
        "description": {"type": "text", "analyzer": "custom_english", "fields": {"raw": {"type": "text"}}},
        "tags": {
            "properties": {
                "name": {
                    "type": "text",
                    "analyzer": "custom_english",
                    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}, "raw": {"type": "text"}},
                },
                "accuracy": {"type": "float"},
            }
        },
        "mature": {"type": "boolean"},
        "created_on": {"type": "date"},
        "provider": {"type": "keyword"},
        "license": {"type": "keyword"},
    }
}
RAW_FIELDS = ("title.raw", "description.raw", "tags.name.raw")


def _doc(i, title, description, tags, mature, created_on, provider, license_):
    return {
        "id": i,
        "identifier": f"img-{i}",
        "title": title,
        "description": description,
        "tags": [{"name": name, "accuracy": accuracy} for name, accuracy in tags],
        "mature": mature,
        "created_on": created_on,
        "provider": provider,
        "license": license_,
    }


DOCS = {
    "1": _doc(
        1,
        "A dog running in the park",
        "Happy puppy plays fetch",
        [("Dog", 0.95), ("Park", 0.8)],
        False,
        "2020-01-15T10:00:00Z",
        "flickr",
        "by",
    ),
    "2": _doc(
        2,
        "Sleeping cat on a sofa",
        "A lazy cat naps all afternoon",
        [("Cat", 0.97), ("Sofa", 0.6)],
        False,
        "2021-03-01T12:00:00Z",
        "wikimedia",
        "cc0",
    ),
    "3": _doc(
        3,
        "Mountain sunset",
        "Orange sky over the peaks",
        [("Mountain", 0.9), ("Sunset", 0.85)],
        True,
        "2022-07-04T18:30:00Z",
        "flickr",
        "by-sa",
    ),
    "4": _doc(
        4,
        "Beach at noon",
        "Two dogs run on the sand",
        [("Beach", 0.99), ("Dog", 0.7)],
        False,
        "2023-05-20T09:15:00Z",
        "smithsonian",
        "cc0",
    ),
    "5": _doc(
        5,
        "City street at night",
        "Neon signs and wet asphalt",
        [("City", 0.88), ("Night", 0.5)],
        False,
        "2019-11-30T23:00:00Z",
        "wikimedia",
        "by",
    ),
    "6": _doc(
        6,
        "Seagulls",
        "Birds circling near the beach",
        [("Bird", 0.92)],
        False,
        "2024-02-29T07:00:00Z",
        "smithsonian",
        "by-nc",
    ),
}


def ids(result) -> set[str]:
    return {hit.id for hit in result.hits}


def load(engine: SearchEngine, name: str = "sluice-test-a", docs: dict | None = None) -> str:
    engine.create_index(name, MAPPINGS, SETTINGS)
    result = engine.bulk(name, [BulkAction("index", i, d) for i, d in (docs or DOCS).items()])
    assert result.errors == []
    engine.refresh(name)
    return name


@pytest.fixture
def loaded(any_engine: SearchEngine) -> tuple[SearchEngine, str]:
    return any_engine, load(any_engine)


# --- indices -------------------------------------------------------------------------------------


def test_ping(any_engine):
    assert any_engine.ping() is True


def test_create_exists_list_delete(any_engine):
    any_engine.create_index("sluice-test-b", MAPPINGS, SETTINGS)
    any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)
    assert any_engine.index_exists("sluice-test-a")
    assert not any_engine.index_exists("sluice-test-zzz")
    assert any_engine.list_indices("sluice-test-") == ["sluice-test-a", "sluice-test-b"]
    assert any_engine.list_indices("sluice-test-b") == ["sluice-test-b"]
    any_engine.delete_index("sluice-test-a")
    assert not any_engine.index_exists("sluice-test-a")
    assert any_engine.list_indices("sluice-test-") == ["sluice-test-b"]


def test_create_over_existing_is_conflict(any_engine):
    any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)
    with pytest.raises(Conflict):
        any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)


def test_delete_missing_is_not_found(any_engine):
    with pytest.raises(NotFound):
        any_engine.delete_index("sluice-test-missing")


def test_delete_alias_name_is_conflict_and_deletes_nothing(loaded):
    engine, name = loaded
    engine.update_aliases([AliasAction("add", name, "sluice-test-alias")])
    with pytest.raises(Conflict):
        engine.delete_index("sluice-test-alias")
    assert engine.index_exists(name)
    assert not engine.index_exists("sluice-test-alias")  # an alias is not an index
    assert engine.get_aliases()["sluice-test-alias"] == [name]
    assert engine.count("sluice-test-alias") == len(DOCS)


def test_delete_index_drops_its_aliases(loaded):
    engine, name = loaded
    engine.update_aliases([AliasAction("add", name, "sluice-test-alias")])
    engine.delete_index(name)
    assert "sluice-test-alias" not in engine.get_aliases()


def test_put_settings_then_write_and_refresh(any_engine):
    any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)
    any_engine.put_settings("sluice-test-a", {"index": {"refresh_interval": "-1", "number_of_replicas": 0}})
    any_engine.bulk("sluice-test-a", [BulkAction("index", "1", DOCS["1"])])
    any_engine.refresh("sluice-test-a")
    assert any_engine.count("sluice-test-a") == 1
    with pytest.raises(NotFound):
        any_engine.put_settings("sluice-test-missing", {"index": {"number_of_replicas": 0}})


def test_reads_of_missing_index_are_not_found(any_engine):
    for call in (
        lambda: any_engine.count("sluice-test-missing"),
        lambda: any_engine.search("sluice-test-missing", Query()),
        lambda: any_engine.get("sluice-test-missing", "1"),
        lambda: any_engine.bulk("sluice-test-missing", [BulkAction("index", "1", {"id": 1})]),
    ):
        with pytest.raises(NotFound):
            call()
    assert not any_engine.index_exists("sluice-test-missing")  # bulk did not create it


# --- documents -----------------------------------------------------------------------------------


def test_bulk_index_update_delete(loaded):
    engine, name = loaded
    result = engine.bulk(
        name,
        [
            BulkAction("update", "1", {"title": "A dog sleeping", "tags": [{"name": "Dog", "accuracy": 0.5}]}),
            BulkAction("update", "7", {"id": 7, "title": "Upserted"}, upsert=True),
            BulkAction("update", "8", {"title": "Nowhere"}),
            BulkAction("delete", "2"),
            BulkAction("delete", "does-not-exist"),
            BulkAction("index", "3", {"id": 3, "title": "Replaced"}),
        ],
    )
    assert result.succeeded == 5
    assert [(e.id, e.status) for e in result.errors] == [("8", 404)]
    engine.refresh(name)
    assert engine.count(name) == len(DOCS)  # +7 -2
    updated = engine.get(name, "1")
    assert updated["title"] == "A dog sleeping"
    assert updated["tags"] == [{"name": "Dog", "accuracy": 0.5}]
    assert updated["provider"] == "flickr"  # untouched by the partial update
    assert engine.get(name, "7") == {"id": 7, "title": "Upserted"}
    assert engine.get(name, "3") == {"id": 3, "title": "Replaced"}
    assert engine.get(name, "2") is None
    assert engine.get(name, "8") is None
    assert ids(engine.search(name, Query(text="sleeping"))) == {"1"}  # re-indexed text


def test_bulk_reports_bad_documents_and_stores_the_rest(any_engine):
    any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)
    result = any_engine.bulk(
        "sluice-test-a",
        [
            BulkAction("index", "good-1", DOCS["1"]),
            BulkAction("index", "bad-long", {"id": "not a number"}),
            BulkAction("index", "bad-bool", {"mature": "yes"}),
            BulkAction("index", "bad-date", {"created_on": "yesterday-ish"}),
            BulkAction("index", "bad-float", {"tags": [{"name": "x", "accuracy": "high"}]}),
            BulkAction("index", "good-2", DOCS["2"]),
            # Values Elasticsearch coerces are accepted by every engine.
            BulkAction(
                "index",
                "coerced",
                {"id": "42", "mature": "true", "created_on": "2021-06-01", "tags": {"name": "solo", "accuracy": "0.5"}},
            ),
        ],
    )
    assert sorted(e.id for e in result.errors) == ["bad-bool", "bad-date", "bad-float", "bad-long"]
    assert all(e.status == 400 and e.reason for e in result.errors)
    assert result.succeeded == 3
    any_engine.refresh("sluice-test-a")
    assert any_engine.count("sluice-test-a") == 3
    assert any_engine.get("sluice-test-a", "bad-long") is None


def test_strict_mapping_refuses_unknown_fields(any_engine):
    strict = {
        "dynamic": "strict",
        "properties": {"id": {"type": "long"}, "meta": {"properties": {"source": {"type": "keyword"}}}},
    }
    any_engine.create_index("sluice-test-strict", strict)
    result = any_engine.bulk(
        "sluice-test-strict",
        [
            BulkAction("index", "ok", {"id": 1, "meta": {"source": "x"}}),
            BulkAction("index", "top", {"id": 2, "extra": 1}),
            BulkAction("index", "nested", {"id": 3, "meta": {"other": "y"}}),
        ],
    )
    assert result.succeeded == 1
    assert sorted((e.id, e.status) for e in result.errors) == [("nested", 400), ("top", 400)]


def test_bad_partial_update_leaves_document_unchanged(loaded):
    engine, name = loaded
    result = engine.bulk(name, [BulkAction("update", "1", {"id": "nope", "title": "Changed"})])
    assert [(e.id, e.status) for e in result.errors] == [("1", 400)]
    assert engine.get(name, "1") == DOCS["1"]


# --- aliases -------------------------------------------------------------------------------------


def test_alias_repoint_is_atomic(any_engine):
    old = load(any_engine, "sluice-test-old")
    new = load(any_engine, "sluice-test-new", {"1": DOCS["1"]})
    any_engine.update_aliases([AliasAction("add", old, "sluice-test-live")])
    assert any_engine.count("sluice-test-live") == len(DOCS)
    any_engine.update_aliases(
        [
            AliasAction("remove", old, "sluice-test-live"),
            AliasAction("add", new, "sluice-test-live"),
        ]
    )
    assert any_engine.get_aliases()["sluice-test-live"] == [new]
    assert any_engine.resolve("sluice-test-live") == [new]
    assert any_engine.count("sluice-test-live") == 1


def test_alias_onto_missing_index_changes_nothing(loaded):
    engine, name = loaded
    engine.update_aliases([AliasAction("add", name, "sluice-test-live")])
    with pytest.raises(NotFound):
        engine.update_aliases(
            [
                AliasAction("remove", name, "sluice-test-live"),
                AliasAction("add", "sluice-test-missing", "sluice-test-live"),
            ]
        )
    assert engine.get_aliases()["sluice-test-live"] == [name]


def test_alias_name_taken_by_index_is_conflict(any_engine):
    a = load(any_engine, "sluice-test-a")
    any_engine.create_index("sluice-test-b", MAPPINGS, SETTINGS)
    with pytest.raises(Conflict):
        any_engine.update_aliases([AliasAction("add", a, "sluice-test-b")])
    assert any_engine.get_aliases() == {}
    any_engine.update_aliases([AliasAction("add", a, "sluice-test-live")])
    with pytest.raises(Conflict):  # and an index cannot take an alias's name
        any_engine.create_index("sluice-test-live", MAPPINGS, SETTINGS)


def test_count_search_get_through_alias(loaded):
    engine, name = loaded
    engine.update_aliases([AliasAction("add", name, "sluice-test-live")])
    assert engine.count("sluice-test-live") == len(DOCS)
    assert engine.count("sluice-test-live", Query(filters=(Term("provider", "flickr"),))) == 2
    assert ids(engine.search("sluice-test-live", Query(text="cat"))) == {"2"}
    assert engine.get("sluice-test-live", "3")["title"] == "Mountain sunset"


# --- search --------------------------------------------------------------------------------------


def test_text_search_ranks_matching_documents_first(loaded):
    engine, name = loaded
    result = engine.search(name, Query(text="beach"))
    # Beach in title and tags beats beach only in the description; others do not match.
    assert [hit.id for hit in result.hits] == ["4", "6"]
    assert result.total == 2
    assert result.hits[0].score > result.hits[1].score > 0


def test_text_search_stems_main_fields(loaded):
    engine, name = loaded
    # "runs" finds "running" (doc 1) and "run" (doc 4); "dogs" finds "dog".
    assert ids(engine.search(name, Query(text="runs", fields=("title", "description")))) == {"1", "4"}
    assert ids(engine.search(name, Query(text="dogs", fields=("title",)))) == {"1"}
    assert ids(engine.search(name, Query(text="puppies"))) == {"1"}


def test_text_search_restricted_to_fields(loaded):
    engine, name = loaded
    assert ids(engine.search(name, Query(text="dog", fields=("title",)))) == {"1"}
    assert ids(engine.search(name, Query(text="dog", fields=("tags.name",)))) == {"1", "4"}


def test_text_search_survives_query_syntax(loaded):
    engine, name = loaded
    for text in ['"unbalanced', "cat AND (", "NEAR(dog", "title:cat", "* ^ - +", 'cat"*', "cat\x00dog"]:
        result = engine.search(name, Query(text=text))
        assert result.total >= 0
    assert ids(engine.search(name, Query(text='cat" OR "dog'))) >= {"2"}


def test_term_and_range_filters(loaded):
    engine, name = loaded

    def found(*filters):
        return ids(engine.search(name, Query(filters=filters, limit=100)))

    assert found(Term("provider", "flickr")) == {"1", "3"}
    assert found(Term("provider", ["flickr", "smithsonian"])) == {"1", "3", "4", "6"}
    assert found(Term("mature", True)) == {"3"}
    assert found(Term("mature", False)) == {"1", "2", "4", "5", "6"}
    assert found(Term("title.keyword", "Mountain sunset")) == {"3"}
    assert found(Term("tags.name.keyword", "Dog")) == {"1", "4"}
    assert found(Term("id", 5)) == {"5"}
    assert found(Range("created_on", gte="2021-03-01")) == {"2", "3", "4", "6"}
    assert found(Range("created_on", gte="2021-01-01", lt="2021-03-01")) == set()
    assert found(Range("created_on", gt="2021-03-01T12:00:00Z", lte="2023-05-20T09:15:00Z")) == {"3", "4"}
    assert found(Range("id", gt=2, lte=4)) == {"3", "4"}
    assert found(Range("tags.accuracy", gte=0.95)) == {"1", "2", "4"}
    assert found(Term("provider", "flickr"), Range("id", gte=2)) == {"3"}
    assert ids(engine.search(name, Query(text="dog", filters=(Term("provider", "smithsonian"),)))) == {"4"}
    assert engine.count(name, Query(filters=(Term("license", "cc0"),))) == 2


def test_exclude(loaded):
    engine, name = loaded
    query = Query(exclude=(Term("provider", "flickr"), Range("id", gte=6)), limit=100)
    assert ids(engine.search(name, query)) == {"2", "4", "5"}
    assert engine.count(name, query) == 3
    assert ids(engine.search(name, Query(text="dog", exclude=(Term("mature", True), Term("id", 4))))) == {"1"}


def test_paging_sort_and_total(loaded):
    engine, name = loaded
    page = engine.search(name, Query(sort=(("id", "asc"),), offset=2, limit=2))
    assert [hit.id for hit in page.hits] == ["3", "4"]
    assert page.total == len(DOCS)
    newest = engine.search(name, Query(sort=(("created_on", "desc"),), limit=3))
    assert [hit.id for hit in newest.hits] == ["6", "4", "3"]
    beyond = engine.search(name, Query(offset=50, limit=10))
    assert beyond.hits == [] and beyond.total == len(DOCS)
    everything = engine.search(name, Query(limit=100))
    assert ids(everything) == set(DOCS) and all(hit.score == 1.0 for hit in everything.hits)
    assert everything.hits[0].source == DOCS[everything.hits[0].id]


def test_phrase_across_raw_fields_case_insensitive(loaded):
    engine, name = loaded

    def found(*phrases):
        return ids(engine.search(name, Query(filters=(Phrase(RAW_FIELDS, phrases),), limit=100)))

    assert found("DOG RUNNING") == {"1"}  # title.raw
    assert found("lazy cat") == {"2"}  # description.raw
    assert found("mountain") == {"3"}  # title.raw and tags.name.raw
    assert found("NIGHT") == {"5"}  # tags.name.raw only
    assert found("dogs run") == {"4"}
    assert found("dog run") == set()  # raw fields are not stemmed
    assert found("beach dog") == set()  # a phrase does not span two tags
    assert found("running dog", "cat naps", "neon signs") == {"2", "5"}
    excluded = engine.search(name, Query(exclude=(Phrase(RAW_FIELDS, ("Sofa", "sunset")),), limit=100))
    assert ids(excluded) == {"1", "4", "5", "6"}


def test_many_phrases_are_chunked(loaded):
    engine, name = loaded
    phrases = tuple(f"zzq{i} nothing" for i in range(1199)) + ("lazy cat",)
    assert ids(engine.search(name, Query(filters=(Phrase(RAW_FIELDS, phrases),)))) == {"2"}
    kept = engine.search(name, Query(exclude=(Phrase(RAW_FIELDS, phrases),), limit=100))
    assert ids(kept) == set(DOCS) - {"2"}


# --- copy and scan -------------------------------------------------------------------------------


def test_copy_index_with_exclude(loaded):
    engine, source = loaded
    engine.create_index("sluice-test-dest", MAPPINGS, SETTINGS)
    exclude = (Term("provider", "wikimedia"), Phrase(RAW_FIELDS, ("mountain sunset",)))
    copied = engine.copy_index(source, "sluice-test-dest", exclude)
    assert copied == 3
    assert engine.count("sluice-test-dest") == 3
    kept = engine.search("sluice-test-dest", Query(limit=100))
    assert ids(kept) == {"1", "4", "6"}
    assert {hit.id: hit.source for hit in kept.hits} == {i: DOCS[i] for i in ("1", "4", "6")}
    # The copy is searchable like the source: text, phrases, filters.
    assert ids(engine.search("sluice-test-dest", Query(text="dogs"))) == {"1", "4"}
    assert ids(engine.search("sluice-test-dest", Query(filters=(Phrase(RAW_FIELDS, ("two dogs",)),)))) == {"4"}
    assert engine.count(source) == len(DOCS)


def test_copy_index_from_alias_into_nonempty_index(loaded):
    engine, source = loaded
    engine.update_aliases([AliasAction("add", source, "sluice-test-live")])
    dest = load(engine, "sluice-test-dest", {"1": {"id": 1, "title": "Old copy"}, "99": {"id": 99}})
    assert engine.copy_index("sluice-test-live", dest) == len(DOCS)
    assert engine.count(dest) == len(DOCS) + 1
    assert engine.get(dest, "1") == DOCS["1"]
    assert ids(engine.search(dest, Query(text="copy"))) == set()  # stale text is gone


def test_copy_index_into_missing_dest_is_not_found(loaded):
    engine, source = loaded
    with pytest.raises(NotFound):
        engine.copy_index(source, "sluice-test-missing")
    assert not engine.index_exists("sluice-test-missing")


def test_scan_returns_every_document(any_engine):
    any_engine.create_index("sluice-test-a", MAPPINGS, SETTINGS)
    docs = {str(i): {"id": i, "title": f"photo {i}"} for i in range(2500)}
    assert any_engine.bulk("sluice-test-a", [BulkAction("index", k, v) for k, v in docs.items()]).errors == []
    any_engine.refresh("sluice-test-a")
    batches = list(any_engine.scan("sluice-test-a", batch_size=1000))
    assert sorted(len(b) for b in batches) == [500, 1000, 1000]
    assert {hit.id: hit.source for batch in batches for hit in batch} == docs


# --- engine-specific -----------------------------------------------------------------------------


def test_embedded_engine_persists_across_instances(tmp_path):
    path = str(tmp_path / "search.sqlite3")
    first = EmbeddedEngine(path=path)
    load(first, "sluice-test-a")
    first.update_aliases([AliasAction("add", "sluice-test-a", "sluice-test-live")])
    first.close()
    second = EmbeddedEngine(path=path)
    try:
        assert second.list_indices() == ["sluice-test-a"]
        assert second.get_aliases() == {"sluice-test-live": ["sluice-test-a"]}
        assert second.count("sluice-test-live") == len(DOCS)
        assert ids(second.search("sluice-test-live", Query(text="sunset"))) == {"3"}
    finally:
        second.close()


def test_unreachable_elasticsearch_is_engine_unavailable():
    engine = ElasticsearchEngine(url=f"http://127.0.0.1:{free_port()}", request_timeout=5)
    try:
        assert engine.ping() is False
        for call in (
            lambda: engine.list_indices(),
            lambda: engine.create_index("sluice-test-a", MAPPINGS, SETTINGS),
            lambda: engine.bulk("sluice-test-a", [BulkAction("index", "1", {"id": 1})]),
            lambda: engine.search("sluice-test-a", Query(text="dog")),
            lambda: engine.count("sluice-test-a"),
            lambda: engine.update_aliases([AliasAction("add", "sluice-test-a", "sluice-test-live")]),
        ):
            with pytest.raises(EngineUnavailable):
                call()
    finally:
        engine.close()
