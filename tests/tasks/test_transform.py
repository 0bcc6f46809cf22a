"""Shaping records: CSV mapping types, the record id, and attributesToExclude paths."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.transform import RecordError, Transform, convert, rows


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


def test_a_dataframe_chunk_gives_the_same_records_and_errors_as_its_rows():
    """Tabular sources hand the transform DataFrames typed column by column; a user must get exactly
    what the row-by-row path gives, errors and all, including text pandas and Python read apart."""
    cells = {
        "sku": ["A", "B", None, "D", "E", "F", "G", "H"],
        "n": ["1", "4.0", "2", " 7 ", "1_000", "x", "9007199254740993", None],
        "price": ["2.5", "1e3", "inf", "3", "nan", "-0.5", None, "1,5"],
        "ok": ["TRUE", " no ", "y", "maybe", None, "0", "T", "f"],
        "meta": ['{"a": 1, "secret": 2}', "[1]", "{", None, "null", '{"secret": 1}', "{}", '"s"'],
        "label": ["x", None, "z", "", "w", "v", "u", "t"],
    }
    frame = pd.DataFrame(cells, dtype=object)
    shape = Transform(mapping={"n": "integer", "price": "float", "ok": "boolean", "meta": "json", "label": "string"},
                      unique_id_column="sku", exclude=["meta.secret"])  # fmt: skip

    from_frame = shape.records(frame)
    from_rows = shape.records(rows(frame))

    assert from_frame == from_rows
    records, errors = from_frame
    assert [r["objectID"] for r in records] == ["A", "B", "G"]
    assert [e.split(":")[0] for e in errors] == ["row 2", "row 3", "row 4", "row 5", "row 7"]
    assert records[0] == {"sku": "A", "n": 1, "price": 2.5, "ok": True, "meta": {"a": 1}, "label": "x", "objectID": "A"}
    assert records[1]["n"] == 4 and isinstance(records[1]["n"], int) and records[1]["price"] == 1000.0
    assert records[2]["n"] == int(float("9007199254740993")) and records[2]["price"] is None


def test_an_empty_or_all_missing_column_in_a_dataframe():
    frame = pd.DataFrame({"id": ["1", "2"], "flag": [None, None], "n": [None, None]}, dtype=object)
    shape = Transform(mapping={"flag": "boolean", "n": "integer"}, unique_id_column="id")

    assert shape.records(frame) == ([{"id": "1", "flag": None, "n": None, "objectID": "1"},
                                     {"id": "2", "flag": None, "n": None, "objectID": "2"}], [])  # fmt: skip
    assert shape.records(frame.iloc[0:0]) == ([], [])
