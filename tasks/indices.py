"""Index names and the safety rules of the lifecycle, shared by the API (to answer 400 at once)
and the flows (to re-check at run time, when the state may have changed)."""

from __future__ import annotations

import re

from sluice.errors import InvalidInput
from sluice.search import SearchEngine

# Elasticsearch index-name rules, narrowed: lowercase letters, digits, '-' and '_', not leading.
SUFFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def index_name(model: str, suffix: str) -> str:
    return f"{model}-{suffix}"


def filtered_name(model: str, suffix: str) -> str:
    return f"{model}-{suffix}-filtered"


def filtered_alias(model: str) -> str:
    return f"{model}-filtered"


def alias_holders(engine: SearchEngine, index: str) -> list[str]:
    """The aliases that point at ``index``."""
    return sorted(alias for alias, targets in engine.get_aliases().items() if index in targets)


def check_new_index(engine: SearchEngine, name: str) -> None:
    if engine.index_exists(name) or name in engine.get_aliases():
        raise InvalidInput(f"{name!r} already exists; choose another index_suffix")


def check_source(engine: SearchEngine, name: str) -> str:
    """The one concrete index behind ``name`` (an index or an alias)."""
    targets = engine.resolve(name)
    if not targets:
        raise InvalidInput(f"{name!r} is neither an index nor an alias")
    if len(targets) > 1:
        raise InvalidInput(f"alias {name!r} points at several indices: {', '.join(targets)}")
    return targets[0]


def check_point_alias(engine: SearchEngine, index: str, alias: str) -> None:
    if not engine.index_exists(index):
        raise InvalidInput(f"index {index!r} does not exist")
    if engine.index_exists(alias):
        raise InvalidInput(f"{alias!r} is an index, not an alias; it cannot be pointed elsewhere")


def check_delete_index(engine: SearchEngine, index: str) -> None:
    """An index that serves an alias is never deleted; an alias name is never deleted as an index."""
    if index in engine.get_aliases():
        raise InvalidInput(f"{index!r} is an alias, not an index; delete the index it points at instead")
    if not engine.index_exists(index):
        raise InvalidInput(f"index {index!r} does not exist")
    holders = alias_holders(engine, index)
    if holders:
        raise InvalidInput(f"index {index!r} still serves alias {', '.join(holders)}; point the alias elsewhere first")
