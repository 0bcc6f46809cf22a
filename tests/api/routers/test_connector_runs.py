"""Connector task runs through the API (/1/tasks/{id}/run, /1/runs, /1/runs/{id}/events, the
subscription webhook) against a real Prefect API and app database: runs are flow runs of the
``run-connector-task/sluice`` deployment; no runner serves it here, so runs started through the API
stay ``created``, and finished runs come from calling the flow directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running

from api.main import app
from api.routers import connectors as connectors_router
from deployments import connector_deployments
from flows.run_connector_task import run_connector_task
from sluice import connector_runs, credentials, db
from sluice.settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_api")

HEADER = "sku,name,price\n"
ROWS = ["A1,Red kettle,19.5", "A2,Blue teapot,12", "A3,Green mug,4.25", "A4,Kingfisher print,40"]


@pytest.fixture(scope="module")
def registered(prefect_api):
    for deployment in connector_deployments():
        deployment.apply()


@pytest.fixture
def client(sluice_env, registered):
    """Applications ``shop`` and ``museum`` under names unique to the test (the Prefect server is
    shared by the session, so every test sees only its own applications' runs)."""
    sluice_env(CONNECTOR_CHUNK_SIZE="3")  # two chunks for four rows
    url = get_settings().database_url
    db.upgrade(url)
    suffix = uuid.uuid4().hex[:8]
    apps, keys = {}, {}
    with db.session(url) as session:
        for name in ("shop", "museum"):
            apps[name] = f"{name}-{suffix}"
            credentials.create_tenant(session, apps[name])
            keys[name] = credentials.create_key(session, apps[name], ["connectors-admin"])[1]
    connectors_router._limiter.storage.reset()
    with TestClient(app) as test_client:
        test_client.apps, test_client.keys = apps, keys
        yield test_client


def headers(client, app_id: str = "shop") -> dict[str, str]:
    return {"X-Algolia-Application-Id": client.apps[app_id], "X-Algolia-API-Key": client.keys[app_id]}


def get(client, path: str, app_id: str = "shop", **params):
    return client.get(path, params=params, headers=headers(client, app_id))


def write_csv(path, rows: list[str]) -> str:
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return f"file://{path}"


def make_task(client, csv_url: str, action: str = "replace", trigger: dict | None = None, app_id: str = "shop",
              **extra) -> str:  # fmt: skip
    """A source, a destination and a task of ``app_id``, made through the API."""
    source = client.post("/1/sources", headers=headers(client, app_id), json={
        "type": "csv", "name": "catalog", "input": {"url": csv_url, "uniqueIDColumn": "sku",
                                                   "mapping": {"price": "float"}}})  # fmt: skip
    dest = client.post("/1/destinations", headers=headers(client, app_id),
                       json={"type": "search", "name": "idx", "input": {"indexName": "products"}})  # fmt: skip
    assert source.status_code == 200 and dest.status_code == 200, (source.text, dest.text)
    body = {"sourceID": source.json()["sourceID"], "destinationID": dest.json()["destinationID"],
            "action": action, "trigger": trigger or {"type": "onDemand"}} | extra  # fmt: skip
    response = client.post("/1/tasks", json=body, headers=headers(client, app_id))
    assert response.status_code == 200, response.text
    return response.json()["taskID"]


def run_flow(task_id: str) -> str:
    """Run the task's flow here and now, as the runner would; returns the run's id."""
    state = run_connector_task(task_id=task_id, return_state=True)
    return str(state.state_details.flow_run_id)


def start(client, task_id: str, app_id: str = "shop") -> dict:
    response = client.post(f"/1/tasks/{task_id}/run", headers=headers(client, app_id))
    assert response.status_code == 200, response.text
    return response.json()


def assert_not_found(response) -> None:
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["error"] == {"code": "resource_not_found"} and body["status"] == 404 and body["message"]


def assert_invalid(response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == {"code": "invalid_request"} and body["status"] == 400 and body["message"]


def parse(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- starting runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "run_type"), [("replace", "reindex"), ("save", "update"), ("partial", "update")])
def test_run_now_creates_a_flow_run_of_the_deployment_shown_as_created(client, tmp_path, action, run_type):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS), action=action)

    started = start(client, task_id)

    assert set(started) == {"runID", "createdAt"}
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(uuid.UUID(started["runID"]))
        deployment = prefect.read_deployment_by_name(connector_runs.DEPLOYMENT)
    assert flow_run.deployment_id == deployment.id
    assert flow_run.parameters == {"task_id": task_id, "trigger": "onDemand"}
    shown = get(client, f"/1/runs/{started['runID']}").json()
    assert shown == {
        "runID": started["runID"], "appID": client.apps["shop"], "taskID": task_id, "status": "created",
        "type": run_type, "createdAt": started["createdAt"],
        "progress": {"expectedNbOfEvents": 1, "receivedNbOfEvents": 0},
    }  # fmt: skip
    assert "outcome" not in shown and "startedAt" not in shown


def test_run_now_of_an_unknown_or_another_applications_task_is_404(client, tmp_path):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS))

    unknown = client.post("/1/tasks/no-such-task/run", headers=headers(client))
    theirs = client.post(f"/1/tasks/{task_id}/run", headers=headers(client, "museum"))

    assert_not_found(unknown)
    assert set(unknown.json()) == {"error", "message", "status"}
    assert_not_found(theirs)
    assert get(client, "/1/runs", taskID=task_id).json()["runs"] == []


def test_a_disabled_task_can_still_be_run_now(client, tmp_path):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS), enabled=False)

    started = start(client, task_id)

    assert get(client, f"/1/runs/{started['runID']}").json()["status"] == "created"


# --- finished runs ------------------------------------------------------------------------------------


def test_a_successful_run_reports_its_outcome_times_and_progress(client, tmp_path):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS))

    run_id = run_flow(task_id)

    shown = get(client, f"/1/runs/{run_id}").json()
    assert (shown["status"], shown["outcome"], shown["reasonCode"]) == ("finished", "success", "ok")
    assert "4 records written" in shown["reason"]
    assert (shown["runID"], shown["taskID"], shown["appID"], shown["type"]) == (run_id, task_id,
                                                                                client.apps["shop"], "reindex")  # fmt: skip
    assert parse(shown["createdAt"]) <= parse(shown["startedAt"]) <= parse(shown["finishedAt"])
    events = get(client, f"/1/runs/{run_id}/events", itemsPerPage=100).json()["pagination"]["nbItems"]
    assert events == 7  # fetch, transform, record for each of two chunks; the closing log
    assert shown["progress"] == {"expectedNbOfEvents": events, "receivedNbOfEvents": events}


def test_a_run_that_cannot_read_its_source_is_a_critical_failure(client, tmp_path):
    task_id = make_task(client, f"file://{tmp_path / 'missing.csv'}")

    run_id = run_flow(task_id)

    shown = get(client, f"/1/runs/{run_id}").json()
    assert (shown["status"], shown["outcome"], shown["reasonCode"]) == ("finished", "failure", "critical")
    assert "missing.csv" in shown["reason"]
    assert shown["progress"] == {"expectedNbOfEvents": 1, "receivedNbOfEvents": 1}
    assert "finishedAt" in shown


# --- listing runs ----------------------------------------------------------------------------------


@pytest.fixture
def three_runs(client, tmp_path) -> dict[str, str]:
    """Of task ``a``: a successful run, then (after task ``b``'s failed run) a created one."""
    task_a = make_task(client, write_csv(tmp_path / "a.csv", ROWS))
    task_b = make_task(client, f"file://{tmp_path / 'missing.csv'}", action="save")
    ok = run_flow(task_a)
    failed = run_flow(task_b)
    between = datetime.now(UTC)
    created = start(client, task_a)["runID"]
    return {"task_a": task_a, "task_b": task_b, "ok": ok, "failed": failed, "created": created,
            "between": between.isoformat()}  # fmt: skip


def run_ids(client, app_id: str = "shop", **params) -> list[str]:
    response = get(client, "/1/runs", app_id, **params)
    assert response.status_code == 200, response.text
    return [run["runID"] for run in response.json()["runs"]]


def test_runs_list_with_its_default_window_newest_first(client, three_runs):
    before = datetime.now(UTC)
    body = get(client, "/1/runs").json()

    assert [run["runID"] for run in body["runs"]] == [three_runs[k] for k in ("created", "failed", "ok")]
    assert body["pagination"] == {"nbPages": 1, "page": 1, "nbItems": 3, "itemsPerPage": 10}
    start_at, end_at = parse(body["window"]["startDate"]), parse(body["window"]["endDate"])
    assert end_at - start_at == timedelta(days=7)
    assert abs(end_at - before) < timedelta(seconds=30)
    by_id = {run["runID"]: run for run in body["runs"]}
    assert by_id[three_runs["ok"]]["outcome"] == "success" and by_id[three_runs["failed"]]["outcome"] == "failure"
    assert by_id[three_runs["failed"]]["type"] == "update" and "outcome" not in by_id[three_runs["created"]]
    assert by_id[three_runs["created"]] == get(client, f"/1/runs/{three_runs['created']}").json()


def test_runs_filter_by_status_and_task(client, three_runs):
    ok, failed, created = three_runs["ok"], three_runs["failed"], three_runs["created"]

    assert run_ids(client, status="finished") == [failed, ok]
    assert run_ids(client, status="created") == [created]
    assert run_ids(client, status="finished,created") == [created, failed, ok]
    assert run_ids(client, status=["finished", "created"]) == [created, failed, ok]  # repeating works too
    assert run_ids(client, status="started") == []
    assert run_ids(client, taskID=three_runs["task_a"]) == [created, ok]
    assert run_ids(client, taskID=f"{three_runs['task_a']},{three_runs['task_b']}") == [created, failed, ok]
    assert run_ids(client, taskID=three_runs["task_b"], status="created") == []
    assert run_ids(client, taskID="no-such-task") == []


def test_runs_window_narrows_the_list(client, three_runs):
    past = get(client, "/1/runs", startDate="2020-01-01T00:00:00Z", endDate="2020-01-02T00:00:00Z").json()

    assert past["runs"] == [] and past["pagination"]["nbItems"] == 0
    assert past["window"] == {"startDate": "2020-01-01T00:00:00Z", "endDate": "2020-01-02T00:00:00Z"}
    assert run_ids(client, startDate=three_runs["between"]) == [three_runs["created"]]
    assert run_ids(client, endDate=three_runs["between"]) == [three_runs["failed"], three_runs["ok"]]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert run_ids(client, startDate=later.isoformat(), endDate=(later + timedelta(hours=1)).isoformat()) == []
    # A date with an offset is the same instant as in UTC.
    between_paris = datetime.fromisoformat(three_runs["between"]).astimezone(timezone(timedelta(hours=2)))
    assert run_ids(client, startDate=between_paris.isoformat()) == [three_runs["created"]]


def test_runs_sort_and_page(client, three_runs):
    ok, failed, created = three_runs["ok"], three_runs["failed"], three_runs["created"]

    assert run_ids(client, sort="createdAt", order="asc") == [ok, failed, created]
    assert run_ids(client, sort="createdAt", order="desc") == [created, failed, ok]
    assert run_ids(client, sort="status", order="asc")[0] == created
    assert run_ids(client, sort="status", order="desc")[-1] == created
    first = get(client, "/1/runs", itemsPerPage=2, page=1, order="asc").json()
    second = get(client, "/1/runs", itemsPerPage=2, page=2, order="asc").json()
    beyond = get(client, "/1/runs", itemsPerPage=2, page=3, order="asc").json()
    assert [r["runID"] for r in first["runs"]] == [ok, failed] and [r["runID"] for r in second["runs"]] == [created]
    assert first["pagination"] == {"nbPages": 2, "page": 1, "nbItems": 3, "itemsPerPage": 2}
    assert second["pagination"] == {"nbPages": 2, "page": 2, "nbItems": 3, "itemsPerPage": 2}
    assert beyond["runs"] == [] and beyond["pagination"]["nbItems"] == 3
    by_status = get(client, "/1/runs", sort="status", order="desc", itemsPerPage=2, page=2).json()
    assert [r["runID"] for r in by_status["runs"]] == [created]


def test_sorting_by_status_reads_every_run_of_the_window_in_batches(client, tmp_path, monkeypatch):
    # Prefect answers at most 200 runs a request; batches of 2 read these six runs in three.
    monkeypatch.setattr(connector_runs, "PREFECT_READ_LIMIT", 2)
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS))
    finished = run_flow(task_id)  # the oldest run: in the last batch
    created = [start(client, task_id)["runID"] for _ in range(5)]

    first = get(client, "/1/runs", sort="status", order="desc", itemsPerPage=1).json()
    last = get(client, "/1/runs", sort="status", order="asc", itemsPerPage=4, page=2).json()

    assert [r["runID"] for r in first["runs"]] == [finished]
    assert first["pagination"] == {"nbPages": 6, "page": 1, "nbItems": 6, "itemsPerPage": 1}
    assert [r["status"] for r in last["runs"]] == ["created", "finished"]
    assert [r["runID"] for r in last["runs"]] == [created[0], finished]  # newest first within a status
    assert get(client, "/1/runs", itemsPerPage=100, page=100_000).json()["runs"] == []


def test_another_application_sees_none_of_the_runs_nor_their_events(client, three_runs):
    ok = three_runs["ok"]
    event_id = get(client, f"/1/runs/{ok}/events").json()["events"][0]["eventID"]

    assert run_ids(client, "museum") == []
    assert run_ids(client, "museum", taskID=three_runs["task_a"]) == []
    for run_id in (ok, three_runs["created"]):
        assert_not_found(get(client, f"/1/runs/{run_id}", "museum"))
        assert_not_found(get(client, f"/1/runs/{run_id}/events", "museum"))
    assert_not_found(get(client, f"/1/runs/{ok}/events/{event_id}", "museum"))
    assert get(client, f"/1/runs/{ok}/events/{event_id}").status_code == 200


# --- events ----------------------------------------------------------------------------------------


@pytest.fixture
def finished_run(client, tmp_path) -> str:
    """A run of two chunks whose second has a record that cannot be shaped (under the threshold)."""
    task_id = make_task(client, write_csv(tmp_path / "a.csv", [*ROWS[:3], "A4,Bad price,not-a-number"]),
                        failureThreshold=50)  # fmt: skip
    return run_flow(task_id)


def events(client, run_id: str, **params) -> list[dict]:
    response = get(client, f"/1/runs/{run_id}/events", **params)
    assert response.status_code == 200, response.text
    return response.json()["events"]


def test_events_list_the_runs_steps(client, finished_run):
    before = datetime.now(UTC)
    body = get(client, f"/1/runs/{finished_run}/events").json()

    found = body["events"]
    assert [e["type"] for e in reversed(found)] == ["fetch", "transform", "record"] * 2 + ["log"]  # newest first
    for event in found:
        assert set(event) >= {"eventID", "runID", "status", "type", "batchSize", "publishedAt", "data"}
        assert event["runID"] == finished_run and isinstance(event["data"], dict)
        uuid.UUID(event["eventID"])
        parse(event["publishedAt"])
    assert [e["batchSize"] for e in reversed(found) if e["type"] == "fetch"] == [3, 1]
    closing = found[0]
    assert closing["status"] == "succeeded" and closing["data"]["reasonCode"] == "ok" and closing["data"]["failed"] == 1
    assert body["pagination"] == {"nbPages": 1, "page": 1, "nbItems": 7, "itemsPerPage": 10}
    start_at, end_at = parse(body["window"]["startDate"]), parse(body["window"]["endDate"])
    assert end_at - start_at == timedelta(hours=3) and abs(end_at - before) < timedelta(seconds=30)
    by_id = {e["eventID"]: e for e in found}
    transforms = [e for e in found if e["type"] == "transform"]
    assert all(by_id[e["parentID"]]["type"] == "fetch" for e in transforms)


def test_events_filter_by_type_and_status(client, finished_run):
    def kinds(**params) -> list[tuple[str, str]]:
        return [(e["type"], e["status"]) for e in events(client, finished_run, order="asc", **params)]

    assert kinds(type="fetch") == [("fetch", "succeeded")] * 2
    assert kinds(type="fetch,log") == [("fetch", "succeeded")] * 2 + [("log", "succeeded")]
    assert kinds(status="failed") == [("transform", "failed")]
    assert len(kinds(status="failed,succeeded")) == 7
    assert kinds(status="critical") == []
    assert kinds(type="transform", status="succeeded") == [("transform", "succeeded")]


def test_events_sort_and_page(client, finished_run):
    published = [e["type"] for e in events(client, finished_run, sort="publishedAt", order="asc")]
    by_type = [e["type"] for e in events(client, finished_run, sort="type", order="asc")]
    by_status = [e["status"] for e in events(client, finished_run, sort="status", order="desc")]

    assert published == ["fetch", "transform", "record"] * 2 + ["log"]
    assert by_type == sorted(published)
    assert by_status == ["succeeded"] * 6 + ["failed"]
    pages = [get(client, f"/1/runs/{finished_run}/events", itemsPerPage=3, page=p, order="asc").json()
             for p in (1, 2, 3, 4)]  # fmt: skip
    assert [[e["type"] for e in page["events"]] for page in pages] == [
        ["fetch", "transform", "record"], ["fetch", "transform", "record"], ["log"], []]  # fmt: skip
    assert pages[0]["pagination"] == {"nbPages": 3, "page": 1, "nbItems": 7, "itemsPerPage": 3}


def test_events_window(client, finished_run):
    past = get(client, f"/1/runs/{finished_run}/events", startDate="2020-01-01T00:00:00Z",
               endDate="2020-01-01T01:00:00Z").json()  # fmt: skip
    future = {"startDate": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
              "endDate": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}  # fmt: skip
    # Just before the run, written with an offset: the same instant as in UTC.
    before = parse(events(client, finished_run, order="asc")[0]["publishedAt"]) - timedelta(seconds=1)
    before_paris = before.astimezone(timezone(timedelta(hours=2))).isoformat()

    assert past["events"] == [] and past["window"]["startDate"] == "2020-01-01T00:00:00Z"
    assert events(client, finished_run, **future) == []
    assert events(client, finished_run, endDate=before_paris) == []
    assert len(events(client, finished_run, startDate=before_paris)) == 7


def test_one_event_by_id_and_unknown_ones_are_404(client, finished_run, tmp_path):
    listed = events(client, finished_run)[0]
    other_run = run_flow(make_task(client, f"file://{tmp_path / 'missing.csv'}"))

    assert get(client, f"/1/runs/{finished_run}/events/{listed['eventID']}").json() == listed
    assert_not_found(get(client, f"/1/runs/{finished_run}/events/{uuid.uuid4()}"))
    assert_not_found(get(client, f"/1/runs/{other_run}/events/{listed['eventID']}"))  # not that run's event


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"}, {"status": "finished,done"}, {"sort": "runID"}, {"order": "up"}, {"itemsPerPage": 0},
        {"itemsPerPage": 101}, {"itemsPerPage": "x"}, {"page": 0}, {"page": "x"}, {"startDate": "yesterday"},
        {"endDate": "2024-13-01T00:00:00Z"},
        {"startDate": "2024-01-02T00:00:00Z", "endDate": "2024-01-01T00:00:00Z"},
        {"endDate": "0001-01-01T00:00:00Z"},
    ],
)  # fmt: skip
def test_bad_run_queries_are_400(client, params):
    assert_invalid(get(client, "/1/runs", **params))


@pytest.mark.parametrize(
    "params",
    [
        {"status": "finished"}, {"type": "push"}, {"type": "fetch,push"}, {"sort": "eventID"}, {"order": "up"},
        {"itemsPerPage": 0}, {"itemsPerPage": 101}, {"itemsPerPage": "x"}, {"page": 0}, {"startDate": "yesterday"},
        {"startDate": "2024-01-02T00:00:00Z", "endDate": "2024-01-01T00:00:00Z"},
        {"endDate": "0001-01-01T00:00:00Z"},
    ],
)  # fmt: skip
def test_bad_event_queries_are_400(client, tmp_path, params):
    run_id = start(client, make_task(client, write_csv(tmp_path / "a.csv", ROWS)))["runID"]

    assert_invalid(get(client, f"/1/runs/{run_id}/events", **params))


@flow(name="not-a-connector-run")
def _other_flow() -> None:
    pass


def test_runs_that_are_not_connector_runs_are_404(client):
    with get_client(sync_client=True) as prefect:
        plain = str(prefect.create_flow_run(_other_flow).id)
        tagged = str(prefect.create_flow_run(_other_flow, tags=["app:" + client.apps["shop"]]).id)

    for run_id in ("not-a-uuid", str(uuid.uuid4()), plain, tagged):
        assert_not_found(get(client, f"/1/runs/{run_id}"))
        assert_not_found(get(client, f"/1/runs/{run_id}/events"))
    assert_not_found(get(client, "/1/runs/not-a-uuid/events/not-an-event"))


def test_a_run_is_found_by_its_id_as_shown_only(client, tmp_path):
    run_id = run_flow(make_task(client, write_csv(tmp_path / "a.csv", ROWS)))
    event_id = events(client, run_id)[0]["eventID"]

    for other_form in (run_id.upper(), run_id.replace("-", ""), f"{{{run_id}}}"):
        assert_not_found(get(client, f"/1/runs/{other_form}"))
        assert_not_found(get(client, f"/1/runs/{other_form}/events"))  # not 200 with no events
        assert_not_found(get(client, f"/1/runs/{other_form}/events/{event_id}"))


# --- rate limit ------------------------------------------------------------------------------------


def test_runs_and_events_have_their_own_rate_limit(client, sluice_env, tmp_path):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS))
    run_id = start(client, task_id)["runID"]
    sluice_env(CONNECTORS_OBSERVABILITY_RATE_LIMIT="5/30 seconds")

    answers = [get(client, "/1/runs").status_code for _ in range(5)]
    limited = get(client, "/1/runs")
    events_limited = get(client, f"/1/runs/{run_id}/events")

    assert answers == [200] * 5
    assert limited.status_code == 429 and events_limited.status_code == 429
    assert limited.json()["error"] == {"code": "too_many_requests"} and limited.json()["status"] == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert get(client, "/1/tasks").status_code == 200  # the rest of the API has its own budget
    assert get(client, f"/1/tasks/{task_id}").status_code == 200


# --- the subscription webhook --------------------------------------------------------------------------


def webhook(client, task_id: str) -> str:
    response = get(client, f"/1/tasks/{task_id}/webhook")
    assert response.status_code == 200, response.text
    assert response.json()["taskID"] == task_id
    url = urlsplit(response.json()["url"])
    assert url.path == f"/1/webhooks/tasks/{task_id}" and url.query.startswith("token=")
    return f"{url.path}?{url.query}"


def test_a_webhook_call_starts_a_run_and_calls_before_it_starts_join_it(client, tmp_path):
    task_id = make_task(client, write_csv(tmp_path / "a.csv", ROWS), action="save", trigger={"type": "subscription"})
    path = webhook(client, task_id)

    first = client.post(path)
    second = client.post(path)

    assert first.status_code == 202 and set(first.json()) == {"runID", "createdAt"}
    assert second.status_code == 202 and second.json() == first.json()
    run_id = first.json()["runID"]
    shown = get(client, f"/1/runs/{run_id}").json()
    assert (shown["status"], shown["taskID"], shown["type"]) == ("created", task_id, "update")
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(uuid.UUID(run_id)).parameters == {"task_id": task_id, "trigger": "subscription"}
        prefect.set_flow_run_state(uuid.UUID(run_id), Running(), force=True)  # the runner picked it up
    third = client.post(path)
    assert third.status_code == 202 and third.json()["runID"] != run_id
    assert get(client, f"/1/runs/{run_id}").json()["status"] == "started"


def test_webhook_calls_without_the_right_token_are_403(client, tmp_path):
    csv = write_csv(tmp_path / "a.csv", ROWS)
    task_id = make_task(client, csv, trigger={"type": "subscription"})
    other = make_task(client, csv, trigger={"type": "subscription"})
    token = webhook(client, other).split("token=")[1]

    for path in (f"/1/webhooks/tasks/{task_id}", f"/1/webhooks/tasks/{task_id}?token=",
                 f"/1/webhooks/tasks/{task_id}?token=nope", f"/1/webhooks/tasks/{task_id}?token={token}",
                 f"/1/webhooks/tasks/{task_id}?token=%C3%A9t%C3%A9"):  # fmt: skip
        response = client.post(path)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == {"code": "invalid_credentials"}
    assert get(client, "/1/runs").json()["runs"] == []


def test_only_enabled_subscription_tasks_take_webhook_calls(client, tmp_path):
    csv = write_csv(tmp_path / "a.csv", ROWS)
    on_demand = make_task(client, csv)
    disabled = make_task(client, csv, trigger={"type": "subscription"}, enabled=False)
    deleted = make_task(client, csv, trigger={"type": "subscription"})
    deleted_path = webhook(client, deleted)
    client.delete(f"/1/tasks/{deleted}", headers=headers(client))

    assert_invalid(get(client, f"/1/tasks/{on_demand}/webhook"))
    assert_invalid(client.post(webhook(client, disabled)))
    assert_not_found(client.post(deleted_path))
    assert_not_found(get(client, f"/1/tasks/{disabled}/webhook", "museum"))
    assert get(client, "/1/runs").json()["runs"] == []
