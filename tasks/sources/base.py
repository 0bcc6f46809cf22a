"""The interface every source implements (after elastic/connectors' BaseDataSource, typed)."""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from sluice.errors import ConfigurationError
from tasks.transform import Chunk


class SourceError(Exception):
    """The source cannot be read; ``reason`` says why in a sentence (a run's ``reason``)."""


class Source(ABC):
    """Reads one source's records in chunks, never the whole source at once.

    ``secret``: the decrypted input of the source's authentication (or {}). ``task_input``: the
    task's ``input`` (e.g. ``{startDate, endDate}`` or ``{timeframe}``), with ``scheduled`` telling
    which trigger started the run. ``state``: what the last successful run left in ``self.state``
    (a cursor, Singer STATE); an incremental source reads from it and moves ``self.state`` on as it
    goes. The flow saves ``self.state`` only when the run succeeds, so a failed run re-reads.
    """

    source_type: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, configuration: dict[str, Any], secret: dict[str, Any] | None = None,
                 task_input: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                 scheduled: bool = False):  # fmt: skip
        self.config = self.config_model.model_validate(configuration)
        self.secret = secret or {}
        self.task_input = task_input or {}
        self.state = state
        self.scheduled = scheduled
        self.record_type = "product"  # the destination's recordType, for shop sources: product or variant
        self.meter = Meter()

    def progress(self) -> float | None:
        """How far through the source the reading is (0–1), when the source knows its size."""
        return self.meter.fraction()

    def validate_config(self) -> None:  # noqa: B027 - optional hook
        """Local checks beyond the model's; raise ``ConfigurationError`` naming the field."""

    def check_connection(self) -> None:  # noqa: B027 - optional hook
        """Reach the source with these credentials; raise ``SourceError`` saying what failed."""

    def discover(self) -> list[dict[str, Any]]:
        """The streams the source offers (Singer catalog entries); only some types have them."""
        raise SourceError(f"{self.source_type} sources have no streams to discover")

    @abstractmethod
    def get_docs(self, chunk_size: int) -> Iterator[Chunk]:
        """The source's rows, ``chunk_size`` at a time: lists of dicts, or DataFrames for a tabular
        source (its columns are then typed in one pass; ``tasks.transform.rows`` gives the dicts)."""


@dataclass
class Meter:
    """Bytes read of a body of known (or unknown) size."""

    read: int = 0
    total: int | None = None

    def fraction(self) -> float | None:
        return min(1.0, self.read / self.total) if self.total else None


class _Stream(io.RawIOBase):
    """Chunks of bytes (a streamed HTTP body, a file's blocks) as a file object, so parsers read
    it piece by piece; every byte handed out is counted on the meter."""

    def __init__(self, chunks: Iterator[bytes], meter: Meter):
        self._chunks, self._rest, self._meter = chunks, b"", meter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size], self._rest = self._rest[:size], self._rest[size:]
        self._meter.read += size
        return size


BLOCK = 1 << 20


@contextmanager
def open_url(url: str, method: str = "GET", timeout: float = 60.0, meter: Meter | None = None
             ) -> Iterator[io.BufferedReader]:  # fmt: skip
    """A binary file object over ``url`` (http, https or file://), streamed: memory stays flat.
    ``meter`` learns the size (a file's, or the Content-Length) and counts the bytes read."""
    meter = meter or Meter()
    if url.startswith("file://"):
        try:
            with open(url.removeprefix("file://"), "rb") as handle:
                meter.total = os.fstat(handle.fileno()).st_size
                yield io.BufferedReader(_Stream(iter(partial(handle.read, BLOCK), b""), meter), buffer_size=BLOCK)
        except OSError as exc:
            raise SourceError(f"cannot read {url}: {exc.strerror or exc}") from None
        return
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client, client.stream(method, url) as response:
            if response.status_code >= 400:
                raise SourceError(f"{method} {url} answered HTTP {response.status_code}")
            length = response.headers.get("content-length", "")
            # A compressed body's length counts compressed bytes; the count here is of decoded ones.
            meter.total = int(length) if length.isdigit() and not response.headers.get("content-encoding") else None
            yield io.BufferedReader(_Stream(response.iter_bytes(), meter), buffer_size=BLOCK)
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot read {url}: {exc}") from None


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"{field}: {message}")


def json_object(response: httpx.Response) -> dict[str, Any]:
    """An API answer's JSON object, or {} when the body is not one (an error page, a proxy's HTML)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
