"""CSV over http(s) or file://, parsed by pandas in chunks (every cell read as text; the task's
``mapping`` gives the types)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from sluice.connectors import SourceCSV
from tasks.sources.base import Source, SourceError, open_url


class CsvSource(Source):
    source_type = "csv"
    config_model = SourceCSV

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        with open_url(self.config.url, self.config.method, meter=self.meter) as body:
            try:
                chunks = pd.read_csv(body, sep=self.config.delimiter, dtype=str, keep_default_na=False,
                                     na_values=[""], chunksize=chunk_size, engine="c")  # fmt: skip
                for chunk in chunks:
                    yield chunk.astype(object).where(chunk.notna(), None).to_dict("records")
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.config.url} is not valid CSV: {exc}") from None
            except pd.errors.EmptyDataError:
                return
