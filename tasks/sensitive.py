"""The sensitive-terms list: a file path or an http(s) URL, one term per line."""

from __future__ import annotations

from pathlib import Path

import httpx
from prefect import task

from sluice.errors import ConfigurationError

MAX_TERMS_BYTES = 10 * 1024 * 1024


def parse_terms(text: str) -> list[str]:
    """Non-empty, stripped, case-folded, de-duplicated lines, in first-seen order."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        term = line.strip().lower()
        if term and not term.startswith("#"):
            seen.setdefault(term)
    return list(seen)


@task(name="load-sensitive-terms", retries=2, retry_delay_seconds=2)
def load_sensitive_terms(source: str) -> list[str]:
    """Read the list; an unreadable or empty list fails the run rather than filtering nothing."""
    try:
        if source.startswith(("http://", "https://")):
            response = httpx.get(source, timeout=30, follow_redirects=True)
            response.raise_for_status()
            text = response.text[:MAX_TERMS_BYTES]
        else:
            text = Path(source).expanduser().read_text(encoding="utf-8")
    except (OSError, httpx.HTTPError) as exc:
        raise ConfigurationError(f"SLUICE_SENSITIVE_TERMS: cannot read {source!r}: {exc}") from exc
    terms = parse_terms(text)
    if not terms:
        raise ConfigurationError(f"SLUICE_SENSITIVE_TERMS: {source!r} holds no terms")
    return terms
