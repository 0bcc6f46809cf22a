"""Google BigQuery: a table, date-sharded tables (GA4 ``events_YYYYMMDD``) or a custom SQL query,
read page by page through the REST API so memory stays flat.

Dates come from the task's input: ``{startDate, endDate}`` (on demand) or ``{timeframe: N}``, the
last N days (schedules; 1 when unset). They pick the shards of a ``tablePrefix`` and are the
``@startDate``/``@endDate`` parameters of a ``customSQLRequest``; a plain ``table`` is read whole.
A ``tablePrefix`` source is incremental: its state names the newest shard read, and the next run
reads only newer shards.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import chain, islice
from typing import Any

import requests
from google.api_core import exceptions as api_errors
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.oauth2 import service_account

from sluice.connectors import SourceBigQuery
from sluice.errors import ConfigurationError
from sluice.settings import get_settings
from tasks.sources.base import Source, SourceError, require

# The tables Google Analytics exports into: one shard a day, named prefix + YYYYMMDD.
PRESET_PREFIXES = {"ga4": "events_", "ga360": "ga_sessions_"}
TOKEN_URI = "https://oauth2.googleapis.com/token"


class BigQuerySource(Source):
    source_type = "bigquery"
    config_model = SourceBigQuery
    # How long one API call may keep retrying (the client's default is 10 minutes, far too long
    # for a run to hang on an unreachable endpoint).
    retry_seconds: float = 60.0

    # --- configuration ---------------------------------------------------------------------------------

    def validate_config(self) -> None:
        given = [f for f in ("table", "tablePrefix", "customSQLRequest") if getattr(self.config, f)]
        require(len(given) <= 1, given[-1] if given else "table",
                f"give only one of table, tablePrefix and customSQLRequest, not {' and '.join(given)}")  # fmt: skip
        require(bool(given or self.config.dataType), "table",
                "one of table, tablePrefix, customSQLRequest or dataType (ga4, ga360) is required")  # fmt: skip
        self._dates()  # a malformed startDate/endDate/timeframe is a configuration error too
        if not get_settings().BIGQUERY_API_ENDPOINT:
            self._credentials()

    @property
    def prefix(self) -> str | None:
        """The shards' name prefix: the one given, or the one dataType implies when nothing else is."""
        if self.config.tablePrefix:
            return self.config.tablePrefix
        if not (self.config.table or self.config.customSQLRequest) and self.config.dataType:
            return PRESET_PREFIXES[self.config.dataType]
        return None

    def _dates(self) -> tuple[date | None, date | None]:
        """The run's date range (inclusive); (None, None) when the run names none."""
        given = self.task_input
        if given.get("startDate") or given.get("endDate"):
            return _day(given.get("startDate"), "startDate"), _day(given.get("endDate"), "endDate")
        if "timeframe" in given or self.scheduled:
            days = given.get("timeframe") or 1
            require(isinstance(days, int) and days >= 1, "timeframe", f"must be a number of days, not {days!r}")
            today = datetime.now(UTC).date()
            # The last N days: GA4 writes a day's shard once the day is over, so today's rarely exists yet.
            return today - timedelta(days=days), today
        return None, None

    def _credentials(self) -> service_account.Credentials:
        email, key = self.secret.get("clientEmail"), self.secret.get("privateKey")
        require(bool(email and key), "authenticationID",
                "a BigQuery source needs a googleServiceAccount authentication (clientEmail, privateKey)")  # fmt: skip
        # Keys pasted from a service-account JSON file often keep their newlines escaped.
        info = {"client_email": email, "private_key": key.replace("\\n", "\n"), "token_uri": TOKEN_URI}
        try:
            return service_account.Credentials.from_service_account_info(info)
        except (ValueError, TypeError, auth_errors.GoogleAuthError):
            raise ConfigurationError("privateKey: not a PEM private key of a Google service account") from None

    def _client(self) -> bigquery.Client:
        endpoint = get_settings().BIGQUERY_API_ENDPOINT
        if endpoint:  # an emulator: no Google sign-in
            return bigquery.Client(project=self.config.projectID, credentials=AnonymousCredentials(),
                                   client_options=ClientOptions(api_endpoint=endpoint))  # fmt: skip
        return bigquery.Client(project=self.config.projectID, credentials=self._credentials())

    @property
    def _retry(self):
        return bigquery.DEFAULT_RETRY.with_timeout(self.retry_seconds)

    @property
    def dataset(self) -> str:
        return f"{self.config.projectID}.{self.config.datasetID}"

    # --- the Source interface ----------------------------------------------------------------------------

    def check_connection(self) -> None:
        client = self._client()
        with self._reasons(f"reach the BigQuery dataset {self.dataset}"):
            client.get_dataset(self.dataset, retry=self._retry)
            if self.config.table:
                client.get_table(f"{self.dataset}.{self.config.table}", retry=self._retry)

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        self.validate_config()
        client = self._client()
        with self._reasons(f"read the BigQuery dataset {self.dataset}"):
            rows = self._rows(client, chunk_size)
        while True:
            # Rows arrive a page at a time, so fetching (and failing) happens while a chunk is taken.
            with self._reasons(f"read the BigQuery dataset {self.dataset}"):
                chunk = [json_safe(dict(row.items())) for row in islice(rows, chunk_size)]
            if not chunk:
                return
            self.meter.read += len(chunk)
            yield chunk

    # --- reading -------------------------------------------------------------------------------------------

    def _rows(self, client: bigquery.Client, page_size: int) -> Iterator[bigquery.Row]:
        if self.config.customSQLRequest:
            return self._query(client, page_size)
        if self.config.table:
            table = client.get_table(f"{self.dataset}.{self.config.table}", retry=self._retry)
            self.meter.total = table.num_rows
            return iter(client.list_rows(table, page_size=page_size, retry=self._retry))
        shards = [client.get_table(ref, retry=self._retry) for ref in self._shards(client)]
        self.meter.total = sum(shard.num_rows or 0 for shard in shards)
        return chain.from_iterable(self._shard_rows(client, shard, page_size) for shard in shards)

    def _shards(self, client: bigquery.Client) -> list[bigquery.TableReference]:
        """The dataset's shards of the prefix within the run's dates and after the state's, oldest first
        (listed, not read through a wildcard table, which not every BigQuery offers)."""
        start, end = self._dates()
        last = (self.state or {}).get("lastTable") or ""
        if not last.startswith(self.prefix):  # the state of another prefix says nothing about these
            last = ""
        client.get_dataset(self.dataset, retry=self._retry)  # a missing dataset lists as empty on some emulators
        shards = []
        for item in client.list_tables(self.dataset, retry=self._retry):
            day = _shard_day(item.table_id, self.prefix)
            if day and (start is None or day >= start) and (end is None or day <= end) and item.table_id > last:
                shards.append(item.reference)
        return sorted(shards, key=lambda ref: ref.table_id)

    def _shard_rows(self, client: bigquery.Client, shard: bigquery.Table, page_size: int) -> Iterator[bigquery.Row]:
        yield from client.list_rows(shard, page_size=page_size, retry=self._retry)
        self.state = {"lastTable": shard.table_id}  # the flow keeps it only if the whole run succeeds

    def _query(self, client: bigquery.Client, page_size: int) -> Iterator[bigquery.Row]:
        sql = self.config.customSQLRequest
        start, end = self._dates()
        parameters = []
        for name, day in (("startDate", start), ("endDate", end)):
            if re.search(rf"@{name}\b", sql):  # pass only the parameters the query uses
                require(day is not None, "customSQLRequest",
                        f"uses @{name}, but the task's input gives no {name} (nor a timeframe)")  # fmt: skip
                parameters.append(bigquery.ScalarQueryParameter(name, "DATE", day))
        job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=parameters), retry=self._retry)
        result = job.result(page_size=page_size, retry=self._retry)
        self.meter.total = result.total_rows
        return iter(result)

    @contextmanager
    def _reasons(self, doing: str) -> Iterator[None]:
        """Google's errors as a SourceError whose reason is one sentence."""
        try:
            yield
        except api_errors.NotFound as exc:
            raise SourceError(f"cannot {doing}: {_api_message(exc)} (check projectID, datasetID and the table "
                              "names, and that the service account may see them)") from None  # fmt: skip
        except (api_errors.Unauthorized, api_errors.Forbidden) as exc:
            raise SourceError(f"cannot {doing}: the service account was refused ({_api_message(exc)})") from None
        except api_errors.RetryError as exc:
            cause = exc.cause if exc.cause is not None else exc
            where = get_settings().BIGQUERY_API_ENDPOINT or "the BigQuery API"
            raise SourceError(f"cannot {doing}: {where} did not answer within {self.retry_seconds:g} s "
                              f"({type(cause).__name__})") from None  # fmt: skip
        except api_errors.GoogleAPICallError as exc:
            raise SourceError(f"cannot {doing}: BigQuery answered {exc.code} ({_api_message(exc)})") from None
        except auth_errors.GoogleAuthError as exc:
            raise SourceError(f"cannot {doing}: Google refused the service account's sign-in ({_sentence(exc)})"
                              ) from None  # fmt: skip
        except requests.RequestException as exc:
            raise SourceError(f"cannot {doing}: the BigQuery API could not be reached ({type(exc).__name__})") from None


def json_safe(value: Any) -> Any:
    """A BigQuery value as JSON: dates and times as ISO strings, NUMERIC as float, BYTES as base64,
    STRUCTs and ARRAYs as dicts and lists; NaN and infinities, which JSON lacks, as null."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    return str(value)


def _shard_day(table_id: str, prefix: str) -> date | None:
    """The day a shard holds (``events_20240131`` → 2024-01-31); None for any other table."""
    suffix = table_id.removeprefix(prefix)
    if suffix == table_id or not re.fullmatch(r"\d{8}", suffix):  # e.g. events_intraday_20240131
        return None
    try:
        return datetime.strptime(suffix, "%Y%m%d").date()
    except ValueError:
        return None


def _day(value: Any, field: str) -> date | None:
    """An RFC 3339 date or timestamp (the task's startDate/endDate) as a day."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value)).date()
    except ValueError:
        raise ConfigurationError(f"{field}: {value!r} is not an RFC 3339 date") from None


def _api_message(exc: api_errors.GoogleAPICallError) -> str:
    """The API's own words, without the request line ("GET https://...: ") the client puts first."""
    first = exc.errors[0] if exc.errors and isinstance(exc.errors[0], dict) else {}
    return _sentence(first.get("message") or exc.message)


def _sentence(message: Any) -> str:
    """The first line of an error message, without its trailing period."""
    return (str(message).strip().splitlines() or [""])[0].rstrip(".")
