"""Dependencies, declared once as Annotated aliases so routes name only what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from prefect.client.orchestration import PrefectClient, get_client

from blocks.search_engine import engine_from_settings
from sluice.search import SearchEngine
from sluice.settings import Settings, get_settings


def get_search_engine(settings: Annotated[Settings, Depends(get_settings)]) -> SearchEngine:
    return engine_from_settings(settings)


async def get_prefect() -> AsyncIterator[PrefectClient]:
    async with get_client() as client:
        yield client


SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchEngineDep = Annotated[SearchEngine, Depends(get_search_engine)]
PrefectDep = Annotated[PrefectClient, Depends(get_prefect)]
