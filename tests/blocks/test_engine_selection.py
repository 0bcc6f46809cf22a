"""Choosing the engine: a saved Prefect block (editable in the UI), Elasticsearch by URL, or embedded."""

from __future__ import annotations

import pytest

from blocks.search_engine import EmbeddedEngine, engine_from_settings, register_engine_blocks
from sluice.errors import ConfigurationError
from sluice.settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_a_saved_engine_block_is_used_when_named(sluice_env, tmp_path):
    register_engine_blocks()
    EmbeddedEngine(path=str(tmp_path / "chosen.sqlite3")).save("chosen", overwrite=True)
    sluice_env(SEARCH_ENGINE_BLOCK="embedded-search-engine/chosen")

    engine = engine_from_settings(get_settings())

    assert isinstance(engine, EmbeddedEngine) and engine.path == str(tmp_path / "chosen.sqlite3")


def test_an_unknown_engine_block_is_a_configuration_error(sluice_env):
    sluice_env(SEARCH_ENGINE_BLOCK="embedded-search-engine/missing")

    with pytest.raises(ConfigurationError, match="SLUICE_SEARCH_ENGINE_BLOCK"):
        engine_from_settings(get_settings())
