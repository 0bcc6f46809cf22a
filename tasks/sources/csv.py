"""CSV over http(s) or file://, parsed by pandas in chunks of DataFrames (every cell read as text;
the task's ``mapping`` gives the types, column by column, in ``tasks.transform``)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from sluice.connectors import SourceCSV
from tasks.sources.base import Source, SourceError, open_url


class CsvSource(Source):
    source_type = "csv"
    config_model = SourceCSV

    def get_docs(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        with open_url(self.config.url, self.config.method, meter=self.meter) as body:
            try:
                # Cells stay text (object columns read faster than pandas' str dtype); only empty ones are missing.
                yield from pd.read_csv(body, sep=self.config.delimiter, dtype=object, keep_default_na=False,
                                       na_values=[""], chunksize=chunk_size, engine="c")  # fmt: skip
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.config.url} is not valid CSV: {exc}") from None
            except pd.errors.EmptyDataError:
                return
