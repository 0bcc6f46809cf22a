"""The interface every source implements (after elastic/connectors' BaseDataSource, typed)."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from sluice.errors import ConfigurationError


class SourceError(Exception):
    """The source cannot be read; ``reason`` says why in a sentence (a run's ``reason``)."""


class Source(ABC):
    """Reads one source's records in chunks, never the whole source at once."""

    source_type: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, configuration: dict[str, Any], secret: dict[str, Any] | None = None):
        self.config = self.config_model.model_validate(configuration)
        self.secret = secret or {}

    def validate_config(self) -> None:  # noqa: B027 - optional hook
        """Local checks beyond the model's; raise ``ConfigurationError`` naming the field."""

    @abstractmethod
    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        """The source's rows, ``chunk_size`` at a time."""


class _Stream(io.RawIOBase):
    """A streamed HTTP body as a file object, so parsers read it chunk by chunk."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._rest = chunks, b""

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
        return size


@contextmanager
def open_url(url: str, method: str = "GET", timeout: float = 60.0) -> Iterator[io.BufferedReader]:
    """A binary file object over ``url`` (http, https or file://), streamed: memory stays flat."""
    if url.startswith("file://"):
        try:
            with open(url.removeprefix("file://"), "rb") as handle:
                yield handle
        except OSError as exc:
            raise SourceError(f"cannot read {url}: {exc.strerror or exc}") from None
        return
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client, client.stream(method, url) as response:
            if response.status_code >= 400:
                raise SourceError(f"{method} {url} answered HTTP {response.status_code}")
            yield io.BufferedReader(_Stream(response.iter_bytes()), buffer_size=1 << 20)
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot read {url}: {exc}") from None


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"{field}: {message}")
