"""Shaping records: CSV mapping types, the record id, and attributesToExclude paths."""

from __future__ import annotations

import pytest

from tasks.transform import RecordError, Transform, convert


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [("42", "integer", 42), ("4.0", "integer", 4), ("2.5", "float", 2.5), ("TRUE", "boolean", True),
     ("no", "boolean", False), ('{"a": [1]}', "json", {"a": [1]}), ("x", "string", "x"), (None, "integer", None)],
)  # fmt: skip
def test_convert_reads_each_mapping_type(value, kind, expected):
    assert convert(value, kind) == expected


@pytest.mark.parametrize(("value", "kind"), [("4.5", "integer"), ("abc", "float"), ("inf", "float"),
                                             ("maybe", "boolean"), ("{", "json")])  # fmt: skip
def test_convert_refuses_what_is_not_of_the_type(value, kind):
    with pytest.raises(RecordError, match=kind):
        convert(value, kind)


def test_record_id_types_and_excluded_paths():
    shape = Transform(mapping={"price": "float", "tags": "json"}, unique_id_column="sku",
                      exclude=["meta.secret", "tags.[0].internal", "variants.[*].cost", "gone"])  # fmt: skip
    row = {"sku": "A-1", "price": "9.5", "tags": '[{"name": "x", "internal": 1}, {"name": "y", "internal": 2}]',
           "meta": {"secret": "s", "kept": "k"}, "variants": [{"cost": 1, "size": "M"}, {"cost": 2, "size": "L"}]}  # fmt: skip

    record = shape.record(row)

    assert record["objectID"] == "A-1" and record["price"] == 9.5
    assert record["meta"] == {"kept": "k"}
    assert record["tags"] == [{"name": "x"}, {"name": "y", "internal": 2}]
    assert record["variants"] == [{"size": "M"}, {"size": "L"}]


def test_records_reports_each_failed_row_and_keeps_the_rest():
    shape = Transform(mapping={"n": "integer"}, unique_id_column="id")

    done, failed = shape.records([{"id": "1", "n": "1"}, {"id": "", "n": "2"}, {"id": "3", "n": "x"}])

    assert [r["objectID"] for r in done] == ["1"]
    assert len(failed) == 2 and "uniqueIDColumn" in failed[0] and "integer" in failed[1]
