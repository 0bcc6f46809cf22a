"""source type -> "module:Class", imported only when a task of that type runs."""

from __future__ import annotations

from importlib import import_module

from tasks.sources.base import Source

SOURCES = {
    "csv": "tasks.sources.csv:CsvSource",
    "json": "tasks.sources.json:JsonSource",
    "bigquery": "tasks.sources.bigquery:BigQuerySource",
    "commercetools": "tasks.sources.commercetools:CommercetoolsSource",
    "bigcommerce": "tasks.sources.bigcommerce:BigCommerceSource",
    "docker": "tasks.sources.docker:DockerSource",
}


def source_class(source_type: str) -> type[Source]:
    if source_type not in SOURCES:
        raise KeyError(f"no connector for sources of type {source_type!r} yet")
    module, _, name = SOURCES[source_type].partition(":")
    return getattr(import_module(module), name)
