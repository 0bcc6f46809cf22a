"""JSON over http(s) or file://: an array of objects (or JSON Lines), parsed incrementally by ijson."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import ijson

from sluice.connectors import SourceJSON
from tasks.sources.base import Source, SourceError, open_url


class JsonSource(Source):
    source_type = "json"
    config_model = SourceJSON

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        with open_url(self.config.url, self.config.method, meter=self.meter) as body:
            # "[" opens an array of records; anything else is read as one record per line (JSON Lines).
            first = body.peek(256).lstrip()[:1]
            items = ijson.items(body, "item" if first == b"[" else "", multiple_values=True, use_float=True)
            try:
                while chunk := list(islice(items, chunk_size)):
                    bad = next((i for i in chunk if not isinstance(i, dict)), None)
                    if bad is not None:
                        raise SourceError(f"{self.config.url}: every record must be a JSON object, not {bad!r:.60}")
                    yield chunk
            except ijson.JSONError as exc:
                raise SourceError(f"{self.config.url} is not valid JSON: {exc}") from None
