"""Embedded adapter of the search-engine port: one SQLite file with FTS5, no server.

Layout: catalog tables ``sluice_index`` and ``sluice_alias``; per index a docs table (``id``,
JSON ``source``) and up to two FTS5 tables (rowid = the doc's rowid) over the text fields read
from the Elasticsearch mappings: stemmed (``porter``) for fields whose analyzer stems, plain
``unicode61`` for the rest (e.g. ``.raw`` sub-fields). Every operation is one transaction, so
the API process can read while a flow process writes (WAL, busy timeout).
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr

from blocks.live import LiveState
from sluice.errors import ConfigurationError, Conflict, EngineUnavailable, InvalidInput, NotFound
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

BUSY_TIMEOUT_MS = 30_000
STEM_TOKENIZER = "porter unicode61 remove_diacritics 2"
PLAIN_TOKENIZER = "unicode61 remove_diacritics 0"
# Joins the values of a multi-valued field: a token no text contains, so a phrase cannot span
# two values (Elasticsearch's position_increment_gap).
VALUE_GAP = " sluicevaluegap "

_CATALOG = """
CREATE TABLE IF NOT EXISTS sluice_index (
    name TEXT PRIMARY KEY,
    tbl TEXT NOT NULL UNIQUE,
    mappings TEXT NOT NULL,
    settings TEXT NOT NULL,
    layout TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sluice_alias (
    alias TEXT NOT NULL,
    index_name TEXT NOT NULL,
    PRIMARY KEY (alias, index_name)
);
"""

_BAD_NAME_CHARS = set(' "*\\<|,>/?#:')
_WORD = re.compile(r"\w")
_INTEGER_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsigned_long": (0, 2**64 - 1),
}
_FLOAT_TYPES = {"float", "double", "half_float", "scaled_float"}
_OBJECT_TYPES = {"object", "nested"}
_BUILTIN_ANALYZERS = {"standard", "simple", "whitespace", "stop", "keyword", "pattern", "fingerprint"}
_LANGUAGE_ANALYZERS = {
    "arabic",
    "armenian",
    "basque",
    "bengali",
    "brazilian",
    "bulgarian",
    "catalan",
    "cjk",
    "czech",
    "danish",
    "dutch",
    "english",
    "estonian",
    "finnish",
    "french",
    "galician",
    "german",
    "greek",
    "hindi",
    "hungarian",
    "indonesian",
    "irish",
    "italian",
    "latvian",
    "lithuanian",
    "norwegian",
    "persian",
    "portuguese",
    "romanian",
    "russian",
    "serbian",
    "sorani",
    "spanish",
    "swedish",
    "turkish",
    "thai",
}
_STEM_FILTER_TYPES = {"stemmer", "snowball", "porter_stem", "kstem", "hunspell"}


# --- names, dates, values ------------------------------------------------------------------------


def validate_name(name: str, what: str = "index") -> None:
    """Elasticsearch's rules for index and alias names."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name != name.lower()
        or name[0] in "-_+"
        or _BAD_NAME_CHARS & set(name)
        or len(name.encode()) > 255
    ):
        raise InvalidInput(
            f"invalid {what} name [{name}]: lowercase, at most 255 bytes, not starting with - _ +, "
            'and none of \\ / * ? " < > | , # : or space'
        )


_ISO_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def date_millis(value: Any) -> int | None:
    """Epoch milliseconds of a date as Elasticsearch's default format reads it
    (strict_date_optional_time, else epoch_millis); None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = _ISO_DATE.fullmatch(value.strip())
    if match is None:
        try:
            return int(value.strip())
        except ValueError:
            return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _number(value: Any) -> int | float | None:
    """A number as Elasticsearch coerces it (numbers and numeric strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            try:
                value = float(value.strip())
            except ValueError:
                return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if isinstance(value, int) else None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in ("true", "false", ""):
        return value == "true"
    return None


def _values_at(doc: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """Every leaf value at ``path``, through arrays of objects (as Elasticsearch flattens)."""
    current: list[Any] = [doc]
    for key in path:
        found: list[Any] = []
        for item in current:
            if isinstance(item, dict) and (value := item.get(key)) is not None:
                if isinstance(value, list):
                    found.extend(_flatten(value))
                else:
                    found.append(value)
        current = found
    return current


def _flatten(values: list[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from _flatten(value)
        elif value is not None:
            yield value


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A partial update as Elasticsearch applies it: objects merge recursively, the rest replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _dumps(doc: Any) -> str:
    return orjson.dumps(doc).decode()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fts_string(text: str) -> str:
    """One FTS5 string token: the tokenizer splits it, so no user text is FTS5 syntax
    (a NUL would end the query text early)."""
    return '"' + text.replace("\x00", " ").replace('"', '""') + '"'


# --- mappings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]  # where the value sits in the source
    type: str | None  # mapping type of the queried (sub-)field; None when unmapped


class _FtsTable:
    """One FTS5 table of an index; column ``c{i}`` holds field ``columns[i]`` read at ``paths[i]``."""

    def __init__(self, table: str, columns: tuple[str, ...], paths: tuple[tuple[str, ...], ...]) -> None:
        self.table = table
        self.columns = columns
        self.paths = paths
        self.column_list = ", ".join(f"c{i}" for i in range(len(columns)))
        marks = ", ".join("?" * (len(columns) + 1))
        self.insert_sql = f"INSERT INTO {table} (rowid, {self.column_list}) VALUES ({marks})"


def _analyzers(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    analysis = settings.get("analysis") or (settings.get("index") or {}).get("analysis") or {}
    return analysis.get("analyzer") or {}, analysis.get("filter") or {}


def _stems(analyzer: str | None, settings: dict[str, Any]) -> bool:
    if analyzer is None:
        return False
    analyzers, filters = _analyzers(settings)
    if analyzer in analyzers:
        if "english" in analyzer:
            return True
        definition = analyzers[analyzer]
        if definition.get("type", "custom") in _LANGUAGE_ANALYZERS | {"snowball"}:
            return True
        for name in definition.get("filter") or []:
            spec = filters.get(name, {}) if isinstance(name, str) else name
            kind = spec.get("type", name if isinstance(name, str) else "")
            if kind in _STEM_FILTER_TYPES or "stem" in str(kind):
                return True
        return False
    if analyzer in _LANGUAGE_ANALYZERS:
        return True
    if analyzer in _BUILTIN_ANALYZERS:
        return False
    raise InvalidInput(f"analyzer [{analyzer}] has not been configured in the index settings")


def plan_layout(mappings: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The FTS columns of an index: each text field and text sub-field, stemmed or plain."""
    stemmed: list[list[Any]] = []
    plain: list[list[Any]] = []

    def add_text(name: str, path: tuple[str, ...], spec: dict[str, Any]) -> None:
        target = stemmed if _stems(spec.get("analyzer"), settings) else plain
        _stems(spec.get("search_analyzer"), settings)  # refuses an undefined one
        target.append([name, list(path)])

    def walk(props: dict[str, Any], prefix: str, path: tuple[str, ...]) -> None:
        for key, spec in props.items():
            if not isinstance(spec, dict):
                raise InvalidInput(f"mapping of [{prefix}{key}] must be an object")
            name, here = prefix + key, path + (key,)
            kind = spec.get("type", "object")
            if kind in _OBJECT_TYPES:
                walk(spec.get("properties") or {}, name + ".", here)
                continue
            if kind in ("text", "match_only_text"):
                add_text(name, here, spec)
            for sub, sub_spec in (spec.get("fields") or {}).items():
                if sub_spec.get("type") in ("text", "match_only_text"):
                    add_text(f"{name}.{sub}", here, sub_spec)

    walk(mappings.get("properties") or {}, "", ())
    tables = []
    if stemmed:
        tables.append({"suffix": "fts_stem", "tokenize": STEM_TOKENIZER, "columns": stemmed})
    if plain:
        tables.append({"suffix": "fts_plain", "tokenize": PLAIN_TOKENIZER, "columns": plain})
    return {"tables": tables}


class _Layout:
    """An index's tables and its mappings read for validation and queries."""

    def __init__(self, name: str, tbl: str, mappings: dict[str, Any], layout: dict[str, Any]) -> None:
        self.name = name
        self.tbl = tbl
        self.docs = _quote_ident(f"{tbl}_docs")
        self.mappings = mappings
        self.layout_json = _dumps(layout)
        self.mappings_json = _dumps(mappings)
        self.fts = [
            _FtsTable(
                table=_quote_ident(f"{tbl}_{t['suffix']}"),
                columns=tuple(c[0] for c in t["columns"]),
                paths=tuple(tuple(c[1]) for c in t["columns"]),
            )
            for t in layout["tables"]
        ]
        self.fields: dict[str, _Field] = {}
        self._collect(mappings.get("properties") or {}, "", ())
        self._check = _compile_check({**mappings, "type": "object"}, "", "true")
        self._text_paths = {path for table in self.fts for path in table.paths}

    def _collect(self, props: dict[str, Any], prefix: str, path: tuple[str, ...]) -> None:
        for key, spec in props.items():
            name, here = prefix + key, path + (key,)
            kind = spec.get("type", "object")
            if kind in _OBJECT_TYPES:
                self._collect(spec.get("properties") or {}, name + ".", here)
                continue
            self.fields[name] = _Field(here, kind)
            for sub, sub_spec in (spec.get("fields") or {}).items():
                # A sub-field indexes its parent's value in another way: it reads the parent's value.
                self.fields[f"{name}.{sub}"] = _Field(here, sub_spec.get("type"))

    def field(self, name: str) -> _Field:
        return self.fields.get(name) or _Field(tuple(name.split(".")), None)

    def check(self, doc: dict[str, Any]) -> str | None:
        """Why Elasticsearch would refuse ``doc`` under these mappings, or None."""
        return self._check(doc)

    def texts(self, doc: dict[str, Any]) -> list[list[str]]:
        """Per FTS table, its column values for ``doc`` (each path read once)."""
        joined = {path: VALUE_GAP.join(map(_text_of, _values_at(doc, path))) for path in self._text_paths}
        return [[joined[path] for path in table.paths] for table in self.fts]


# --- document checks, compiled once per mapping ----------------------------------------------------

_Check = Callable[[Any], "str | None"]


def _refused(name: str, kind: str, value: Any) -> str:
    return (
        f"mapper_parsing_exception: failed to parse field [{name}] of type [{kind}]. "
        f"Preview of field's value: '{_text_of(value)[:100]}'"
    )


def _leaf_test(kind: str, spec: dict[str, Any]) -> Callable[[Any], bool] | None:
    """Whether Elasticsearch accepts a scalar for a field of ``kind``; None: any scalar."""
    if kind in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[kind]
        return lambda v: (n := _number(v)) is not None and low <= int(n) <= high
    if kind in _FLOAT_TYPES:
        return lambda v: _number(v) is not None
    if kind == "boolean":
        return lambda v: _boolean(v) is not None
    if kind in ("date", "date_nanos"):
        if "format" in spec:  # a format of its own: strings are not checked here
            return lambda v: isinstance(v, str) or date_millis(v) is not None
        return lambda v: date_millis(v) is not None
    return None


def _compile_check(spec: dict[str, Any], name: str, dynamic: str) -> _Check:
    kind = spec.get("type", "object")
    if kind in _OBJECT_TYPES:
        dynamic = str(spec.get("dynamic", dynamic)).lower()
        children = {
            key: _compile_check(child, f"{name}.{key}" if name else key, dynamic)
            for key, child in (spec.get("properties") or {}).items()
        }
        strict = dynamic == "strict"
        where = name or "_doc"

        def check_object(value: Any) -> str | None:
            if isinstance(value, list):
                return next((p for item in value if (p := check_object(item))), None)
            if value is None:
                return None
            if not isinstance(value, dict):
                return (
                    f"mapper_parsing_exception: object mapping for [{where}] tried to parse field "
                    f"[{where}] as object, but found a concrete value"
                )
            for key, item in value.items():
                child = children.get(key)
                if child is None:
                    if strict:
                        return (
                            f"strict_dynamic_mapping_exception: mapping set to strict, dynamic "
                            f"introduction of [{key}] within [{where}] is not allowed"
                        )
                elif item is not None and (problem := child(item)):
                    return problem
            return None

        return check_object

    test = _leaf_test(kind, spec)
    field = name

    def check_leaf(value: Any) -> str | None:
        if isinstance(value, list):
            return next((p for item in value if (p := check_leaf(item))), None)
        if value is None:
            return None
        if isinstance(value, dict):
            return f"mapper_parsing_exception: failed to parse field [{field}] of type [{kind}]: found an object"
        if test is not None and not test(value):
            return _refused(field, kind, value)
        return None

    return check_leaf


# --- SQL building ------------------------------------------------------------------------------------


class _Sql:
    """SQL text and its parameters, built together."""

    def __init__(self, text: str = "", params: Iterable[Any] = ()) -> None:
        self.text = text
        self.params = list(params)

    def __add__(self, other: _Sql | str) -> _Sql:
        if isinstance(other, str):
            return _Sql(self.text + other, self.params)
        return _Sql(self.text + other.text, self.params + other.params)


def _json_path(key: str) -> str:
    if '"' in key:
        raise InvalidInput(f"field name part {key!r} contains a double quote")
    return f'$."{key}"'


def _each_value(path: tuple[str, ...]) -> tuple[_Sql, str]:
    """FROM clause over every value at ``path`` of ``d.source`` (through arrays of objects);
    returns it and the alias of the innermost ``json_each``."""
    parts: list[str] = []
    params: list[Any] = []
    prev = ""
    for i, key in enumerate(path):
        # A scalar among objects has no keys (and its value is not JSON text).
        src = f"CASE WHEN {prev}.type = 'object' THEN {prev}.value ELSE '{{}}' END" if prev else "d.source"
        if i == len(path) - 1:
            # The two-argument form keeps JSON true/false typed (json_extract makes them 1/0).
            parts.append(f"json_each({src}, ?) v{i}")
            params.append(_json_path(key))
        else:
            # A lone object is wrapped in an array: json_each over an object would walk its keys.
            parts.append(
                f"json_each(CASE json_type({src}, ?) WHEN 'array' THEN json_extract({src}, ?) "
                f"ELSE json_array(json_extract({src}, ?)) END) v{i}"
            )
            params += [_json_path(key)] * 3
        prev = f"v{i}"
    return _Sql(", ".join(parts), params), prev


def _typed(kind: str | None, alias: str, sample: Any) -> str:
    """SQL for the value of ``alias`` as the field's type compares."""
    if kind is None:  # unmapped: compare as the query value's type
        kind = "boolean" if isinstance(sample, bool) else "double" if isinstance(sample, int | float) else "keyword"
    if kind in _INTEGER_RANGES:
        return f"CAST({alias}.value AS INTEGER)"
    if kind in _FLOAT_TYPES:
        return f"CAST({alias}.value AS REAL)"
    if kind == "boolean":
        return (
            f"(CASE WHEN {alias}.type = 'true' OR {alias}.value = 'true' THEN 1 "
            f"WHEN {alias}.type = 'false' OR {alias}.value IN ('false', '') THEN 0 END)"
        )
    if kind in ("date", "date_nanos"):
        # SQLite reads most ISO dates itself (fast); the Python parser takes the rest.
        return (
            f"(CASE WHEN {alias}.type IN ('integer', 'real') THEN CAST({alias}.value AS INTEGER) "
            f"WHEN {alias}.value GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN COALESCE("
            f"CAST(round((julianday({alias}.value) - 2440587.5) * 86400000) AS INTEGER), "
            f"sluice_date_ms({alias}.value)) ELSE sluice_date_ms({alias}.value) END)"
        )
    return f"CAST({alias}.value AS TEXT)"


def _param(kind: str | None, value: Any, field: str) -> Any:
    """A query value as the field's type compares it."""
    if kind is None:
        return int(value) if isinstance(value, bool) else value
    if kind in _INTEGER_RANGES or kind in _FLOAT_TYPES:
        number = _number(value)
        if number is None:
            raise InvalidInput(f"[{field}] is numeric; {value!r} is not a number")
        return number
    if kind == "boolean":
        flag = _boolean(value)
        if flag is None:
            raise InvalidInput(f"[{field}] is boolean; {value!r} is not true or false")
        return int(flag)
    if kind in ("date", "date_nanos"):
        millis = date_millis(value.isoformat() if isinstance(value, datetime) else value)
        if millis is None:
            raise InvalidInput(f"[{field}] is a date; cannot read {value!r}")
        return millis
    return _text_of(value)


class _QueryBuilder:
    def __init__(self, layout: _Layout) -> None:
        self.layout = layout

    def predicate(self, flt: Filter) -> _Sql:
        if isinstance(flt, Phrase):
            return self.phrase(flt)
        if not isinstance(flt, Term | Range):
            raise InvalidInput(f"unsupported filter {flt!r}")
        info = self.layout.field(flt.field)
        source, alias = _each_value(info.path)
        if isinstance(flt, Term):
            values = list(flt.value) if isinstance(flt.value, list | tuple | set | frozenset) else [flt.value]
            if not values:
                return _Sql("0")
            value_sql = _typed(info.type, alias, values[0])
            marks = ", ".join("?" * len(values))
            cond = _Sql(f"{value_sql} IN ({marks})", [_param(info.type, v, flt.field) for v in values])
        else:
            bounds = [
                (op, getattr(flt, name))
                for name, op in (("gte", ">="), ("gt", ">"), ("lte", "<="), ("lt", "<"))
                if getattr(flt, name) is not None
            ]
            if not bounds:
                cond = _Sql(f"{alias}.value IS NOT NULL")
            else:
                value_sql = _typed(info.type, alias, bounds[0][1])
                cond = _Sql(
                    " AND ".join(f"{value_sql} {op} ?" for op, _ in bounds),
                    [_param(info.type, v, flt.field) for _, v in bounds],
                )
        return _Sql("EXISTS (SELECT 1 FROM ") + source + " WHERE " + cond + ")"

    def _columns(self, names: Iterable[str]) -> list[tuple[_FtsTable, dict[int, float]]]:
        """Per FTS table, the columns (index -> boost) that ``names`` select (``*`` and ``^boost``)."""
        picked: list[tuple[_FtsTable, dict[int, float]]] = []
        for table in self.layout.fts:
            weights: dict[int, float] = {}
            for spec in names:
                pattern, _, boost = spec.partition("^")
                try:
                    weight = float(boost) if boost else 1.0
                except ValueError:
                    raise InvalidInput(f"bad field boost in {spec!r}") from None
                for i, column in enumerate(table.columns):
                    if fnmatch.fnmatchcase(column, pattern):
                        weights[i] = max(weight, weights.get(i, 0.0))
            if weights:
                picked.append((table, weights))
        return picked

    def phrase(self, flt: Phrase) -> _Sql:
        phrases = [p for p in flt.phrases if _WORD.search(p)]
        parts: list[_Sql] = []
        if phrases:
            body = " OR ".join(_fts_string(p) for p in phrases)
            for table, weights in self._columns(flt.fields):
                cols = " ".join(f"c{i}" for i in sorted(weights))
                parts.append(
                    _Sql(
                        f"d.rowid IN (SELECT rowid FROM {table.table} WHERE {table.table} MATCH ?)",
                        [f"{{{cols}}} : ({body})"],
                    )
                )
        if not parts:
            return _Sql("0")
        out = _Sql("(")
        for i, part in enumerate(parts):
            out = out + (" OR " if i else "") + part
        return out + ")"

    def where(self, filters: Iterable[Filter], exclude: Iterable[Filter]) -> _Sql:
        out = _Sql("1")
        for flt in filters:
            out = out + " AND " + self.predicate(flt)
        for flt in exclude:
            out = out + " AND NOT " + self.predicate(flt)
        return out

    def scored(self, query: Query) -> _Sql | None:
        """A CTE ``scored(rid, score)`` of the docs matching ``query.text``, or None without text."""
        if not query.text or not query.text.strip():
            return None
        words = [w for w in query.text.split() if _WORD.search(w)]
        selects: list[_Sql] = []
        if words:
            body = " OR ".join(_fts_string(w) for w in words)
            for table, weights in self._columns(query.fields or ("*",)):
                cols = " ".join(f"c{i}" for i in sorted(weights))
                bm25 = ", ".join(str(weights.get(i, 0.0)) for i in range(len(table.columns)))
                selects.append(
                    _Sql(
                        f"SELECT rowid AS rid, bm25({table.table}, {bm25}) AS s FROM {table.table} "
                        f"WHERE {table.table} MATCH ?",
                        [f"{{{cols}}} : ({body})"],
                    )
                )
        if not selects:
            return _Sql("scored(rid, score) AS (SELECT NULL, NULL WHERE 0)")
        # bm25() is lower-is-better; a score is higher-is-better, summed over the FTS tables.
        if len(selects) == 1:  # (a lone subquery would be flattened into GROUP BY, where bm25 fails)
            return _Sql("scored(rid, score) AS (SELECT rid, -s FROM (") + selects[0] + "))"
        union = selects[0]
        for select in selects[1:]:
            union = union + " UNION ALL " + select
        return _Sql("scored(rid, score) AS (SELECT rid, -SUM(s) FROM (") + union + ") GROUP BY rid)"

    def order(self, query: Query, has_score: bool) -> _Sql:
        parts: list[_Sql] = []
        for name, direction in query.sort:
            if direction not in ("asc", "desc"):
                raise InvalidInput(f"sort order of {name!r} must be 'asc' or 'desc', not {direction!r}")
            if name == "_score":
                if has_score:
                    parts.append(_Sql(f"s.score {direction.upper()}"))
                continue
            if name == "_id":
                parts.append(_Sql(f"d.id {direction.upper()}"))
                continue
            info = self.layout.field(name)
            source, alias = _each_value(info.path)
            # Arrays sort by their smallest value ascending, largest descending; missing go last.
            pick = "MIN" if direction == "asc" else "MAX"
            key = _Sql(f"(SELECT {pick}({_typed(info.type, alias, None)}) FROM ") + source + ")"
            parts.append(key + f" {direction.upper()} NULLS LAST")
        if has_score:
            parts.append(_Sql("s.score DESC"))
        parts.append(_Sql("d.rowid"))
        out = _Sql(" ORDER BY ")
        for i, part in enumerate(parts):
            out = out + (", " if i else "") + part
        return out


# --- live connections ----------------------------------------------------------------------------


class _Live(LiveState):
    """Connections, one per thread; never pickled or deep-copied with the block."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.layouts: dict[str, _Layout] = {}
        self.pid = os.getpid()


# --- the block -----------------------------------------------------------------------------------


class EmbeddedEngine(Block, SearchEngine):
    """A search engine in one SQLite file (FTS5, BM25): no server; several processes may share it."""

    _block_type_name = "Embedded Search Engine"

    path: str = Field(description="Path of the SQLite file holding every index; created when missing.")

    _live: _Live = PrivateAttr(default_factory=_Live)

    # --- connections and transactions ---

    def _connect(self) -> sqlite3.Connection:
        path = Path(self.path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise ConfigurationError(f"EmbeddedEngine.path {self.path!r}: {e}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("sluice_date_ms", 1, date_millis, deterministic=True)
            conn.executescript(_CATALOG)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise ConfigurationError(f"EmbeddedEngine.path {self.path!r}: {e}") from None
        return conn

    def _conn(self) -> sqlite3.Connection:
        live = self._live
        if live.pid != os.getpid():  # a forked child must not share the parent's connections
            live.__init__()
        conn = getattr(live.local, "conn", None)
        if conn is None:
            conn = self._connect()
            live.local.conn = conn
            with live.lock:
                live.connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as e:
            raise EngineUnavailable(f"search database {self.path} busy: {e}") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                raise EngineUnavailable(f"search database {self.path} busy: {e}") from None
            raise

    def close(self) -> None:
        live = self._live
        with live.lock:
            connections, live.connections = live.connections, []
            live.local = threading.local()
            live.layouts.clear()
        for conn in connections:
            conn.close()

    def ping(self) -> bool:
        try:
            with self._tx() as conn:
                conn.execute("SELECT 1").fetchone()
        except (sqlite3.Error, ConfigurationError, EngineUnavailable):
            return False
        return True

    # --- catalog ---

    def _layout(self, row: tuple[str, str, str, str]) -> _Layout:
        name, tbl, mappings, layout = row
        cached = self._live.layouts.get(tbl)
        if cached is None:
            # tbl is unique per creation and mappings never change: safe to cache.
            cached = _Layout(name, tbl, orjson.loads(mappings), orjson.loads(layout))
            self._live.layouts[tbl] = cached
        return cached

    def _index(self, conn: sqlite3.Connection, name: str) -> _Layout | None:
        row = conn.execute("SELECT name, tbl, mappings, layout FROM sluice_index WHERE name = ?", (name,)).fetchone()
        return self._layout(row) if row else None

    def _resolve(self, conn: sqlite3.Connection, name: str) -> _Layout:
        """The index named, or the one index behind the alias named."""
        layout = self._index(conn, name)
        if layout is not None:
            return layout
        rows = conn.execute(
            "SELECT i.name, i.tbl, i.mappings, i.layout FROM sluice_alias a "
            "JOIN sluice_index i ON i.name = a.index_name WHERE a.alias = ?",
            (name,),
        ).fetchall()
        if not rows:
            raise NotFound(f"no such index [{name}]")
        if len(rows) > 1:
            raise InvalidInput(f"alias [{name}] points at {len(rows)} indices; name one index")
        return self._layout(rows[0])

    def _is_alias(self, conn: sqlite3.Connection, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sluice_alias WHERE alias = ? LIMIT 1", (name,)).fetchone() is not None

    # --- indices ---

    def create_index(self, name: str, mappings: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        validate_name(name)
        settings = settings or {}
        plan = plan_layout(mappings, settings)
        tbl = "ix_" + re.sub(r"[^a-z0-9]+", "_", name)[:40] + "_" + secrets.token_hex(4)
        with self._tx(write=True) as conn:
            if self._index(conn, name) is not None:
                raise Conflict(f"index [{name}] already exists")
            if self._is_alias(conn, name):
                raise Conflict(f"invalid index name [{name}], already exists as alias")
            conn.execute(
                f"CREATE TABLE {_quote_ident(tbl + '_docs')} "
                "(rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL)"
            )
            for table in plan["tables"]:
                columns = ", ".join(f"c{i}" for i in range(len(table["columns"])))
                conn.execute(
                    f"CREATE VIRTUAL TABLE {_quote_ident(tbl + '_' + table['suffix'])} "
                    f"USING fts5({columns}, tokenize = '{table['tokenize']}')"
                )
            conn.execute(
                "INSERT INTO sluice_index (name, tbl, mappings, settings, layout, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, tbl, _dumps(mappings), _dumps(settings), _dumps(plan), datetime.now(UTC).isoformat()),
            )

    def delete_index(self, name: str) -> None:
        with self._tx(write=True) as conn:
            if self._is_alias(conn, name):
                raise Conflict(f"[{name}] is an alias; delete its indices by their own names")
            layout = self._index(conn, name)
            if layout is None:
                raise NotFound(f"no such index [{name}]")
            conn.execute(f"DROP TABLE {layout.docs}")
            for table in layout.fts:
                conn.execute(f"DROP TABLE {table.table}")
            conn.execute("DELETE FROM sluice_alias WHERE index_name = ?", (name,))
            conn.execute("DELETE FROM sluice_index WHERE name = ?", (name,))
        self._live.layouts.pop(layout.tbl, None)

    def index_exists(self, name: str) -> bool:
        with self._tx() as conn:
            return conn.execute("SELECT 1 FROM sluice_index WHERE name = ?", (name,)).fetchone() is not None

    def list_indices(self, prefix: str = "") -> list[str]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT name FROM sluice_index WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        return [r[0] for r in rows]

    def get_aliases(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with self._tx() as conn:
            for alias, index in conn.execute("SELECT alias, index_name FROM sluice_alias ORDER BY alias, index_name"):
                out.setdefault(alias, []).append(index)
        return out

    def update_aliases(self, actions: Iterable[AliasAction]) -> None:
        actions = list(actions)
        with self._tx(write=True) as conn:  # every action or none
            for action in actions:
                if action.op not in ("add", "remove"):
                    raise InvalidInput(f"alias action must be 'add' or 'remove', not {action.op!r}")
                if self._index(conn, action.alias) is not None:
                    raise Conflict(f"alias name [{action.alias}] is an index")
                if self._index(conn, action.index) is None:
                    raise NotFound(f"no such index [{action.index}]")
                if action.op == "add":
                    validate_name(action.alias, "alias")
                    conn.execute(
                        "INSERT OR IGNORE INTO sluice_alias (alias, index_name) VALUES (?, ?)",
                        (action.alias, action.index),
                    )
                elif not conn.execute(
                    "DELETE FROM sluice_alias WHERE alias = ? AND index_name = ?",
                    (action.alias, action.index),
                ).rowcount:
                    raise NotFound(f"alias [{action.alias}] is not on index [{action.index}]")

    def put_settings(self, index: str, settings: dict[str, Any]) -> None:
        # Stored only: refresh intervals and replicas mean nothing here.
        with self._tx(write=True) as conn:
            layout = self._resolve(conn, index)
            (stored,) = conn.execute("SELECT settings FROM sluice_index WHERE name = ?", (layout.name,)).fetchone()
            merged = _merge(orjson.loads(stored), settings)
            conn.execute("UPDATE sluice_index SET settings = ? WHERE name = ?", (_dumps(merged), layout.name))

    def refresh(self, index: str) -> None:
        # Writes are visible once committed; only the name is checked, as Elasticsearch does.
        with self._tx() as conn:
            self._resolve(conn, index)

    # --- documents ---

    def _put(
        self, conn: sqlite3.Connection, layout: _Layout, doc_id: str, doc: dict[str, Any], rowid: int | None
    ) -> None:
        source = _dumps(doc)
        if rowid is None:
            rowid = conn.execute(f"INSERT INTO {layout.docs} (id, source) VALUES (?, ?)", (doc_id, source)).lastrowid
        else:
            conn.execute(f"UPDATE {layout.docs} SET source = ? WHERE rowid = ?", (source, rowid))
            for table in layout.fts:
                conn.execute(f"DELETE FROM {table.table} WHERE rowid = ?", (rowid,))
        for table, texts in zip(layout.fts, layout.texts(doc), strict=True):
            conn.execute(table.insert_sql, [rowid, *texts])

    def _apply(self, conn: sqlite3.Connection, layout: _Layout, action: BulkAction) -> BulkError | None:
        doc_id = action.id
        if not isinstance(doc_id, str) or not doc_id or len(doc_id.encode()) > 512:
            return BulkError(str(doc_id), 400, "document id must be a non-empty string of at most 512 bytes")
        if action.op not in ("index", "update", "delete"):
            return BulkError(doc_id, 400, f"unknown bulk op {action.op!r}")
        if action.op != "delete" and not isinstance(action.doc, dict):
            return BulkError(doc_id, 400, f"{action.op} needs a document")
        wanted = "rowid, source" if action.op == "update" else "rowid"
        row = conn.execute(f"SELECT {wanted} FROM {layout.docs} WHERE id = ?", (doc_id,)).fetchone()
        rowid = row[0] if row else None
        if action.op == "delete":
            if rowid is not None:
                for table in layout.fts:
                    conn.execute(f"DELETE FROM {table.table} WHERE rowid = ?", (rowid,))
                conn.execute(f"DELETE FROM {layout.docs} WHERE rowid = ?", (rowid,))
            return None
        doc = action.doc
        if action.op == "update":
            if row is None and not action.upsert:
                return BulkError(doc_id, 404, f"document_missing_exception: [{doc_id}]: document missing")
            if row is not None:
                doc = _merge(orjson.loads(row[1]), orjson.loads(_dumps(doc)))
        problem = layout.check(doc)
        if problem:
            return BulkError(doc_id, 400, problem)
        self._put(conn, layout, doc_id, doc, rowid)
        return None

    def bulk(self, index: str, actions: Iterable[BulkAction]) -> BulkResult:
        result = BulkResult()
        with self._tx(write=True) as conn:
            layout = self._resolve(conn, index)
            for action in actions:
                error = self._apply(conn, layout, action)
                if error is None:
                    result.succeeded += 1
                else:
                    result.errors.append(error)
        return result

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            layout = self._resolve(conn, index)
            row = conn.execute(f"SELECT source FROM {layout.docs} WHERE id = ?", (doc_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def count(self, index: str, query: Query | None = None) -> int:
        with self._tx() as conn:
            layout = self._resolve(conn, index)
            if query is None:
                return conn.execute(f"SELECT COUNT(*) FROM {layout.docs}").fetchone()[0]
            sql = self._select(layout, query, "COUNT(*)")
            return conn.execute(sql.text, sql.params).fetchone()[0]

    def _select(self, layout: _Layout, query: Query, columns: str) -> _Sql:
        builder = _QueryBuilder(layout)
        scored = builder.scored(query)
        where = builder.where(query.filters, query.exclude)
        if scored is None:
            return _Sql(f"SELECT {columns} FROM {layout.docs} d WHERE ") + where
        return (
            _Sql("WITH ") + scored + f" SELECT {columns} FROM scored s "
            f"JOIN {layout.docs} d ON d.rowid = s.rid WHERE " + where
        )

    def search(self, index: str, query: Query) -> SearchResult:
        if query.offset < 0 or query.limit < 0:
            raise InvalidInput("offset and limit must not be negative")
        has_score = bool(query.text and query.text.strip())
        page = _Sql(" LIMIT ? OFFSET ?", [query.limit, query.offset])
        with self._tx() as conn:
            layout = self._resolve(conn, index)
            order = _QueryBuilder(layout).order(query, has_score)
            if has_score or query.sort:
                # Every match is scored or sorted anyway: count them in the same pass.
                sql = (
                    self._select(layout, query, f"d.rowid, {'s.score' if has_score else '1.0'}, COUNT(*) OVER ()")
                    + order
                    + page
                )
                ranked = conn.execute(sql.text, sql.params).fetchall()
                total = ranked[0][2] if ranked else None
            else:
                sql = self._select(layout, query, "d.rowid, 1.0") + order + page
                ranked = conn.execute(sql.text, sql.params).fetchall()
                total = None
            if len(ranked) < query.limit and (ranked or not query.offset):
                total = query.offset + len(ranked)  # the last page: nothing to count
            if total is None:
                counted = self._select(layout, query, "COUNT(*)")
                total = conn.execute(counted.text, counted.params).fetchone()[0]
            sources = dict(
                conn.execute(
                    f"SELECT rowid, json_array(id, json(source)) FROM {layout.docs} "
                    f"WHERE rowid IN ({', '.join('?' * len(ranked))})",
                    [r[0] for r in ranked],
                ).fetchall()
            )
        hits = []
        for rowid, score, *_ in ranked:
            doc_id, source = orjson.loads(sources[rowid])
            hits.append(Hit(id=doc_id, score=float(score), source=source))
        return SearchResult(total=total, hits=hits)

    def copy_index(self, source: str, dest: str, exclude: Iterable[Filter] = ()) -> int:
        exclude = tuple(exclude)
        with self._tx(write=True) as conn:
            src = self._resolve(conn, source)
            dst = self._resolve(conn, dest)
            if src.tbl == dst.tbl:
                raise InvalidInput("copy_index: source and dest are the same index")
            keep = _QueryBuilder(src).where((), exclude)
            if (src.mappings_json, src.layout_json) != (dst.mappings_json, dst.layout_json):
                return self._copy_validated(conn, src, dst, keep)
            # Same mappings: documents and their FTS rows copy in SQL, without re-validation.
            conn.execute("DROP TABLE IF EXISTS temp.sluice_copy")
            conn.execute("CREATE TEMP TABLE sluice_copy (src INTEGER PRIMARY KEY, id TEXT NOT NULL)")
            select = (
                _Sql(f"INSERT INTO temp.sluice_copy (src, id) SELECT d.rowid, d.id FROM {src.docs} d WHERE ") + keep
            )
            conn.execute(select.text, select.params)
            dest_had_docs = conn.execute(f"SELECT 1 FROM {dst.docs} LIMIT 1").fetchone() is not None
            conn.execute(
                f"INSERT INTO {dst.docs} (id, source) SELECT d.id, d.source FROM temp.sluice_copy c "
                f"JOIN {src.docs} d ON d.rowid = c.src WHERE 1 "
                "ON CONFLICT (id) DO UPDATE SET source = excluded.source"
            )
            for src_fts, dst_fts in zip(src.fts, dst.fts, strict=True):
                if dest_had_docs:
                    conn.execute(
                        f"DELETE FROM {dst_fts.table} WHERE rowid IN "
                        f"(SELECT x.rowid FROM temp.sluice_copy c JOIN {dst.docs} x ON x.id = c.id)"
                    )
                picked = ", ".join(f"f.c{i}" for i in range(len(src_fts.columns)))
                conn.execute(
                    f"INSERT INTO {dst_fts.table} (rowid, {dst_fts.column_list}) SELECT x.rowid, {picked} "
                    f"FROM temp.sluice_copy c JOIN {src_fts.table} f ON f.rowid = c.src "
                    f"JOIN {dst.docs} x ON x.id = c.id"
                )
            copied = conn.execute("SELECT COUNT(*) FROM temp.sluice_copy").fetchone()[0]
            conn.execute("DROP TABLE temp.sluice_copy")
            return copied

    def _copy_validated(self, conn: sqlite3.Connection, src: _Layout, dst: _Layout, keep: _Sql) -> int:
        """Copy between different mappings: every document re-checked; any refusal undoes all."""
        select = _Sql(f"SELECT d.id, d.source FROM {src.docs} d WHERE ") + keep
        failures: list[BulkError] = []
        copied = 0
        for doc_id, source in conn.execute(select.text, select.params).fetchall():
            error = self._apply(conn, dst, BulkAction("index", doc_id, orjson.loads(source)))
            if error is None:
                copied += 1
            else:
                failures.append(error)
        if failures:
            raise InvalidInput(
                f"copy {src.name} -> {dst.name}: {len(failures)} document(s) refused, first "
                f"[{failures[0].id}]: {failures[0].reason}"
            )
        return copied

    def scan(self, index: str, batch_size: int = 1000) -> Iterator[list[Hit]]:
        with self._tx() as conn:
            name = self._resolve(conn, index).name
        last = 0
        while True:
            # One short read per batch: no snapshot is held while the caller works.
            with self._tx() as conn:
                layout = self._resolve(conn, name)
                rows = conn.execute(
                    f"SELECT rowid, id, source FROM {layout.docs} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, batch_size),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Hit(id=r[1], score=0.0, source=orjson.loads(r[2])) for r in rows]
