"""Turning source rows into destination records: column types (a CSV source's ``mapping``), the
record id (``uniqueIDColumn``) and removed attributes (a destination's ``attributesToExclude``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

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

    def records(self, rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """The records of a chunk, and one message per row that failed."""
        done, failed = [], []
        for number, row in enumerate(rows):
            try:
                done.append(self.record(row))
            except RecordError as exc:
                failed.append(f"row {number}: {exc}")
        return done, failed


def _plain(value: Any) -> Any:
    """pandas' missing values as None; everything else as read."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
