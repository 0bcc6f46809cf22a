"""Turning source rows into destination records: column types (a CSV source's ``mapping``), the
record id (``uniqueIDColumn``) and removed attributes (a destination's ``attributesToExclude``).

A chunk is a list of rows, or a DataFrame from a tabular source: then each mapped column is typed
in one vectorised pass, and only the cells that pass refuses go through ``convert`` one by one, so
both paths give the same records and the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

Chunk = list[dict[str, Any]] | pd.DataFrame

TRUE = frozenset({"true", "1", "yes", "y", "t"})
FALSE = frozenset({"false", "0", "no", "n", "f"})


class RecordError(ValueError):
    """One record cannot be transformed; the run counts it against its failure threshold."""


def convert(value: Any, kind: str) -> Any:
    """A CSV cell (a string, or None when empty) as ``kind``: string, integer, float, boolean, json."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    try:
        if kind == "string":
            return text
        if kind == "integer":
            number = float(text)
            if not number.is_integer():
                raise ValueError(f"{text!r} is not a whole number")
            return int(number)
        if kind == "float":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(f"{text!r} is not a finite number")
            return number
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered in TRUE:
                return True
            if lowered in FALSE:
                return False
            raise ValueError(f"{text!r} is not a boolean")
        if kind == "json":
            return orjson.loads(text)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise RecordError(f"not a {kind}: {exc}") from None
    raise RecordError(f"unknown mapping type {kind!r}")


def _parse_path(path: str) -> list[str | int | None]:
    """ "a.[0].b" -> ["a", 0, "b"]; "[*]" is None (every element)."""
    steps: list[str | int | None] = []
    for part in path.split("."):
        if part == "[*]":
            steps.append(None)
        elif part.startswith("[") and part.endswith("]"):
            steps.append(int(part[1:-1]))
        else:
            steps.append(part)
    return steps


def _remove(node: Any, steps: list[str | int | None]) -> None:
    head, rest = steps[0], steps[1:]
    if head is None:
        children = node if isinstance(node, list) else []
    elif isinstance(head, int):
        children = [node[head]] if isinstance(node, list) and -len(node) <= head < len(node) else []
    else:
        if not isinstance(node, dict) or head not in node:
            return
        if not rest:
            del node[head]
            return
        children = [node[head]]
    if not rest:  # "a.[0]" / "a.[*]": remove array elements themselves
        if isinstance(node, list):
            if head is None:
                node.clear()
            elif children:
                del node[head]
        return
    for child in children:
        _remove(child, rest)


@dataclass
class Transform:
    """How every record of a run is shaped."""

    mapping: dict[str, str] = field(default_factory=dict)
    unique_id_column: str | None = None
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._paths = [_parse_path(p) for p in self.exclude]

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """One destination record; its id is ``objectID`` (from ``uniqueIDColumn`` when set)."""
        record = {key: convert(value, self.mapping[key]) if key in self.mapping else _plain(value)
                  for key, value in row.items()}  # fmt: skip
        if self.unique_id_column is not None:
            object_id = record.get(self.unique_id_column)
            if object_id is None or object_id == "":
                raise RecordError(f"no value in the uniqueIDColumn {self.unique_id_column!r}")
            record["objectID"] = str(object_id)
        for steps in self._paths:
            _remove(record, steps)
        return record

    def records(self, chunk: Chunk | Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """The records of a chunk, and one message per row that failed."""
        if isinstance(chunk, pd.DataFrame):
            return self._frame_records(chunk)
        done, failed = [], []
        for number, row in enumerate(chunk):
            try:
                done.append(self.record(row))
            except RecordError as exc:
                failed.append(f"row {number}: {exc}")
        return done, failed

    def _frame_records(self, frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
        errors: dict[int, str] = {}  # row number -> its first error
        columns: dict[str, list[Any]] = {}
        for name in frame.columns:
            kind = self.mapping.get(name)
            columns[name] = _typed(frame[name], kind, errors) if kind else _cells(frame[name])
        if self.unique_id_column is not None:
            ids = columns.get(self.unique_id_column) or [None] * len(frame)
            for number, value in enumerate(ids):
                if value is None or value == "":
                    errors.setdefault(number, f"no value in the uniqueIDColumn {self.unique_id_column!r}")
            columns["objectID"] = [str(value) for value in ids]
        records = _zipped(columns)
        if errors:
            records = [record for number, record in enumerate(records) if number not in errors]
        for steps in self._paths:
            for record in records:
                _remove(record, steps)
        return records, [f"row {number}: {errors[number]}" for number in sorted(errors)]


def rows(chunk: Chunk) -> list[dict[str, Any]]:
    """A chunk as a list of rows, missing cells as None."""
    if isinstance(chunk, pd.DataFrame):
        return _zipped({name: _cells(chunk[name]) for name in chunk.columns})
    return chunk


def _zipped(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Columns of Python values as rows. (Not ``DataFrame.to_dict``: it re-boxes every cell, which
    costs more than all the typing.)"""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _cells(column: pd.Series) -> list[Any]:
    """A column's cells as Python values, missing ones (NaN to pandas) as None."""
    cells = column.to_numpy(dtype=object)
    missing = column.isna().to_numpy()
    if missing.any():
        cells = cells.copy()
        cells[missing] = None
    return cells.tolist()


def _typed(column: pd.Series, kind: str, errors: dict[int, str]) -> list[Any]:
    """``convert`` over a whole column: a vectorised pass, then ``convert`` for the cells it refused
    (Python's ``float`` reads some text pandas does not, e.g. ``1_000``). Errors go to ``errors``."""
    missing = column.isna().to_numpy()
    values = np.empty(len(column), dtype=object)
    if kind in ("integer", "float"):
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        fine = np.isfinite(numbers)
        if kind == "integer":  # beyond 2**53 a float is no longer exact: leave those to convert
            fine &= (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
            values[fine] = numbers[fine].astype(np.int64).tolist()
        else:
            values[fine] = numbers[fine].tolist()
    elif kind == "boolean" and not missing.all():  # a column of nothing but NaN has no .str
        lowered = column.str.strip().str.lower()
        truthy, falsy = lowered.isin(TRUE).to_numpy(), lowered.isin(FALSE).to_numpy()
        values[truthy], values[falsy] = True, False
        fine = truthy | falsy
    elif kind == "string":
        fine = ~missing
        values[fine] = column.to_numpy(dtype=object)[fine]
    else:  # json, or a kind convert will name as unknown
        fine = np.zeros(len(column), dtype=bool)
    values[missing] = None
    for number in np.flatnonzero(~fine & ~missing):
        try:
            values[number] = convert(column.iat[number], kind)
        except RecordError as exc:
            errors.setdefault(int(number), str(exc))
    return values.tolist()


def _plain(value: Any) -> Any:
    """pandas' missing values as None; everything else as read."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
