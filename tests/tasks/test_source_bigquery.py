"""The BigQuery source against a real emulator (bqemulator) and the real google-cloud-bigquery client:
a table read in chunks with JSON-safe values, GA4-like date shards picked by the run's dates or
timeframe, the incremental state, custom SQL with date parameters, configuration errors and the
API's errors as one-sentence reasons; and a connector task run end to end into an index."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import bigquery

from blocks.search_engine import EmbeddedEngine
from flows.run_connector_task import run_connector_task
from sluice import credentials, db
from sluice.errors import ConfigurationError
from sluice.models import ConnectorTask
from sluice.settings import get_settings
from tasks.destinations import alias_name
from tasks.sources.base import SourceError
from tasks.sources.bigquery import BigQuerySource
from tests.conftest import free_port
from tests.utils.bqemulator import PROJECT, bqemulator, emulator_client
from tests.utils.connector_tasks import api_task

SIZE_FIELDS = [bigquery.SchemaField("w", "FLOAT64"), bigquery.SchemaField("unit", "STRING")]
PARAM_FIELDS = [bigquery.SchemaField("key", "STRING"), bigquery.SchemaField("value", "INT64")]
ITEM_SCHEMA = [
    bigquery.SchemaField("sku", "STRING"),
    bigquery.SchemaField("n", "INT64"),
    bigquery.SchemaField("price", "NUMERIC"),
    bigquery.SchemaField("ok", "BOOL"),
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("at", "TIMESTAMP"),
    bigquery.SchemaField("local", "DATETIME"),
    bigquery.SchemaField("blob", "BYTES"),
    bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
    bigquery.SchemaField("size", "RECORD", fields=SIZE_FIELDS),
    bigquery.SchemaField("params", "RECORD", mode="REPEATED", fields=PARAM_FIELDS),
]
EVENT_SCHEMA = [bigquery.SchemaField("event_name", "STRING"), bigquery.SchemaField("event_date", "STRING")]


def item(n: int) -> dict:
    return {"sku": f"S{n}", "n": n, "price": "19.50", "ok": n % 2 == 0, "day": "2024-01-02",
            "at": "2024-01-02T03:04:05Z", "local": "2024-01-02T03:04:05", "blob": base64.b64encode(b"hi").decode(),
            "tags": ["a", "b"], "size": {"w": 1.5, "unit": "cm"}, "params": [{"key": "k", "value": n}]}  # fmt: skip


@pytest.fixture(scope="module")
def emulator_url():
    with bqemulator() as url:
        yield url


@pytest.fixture
def bq(emulator_url, sluice_env) -> bigquery.Client:
    """The real client on the emulator, with Sluice's settings pointing at it too."""
    sluice_env(BIGQUERY_API_ENDPOINT=emulator_url)
    return emulator_client(emulator_url)


@pytest.fixture
def dataset(bq) -> str:
    name = f"ds_{uuid.uuid4().hex[:10]}"
    bq.create_dataset(name)
    return name


def make_table(client: bigquery.Client, dataset: str, name: str, rows: list[dict], schema=ITEM_SCHEMA) -> None:
    table = client.create_table(bigquery.Table(f"{PROJECT}.{dataset}.{name}", schema=schema))
    if rows:
        assert client.insert_rows_json(table, rows) == []


def make_shards(client: bigquery.Client, dataset: str, days: list[str], prefix: str = "events_") -> None:
    """GA4-like daily shards, two events each."""
    for day in days:
        make_table(client, dataset, f"{prefix}{day}",
                   [{"event_name": f"view-{day}-{i}", "event_date": day} for i in range(2)], EVENT_SCHEMA)  # fmt: skip


def source(dataset: str, task_input=None, state=None, scheduled=False, **config) -> BigQuerySource:
    return BigQuerySource({"projectID": PROJECT, "datasetID": dataset, **config}, task_input=task_input,
                          state=state, scheduled=scheduled)  # fmt: skip


def read(src: BigQuerySource, chunk_size: int = 1000) -> list[list[dict]]:
    return list(src.get_docs(chunk_size))


def event_days(chunks: list[list[dict]]) -> list[str]:
    return sorted({row["event_date"] for chunk in chunks for row in chunk})


# --- reading ---------------------------------------------------------------------------------------------


def test_a_table_is_read_in_chunks_with_json_safe_values(bq, dataset):
    make_table(bq, dataset, "items", [item(n) for n in range(25)])
    src = source(dataset, table="items")
    src.check_connection()

    chunks = read(src, chunk_size=10)

    assert [len(c) for c in chunks] == [10, 10, 5]
    rows = {row["sku"]: row for chunk in chunks for row in chunk}
    assert rows["S2"] == {"sku": "S2", "n": 2, "price": 19.5, "ok": True, "day": "2024-01-02",
                          "at": "2024-01-02T03:04:05+00:00", "local": "2024-01-02T03:04:05", "blob": "aGk=",
                          "tags": ["a", "b"], "size": {"w": 1.5, "unit": "cm"}, "params": [{"key": "k", "value": 2}]}  # fmt: skip
    assert src.progress() == 1.0
    assert src.state is None  # a whole table has no cursor


def test_date_shards_are_read_only_within_the_start_and_end_dates(bq, dataset):
    make_shards(bq, dataset, [f"2024010{d}" for d in range(1, 6)])
    make_shards(bq, dataset, ["20240103"], prefix="events_intraday_")  # GA4's partial day: not a daily shard
    make_shards(bq, dataset, ["20240103"], prefix="other_")
    src = source(dataset, {"startDate": "2024-01-02T00:00:00Z", "endDate": "2024-01-04T00:00:00Z"}, dataType="ga4")

    chunks = read(src, chunk_size=4)

    assert [len(c) for c in chunks] == [4, 2]  # chunks run across shards
    assert event_days(chunks) == ["20240102", "20240103", "20240104"]
    assert src.state == {"lastTable": "events_20240104"}
    assert src.progress() == 1.0


def test_a_scheduled_run_reads_the_last_timeframe_days(bq, dataset):
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).strftime("%Y%m%d") for n in range(6)]  # today and the 5 days before
    make_shards(bq, dataset, days, prefix="ga_sessions_")

    two_days = read(source(dataset, {"timeframe": 2}, scheduled=True, dataType="ga360"))
    default = read(source(dataset, scheduled=True, dataType="ga360"))

    assert event_days(two_days) == sorted(days[:3])
    assert event_days(default) == sorted(days[:2])  # timeframe 1: yesterday (and today, if it exists yet)


def test_a_second_run_reads_only_shards_newer_than_the_first_runs_state(bq, dataset):
    make_shards(bq, dataset, ["20240101", "20240102", "20240103"])
    first = source(dataset, tablePrefix="events_")
    assert event_days(read(first)) == ["20240101", "20240102", "20240103"]

    make_shards(bq, dataset, ["20240104"])
    second = source(dataset, state=first.state, tablePrefix="events_")
    chunks = read(second)

    assert first.state == {"lastTable": "events_20240103"}
    assert [len(c) for c in chunks] == [2] and event_days(chunks) == ["20240104"]
    assert second.state == {"lastTable": "events_20240104"}
    third = source(dataset, state=second.state, tablePrefix="events_")
    assert read(third) == [] and third.state == second.state  # nothing new: the cursor stays


def test_a_custom_sql_request_runs_with_the_dates_as_parameters(bq, dataset):
    make_table(bq, dataset, "items", [item(n) | {"day": f"2024-01-{n + 1:02d}"} for n in range(10)])
    sql = f"SELECT sku, day FROM `{PROJECT}.{dataset}.items` WHERE day BETWEEN @startDate AND @endDate ORDER BY n"

    src = source(dataset, {"startDate": "2024-01-03T00:00:00Z", "endDate": "2024-01-05T00:00:00Z"},
                 customSQLRequest=sql)  # fmt: skip
    chunks = read(src, chunk_size=2)
    plain = read(source(dataset, customSQLRequest=f"SELECT COUNT(*) AS total FROM `{PROJECT}.{dataset}.items`"))

    assert chunks == [[{"sku": "S2", "day": "2024-01-03"}, {"sku": "S3", "day": "2024-01-04"}],
                      [{"sku": "S4", "day": "2024-01-05"}]]  # fmt: skip
    assert src.progress() == 1.0
    assert plain == [[{"total": 10}]]


# --- errors ----------------------------------------------------------------------------------------------


def _pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()  # fmt: skip


@pytest.mark.parametrize(
    ("config", "task_input", "field"),
    [
        ({"table": "t", "tablePrefix": "events_"}, None, "tablePrefix"),
        ({"table": "t", "customSQLRequest": "SELECT 1"}, None, "customSQLRequest"),
        ({}, None, "table"),
        ({"dataType": "ga4"}, {"startDate": "yesterday", "endDate": "2024-01-02"}, "startDate"),
        ({"customSQLRequest": "SELECT @startDate AS d"}, None, "customSQLRequest"),
    ],
)
def test_a_bad_configuration_names_the_field(bq, config, task_input, field):
    src = source("shop", task_input, **config)

    with pytest.raises(ConfigurationError, match=rf"^{field}: "):
        src.validate_config()
        read(src)  # a query's parameters are checked as it is built


def test_without_an_emulator_a_service_account_is_required_and_its_key_checked(sluice_env):
    sluice_env()  # no BIGQUERY_API_ENDPOINT: real Google credentials
    assert get_settings().BIGQUERY_API_ENDPOINT is None

    def check(secret):
        BigQuerySource({"projectID": "p", "datasetID": "d", "table": "t"}, secret).validate_config()

    with pytest.raises(ConfigurationError, match="^authenticationID: "):
        check(None)
    with pytest.raises(ConfigurationError, match="^privateKey: "):
        check({"clientEmail": "sa@p.iam.gserviceaccount.com", "privateKey": "not a key"})
    # A key with its newlines escaped, as pasted from a service-account JSON file, is fine.
    check({"clientEmail": "sa@p.iam.gserviceaccount.com", "privateKey": _pem_key().replace("\n", "\\n")})


def test_a_missing_dataset_or_table_is_a_source_error_with_a_reason(bq, dataset):
    with pytest.raises(SourceError, match=r"cannot reach the BigQuery dataset test-proj\.nope: Not found.*check"):
        source("nope", table="items").check_connection()
    with pytest.raises(SourceError, match=r"Not found.*missing"):
        source(dataset, table="missing").check_connection()
    with pytest.raises(SourceError, match=r"cannot read the BigQuery dataset .*Not found.*missing"):
        read(source(dataset, table="missing"))
    with pytest.raises(SourceError, match="Not found"):
        read(source("nope", tablePrefix="events_"))
    with pytest.raises(SourceError, match="BigQuery answered 400") as bad_sql:
        read(source(dataset, customSQLRequest="SELEC nonsense"))
    assert "\n" not in str(bad_sql.value)


def test_an_unreachable_endpoint_is_a_source_error_with_a_reason(sluice_env, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sluice_env(BIGQUERY_API_ENDPOINT=endpoint)
    monkeypatch.setattr(BigQuerySource, "retry_seconds", 2.0)

    with pytest.raises(SourceError, match=rf"{endpoint} did not answer within 2 s \(ConnectionError\)"):
        source("shop", table="items").check_connection()
    with pytest.raises(SourceError, match="did not answer"):
        read(source("shop", tablePrefix="events_"))


# --- a connector task run ------------------------------------------------------------------------------


@pytest.fixture
def app_db(bq, sluice_env, monkeypatch, prefect_api):
    """An app database with the "shop" tenant; bigquery sources run by this connector (the registry
    entry is added here until registry.py lists it)."""
    sluice_env(CONNECTOR_CHUNK_SIZE="3")
    url = get_settings().database_url
    db.upgrade(url)
    with db.session(url) as session:
        credentials.create_tenant(session, "shop")
    return url


@pytest.fixture
def index_engine(app_db):
    engine = EmbeddedEngine(path=str(get_settings().search_path))
    yield engine
    engine.close()


def make_task(url: str, source_input: dict, action: str = "replace", task_input: dict | None = None) -> str:
    return api_task(
        url, source_type="bigquery", source_input=source_input, index="Warehouse", action=action, task_input=task_input
    )


ALIAS = alias_name("shop", "Warehouse")


def test_a_connector_task_loads_a_bigquery_table_into_the_index(app_db, index_engine, bq, dataset):
    make_table(bq, dataset, "items", [item(n) for n in range(7)])
    task_id = make_task(app_db, {"projectID": PROJECT, "datasetID": dataset, "table": "items",
                                 "uniqueIDColumn": "sku"})  # fmt: skip

    state = run_connector_task(task_id=task_id, return_state=True)

    assert state.is_completed(), state.message
    assert index_engine.count(ALIAS) == 7
    assert index_engine.get(ALIAS, "S3") == item(3) | {"price": 19.5, "at": "2024-01-02T03:04:05+00:00",
                                                       "blob": "aGk=", "objectID": "S3"}  # fmt: skip


def test_a_connector_task_over_date_shards_loads_only_new_shards_on_its_second_run(app_db, index_engine, bq, dataset):
    # The flow passes the task's input (the dates) and its saved cursor (the state) to the source.
    make_shards(bq, dataset, ["20240101", "20240102", "20240103"])
    task_id = make_task(app_db, {"projectID": PROJECT, "datasetID": dataset, "dataType": "ga4",
                                 "uniqueIDColumn": "event_name"}, action="save",
                        task_input={"startDate": "2024-01-02T00:00:00Z", "endDate": "2024-01-31T00:00:00Z"})  # fmt: skip

    first = run_connector_task(task_id=task_id, return_state=True)
    make_shards(bq, dataset, ["20240104"])
    second = run_connector_task(task_id=task_id, return_state=True)

    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    assert "2 records" in second.message  # only the new shard's
    assert index_engine.count(ALIAS) == 6  # 0102, 0103, then 0104: two events each
    with db.session(app_db) as session:
        assert session.get(ConnectorTask, task_id).cursor == {"lastTable": "events_20240104"}
