"""The connectors API against a real `sluice up`: Algolia's official Python client (algoliasearch
4.x, ingestion v1 methods) drives a whole story, and schedule tasks run by themselves on their
cron as Prefect deployment schedules — a disabled one never, also after a restart."""

from __future__ import annotations

import subprocess
import time
import warnings

import httpx
import pytest
from algoliasearch.http.exceptions import RequestException
from algoliasearch.http.hosts import Host, HostsCollection
from algoliasearch.ingestion.client import IngestionClientSync
from algoliasearch.ingestion.config import IngestionConfig
from algoliasearch.ingestion.models import (
    ActionType,
    AuthAPIKey,
    AuthenticationCreate,
    AuthenticationType,
    AuthInput,
    DestinationCreate,
    DestinationInput,
    DestinationType,
    OnDemandTriggerInput,
    OnDemandTriggerType,
    ScheduleTriggerInput,
    ScheduleTriggerType,
    SourceCreate,
    SourceCSV,
    SourceInput,
    SourceType,
    TaskCreateTrigger,
    TaskCreateV1,
)

from blocks.search_engine import EmbeddedEngine
from sluice.search import Query
from tasks.destinations import alias_name
from tests.utils.file_server import serve_directory
from tests.utils.sluice_up import SLUICE, clean_env, start, stop

CSV = "sku,name,price,in_stock\n" + "".join(
    f"P{n:03d},{name} {n},{n * 1.5},{'true' if n % 2 else 'false'}\n"
    for n, name in enumerate(["Copper kettle", "Oak table", "Linen shirt", "Kingfisher print"] * 10)
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A real HTTP server for the source URLs."""
    root = tmp_path_factory.mktemp("files")
    (root / "products.csv").write_text(CSV)
    with serve_directory(root) as url:
        yield url


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("connectors-up")
    env = clean_env(data_dir)
    keys = {}
    for app_id in ("shop", "museum"):
        created = subprocess.run([*SLUICE, "apps", "create", app_id], env=env, check=True, capture_output=True,
                                 text=True)  # fmt: skip
        keys[app_id] = created.stdout.strip().splitlines()[-1]
    state = start(data_dir, env) | {"keys": keys}
    yield state
    stop(state)


def algolia(up: dict, app_id: str = "shop") -> IngestionClientSync:
    """The official client with its one host pointed at Sluice."""
    config = IngestionConfig(app_id, up["keys"][app_id], region="us")
    port = int(up["api"].rsplit(":", 1)[1])
    config.hosts = HostsCollection([Host("127.0.0.1", scheme="http", port=port)])
    config.proxies = None
    return IngestionClientSync.create_with_config(config=config)


def poll_run(client: IngestionClientSync, run_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(run_id)
        if run.status in ("finished", "skipped"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} not finished after {timeout} s: {run}")


def test_algolia_client_story(up, files):
    warnings.simplefilter("ignore", DeprecationWarning)  # the v1 methods are deprecated upstream
    client = algolia(up)

    auth = client.create_authentication(AuthenticationCreate(
        type=AuthenticationType.APIKEY, name="file server", input=AuthInput(AuthAPIKey(key="s3cr3t"))))  # fmt: skip
    source = client.create_source(SourceCreate(
        type=SourceType.CSV, name="products", authentication_id=auth.authentication_id,
        input=SourceInput(SourceCSV(url=f"{files}/products.csv", unique_id_column="sku",
                                    mapping={"price": "float", "in_stock": "boolean"}))))  # fmt: skip
    destination = client.create_destination(DestinationCreate(
        type=DestinationType.SEARCH, name="products index", input=DestinationInput(index_name="Products")))  # fmt: skip
    task = client.create_task_v1(TaskCreateV1(
        source_id=source.source_id, destination_id=destination.destination_id, action=ActionType.REPLACE,
        trigger=TaskCreateTrigger(OnDemandTriggerInput(type=OnDemandTriggerType.ONDEMAND))))  # fmt: skip

    started = client.run_task_v1(task.task_id)
    run = poll_run(client, started.run_id)

    assert (run.status, run.outcome, run.reason_code) == ("finished", "success", "ok"), run
    assert run.task_id == task.task_id and run.app_id == "shop" and run.type == "reindex"
    assert run.progress.received_nb_of_events == run.progress.expected_nb_of_events >= 4
    listed = client.list_runs(task_id=[task.task_id])
    assert [r.run_id for r in listed.runs] == [started.run_id] and listed.window.start_date
    events = client.list_events(started.run_id, items_per_page=100).events
    assert {e.type for e in events} == {"fetch", "transform", "record", "log"}
    assert sum(e.batch_size for e in events if e.type == "fetch") == 40
    assert client.get_event(started.run_id, events[0].event_id).event_id == events[0].event_id
    assert client.get_task_v1(task.task_id).trigger.actual_instance.last_run is not None

    engine = EmbeddedEngine(path=str(up["data_dir"] / "search.sqlite3"))
    try:
        alias = alias_name("shop", "Products")
        assert engine.count(alias) == 40
        hits = engine.search(alias, Query(text="kingfisher", limit=50)).hits
        assert len(hits) == 10 and all("Kingfisher" in h.source["name"] for h in hits)
        assert engine.get(alias, "P003") == {"sku": "P003", "name": "Kingfisher print 3", "price": 4.5,
                                             "in_stock": True, "objectID": "P003"}  # fmt: skip
    finally:
        engine.close()

    scheduled = client.create_task_v1(TaskCreateV1(
        source_id=source.source_id, destination_id=destination.destination_id, action=ActionType.SAVE,
        trigger=TaskCreateTrigger(ScheduleTriggerInput(type=ScheduleTriggerType.SCHEDULE, cron="0 3 * * *"))))  # fmt: skip
    assert client.disable_task_v1(scheduled.task_id).task_id == scheduled.task_id
    assert client.get_task_v1(scheduled.task_id).enabled is False
    assert client.enable_task_v1(scheduled.task_id).task_id == scheduled.task_id
    got = client.get_task_v1(scheduled.task_id)
    assert got.enabled is True and got.trigger.actual_instance.next_run.endswith("03:00:00Z")

    with pytest.raises(RequestException) as refused:  # another application sees none of it
        algolia(up, "museum").get_run(started.run_id)
    assert refused.value.status_code == 404


def _schedules(up: dict) -> dict[str, dict]:
    """The connector deployment's schedules as the Prefect UI shows them, by slug."""
    prefect = f"{up['prefect']}/api"
    deployment = httpx.get(f"{prefect}/deployments/name/run-connector-task/sluice", timeout=10).json()
    return {s["slug"]: s for s in deployment["schedules"]}


def _finished_runs(up: dict, client: httpx.Client, task_id: str) -> list[dict]:
    runs = client.get("/1/runs", params={"taskID": task_id, "status": "finished", "itemsPerPage": 100}).json()
    return runs["runs"]


def _wait_for_run(up: dict, client: httpx.Client, task_id: str, after: int, timeout: float = 150) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _finished_runs(up, client, task_id)
        if len(runs) > after:
            return runs
        time.sleep(2)
    raise AssertionError(f"no scheduled run of task {task_id} within {timeout} s")


def _api(up: dict) -> httpx.Client:
    headers = {"X-Algolia-Application-Id": "shop", "X-Algolia-API-Key": up["keys"]["shop"]}
    return httpx.Client(base_url=up["api"], headers=headers, timeout=30)


def test_schedule_tasks_run_on_their_cron_and_disabled_ones_never_also_after_a_restart(up, files):
    with _api(up) as client:
        source = client.post("/1/sources", json={"type": "csv", "name": "s", "input": {
            "url": f"{files}/products.csv", "uniqueIDColumn": "sku"}}).json()["sourceID"]  # fmt: skip
        destination = client.post("/1/destinations", json={"type": "search", "name": "d",
                                                           "input": {"indexName": "every-minute"}}).json()  # fmt: skip
        every_minute = {"sourceID": source, "destinationID": destination["destinationID"], "action": "save",
                        "trigger": {"type": "schedule", "cron": "* * * * *"}}  # fmt: skip
        running = client.post("/1/tasks", json=every_minute).json()["taskID"]
        paused = client.post("/1/tasks", json=every_minute | {"enabled": False}).json()["taskID"]

        schedules = _schedules(up)
        assert schedules[f"task-{running}"]["active"] is True
        assert schedules[f"task-{paused}"]["active"] is False
        assert schedules[f"task-{running}"]["parameters"] == {"task_id": running, "trigger": "schedule"}

        runs = _wait_for_run(up, client, running, after=0)
        assert runs[0]["outcome"] == "success"
        assert client.get(f"/1/tasks/{running}").json()["trigger"]["lastRun"]

    stop(up)  # restart: applying the deployment again drops its schedules; Sluice rebuilds them
    up |= start(up["data_dir"], up["env"])
    with _api(up) as client:
        before = len(_finished_runs(up, client, running))
        _wait_for_run(up, client, running, after=before)
        schedules = _schedules(up)
        assert schedules[f"task-{running}"]["active"] is True and schedules[f"task-{paused}"]["active"] is False
        assert _finished_runs(up, client, paused) == []
        all_runs = client.get("/1/runs", params={"taskID": paused, "itemsPerPage": 100}).json()
        assert all_runs["runs"] == []


def test_cli_runs_a_task_and_follows_it_with_a_progress_bar(up, files):
    with _api(up) as client:
        source = client.post("/1/sources", json={"type": "csv", "name": "cli", "input": {
            "url": f"{files}/products.csv", "uniqueIDColumn": "sku"}}).json()["sourceID"]  # fmt: skip
        destination = client.post("/1/destinations", json={"type": "search", "name": "cli",
                                                           "input": {"indexName": "cli"}}).json()["destinationID"]  # fmt: skip
        task = client.post("/1/tasks", json={"sourceID": source, "destinationID": destination, "action": "replace",
                                             "trigger": {"type": "onDemand"}}).json()["taskID"]  # fmt: skip
        missing = client.post("/1/sources", json={"type": "csv", "name": "gone", "input": {
            "url": f"{files}/missing.csv"}}).json()["sourceID"]  # fmt: skip
        broken = client.post("/1/tasks", json={"sourceID": missing, "destinationID": destination, "action": "save",
                                               "trigger": {"type": "onDemand"}}).json()["taskID"]  # fmt: skip
    env = up["env"] | {"SLUICE_API_URL": up["api"], "SLUICE_APP_ID": "shop", "SLUICE_API_KEY": up["keys"]["shop"]}

    done = subprocess.run([*SLUICE, "connectors", "run", task, "--wait"], env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    failed = subprocess.run([*SLUICE, "connectors", "run", broken, "--wait"], env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip

    shown, failure = done.stdout + done.stderr, failed.stdout + failed.stderr  # the bar and messages go to stderr
    assert done.returncode == 0, shown
    assert "finished" in shown and "100%" in shown and "success: 40 records written to cli" in shown
    assert failed.returncode == 1 and "failure" in failure and "HTTP 404" in failure, failure
