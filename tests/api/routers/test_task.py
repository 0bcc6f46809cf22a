"""The /task and /stat API against a real Prefect API. Deployments are registered but no runner
serves them here, so created tasks stay scheduled: the end-to-end story is in test_sluice_up."""

from __future__ import annotations

import random
import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import app
from blocks.search_engine import EmbeddedEngine
from deployments import lifecycle_deployments
from sluice.search import AliasAction, BulkAction
from sluice.settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def registered(prefect_api):
    for deployment in lifecycle_deployments():
        deployment.apply()


@pytest.fixture
def client(sluice_env, registered):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def engine(client):
    engine = EmbeddedEngine(path=str(get_settings().search_path))
    yield engine
    engine.close()


def _cancel_all(client: TestClient) -> None:
    for task in client.get("/task", params={"page_size": 200}).json()["results"]:
        if task["active"]:
            client.delete(f"/task/{task['task_id']}")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "model"),
        ({"model": "video", "action": "REINDEX"}, "model"),
        ({"model": "image", "action": "REINDEKS"}, "action"),
        ({"model": "image"}, "action"),
        ({"model": "image", "action": "REINDEX", "index_suffix": "Bad Name!"}, "index_suffix"),
        ({"model": "image", "action": "REINDEX", "index_suffix": "-leading"}, "index_suffix"),
        ({"model": "image", "action": "REINDEX", "index_suffix": 7}, "index_suffix"),
        ({"model": "image", "action": "REINDEX", "colour": "red"}, "colour"),
        ({"model": "image", "action": "POINT_ALIAS", "index_suffix": "x"}, "alias"),
        ({"model": "image", "action": "DELETE_INDEX"}, "index_suffix"),
        ({"model": "image", "action": "UPDATE_INDEX"}, "since_date"),
        ({"model": "image", "action": "UPDATE_INDEX", "since_date": "yesterday"}, "since_date"),
        ({"model": "image", "action": "REINDEX", "callback_url": "ftp://x"}, "callback_url"),
        (
            {"model": "image", "action": "DELETE_INDEX", "index_suffix": "x", "force_delete": "maybe"},
            "force_delete",
        ),
        (["model", "image"], "body"),
    ],
)
def test_create_task_malformed_body_is_400(client, body, fragment):
    response = client.post("/task", json=body)

    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_create_task_not_json_is_400(client):
    response = client.post("/task", content=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["message"]


def test_create_task_starts_a_flow_run_and_reports_it(client):
    response = client.post("/task", json={"model": "audio", "action": "REINDEX", "index_suffix": "api1"})

    assert response.status_code == 202, response.text
    created = response.json()
    uuid.UUID(created["task_id"])
    assert created["status_check"].endswith(f"/task/{created['task_id']}")
    status = client.get(f"/task/{created['task_id']}").json()
    assert status | {"start_time": None} == status | {
        "task_id": created["task_id"], "active": True, "model": "audio", "action": "REINDEX",
        "progress": 0.0, "error": False, "is_bad_request": False, "start_time": None,
    }  # fmt: skip
    assert status["parameters"]["index_suffix"] == "api1"
    _cancel_all(client)


def test_create_task_while_another_runs_for_the_model_is_409(client):
    first = client.post("/task", json={"model": "image", "action": "REINDEX"}).json()

    response = client.post("/task", json={"model": "image", "action": "PROMOTE"})

    assert response.status_code == 409
    assert first["task_id"] in response.json()["message"]
    assert client.post("/task", json={"model": "audio", "action": "REINDEX"}).status_code == 202
    _cancel_all(client)


def test_cancel_task_stops_it_and_a_finished_one_is_409(client):
    task_id = client.post("/task", json={"model": "image", "action": "REINDEX"}).json()["task_id"]

    response = client.delete(f"/task/{task_id}")

    assert response.status_code == 202
    assert response.json()["active"] is False and response.json()["error"] is True
    assert client.get(f"/task/{task_id}").json()["state"] == "Cancelled"
    assert client.delete(f"/task/{task_id}").status_code == 409


def test_read_task_unknown_or_malformed_id_is_404(client):
    assert client.get(f"/task/{uuid.uuid4()}").status_code == 404
    assert client.get("/task/not-a-uuid").status_code == 404
    assert client.delete(f"/task/{uuid.uuid4()}").status_code == 404
    assert "no task" in client.get("/task/123").json()["message"]


def test_read_tasks_pages_newest_first(client):
    ids = [client.post("/task", json={"model": m, "action": "REINDEX"}).json()["task_id"] for m in ("image",)]
    _cancel_all(client)
    ids += [client.post("/task", json={"model": "image", "action": "REINDEX"}).json()["task_id"]]
    _cancel_all(client)

    page1 = client.get("/task", params={"page": 1, "page_size": 1}).json()
    page2 = client.get("/task", params={"page": 2, "page_size": 1}).json()

    assert page1["count"] >= 2 and page1["page_size"] == 1
    assert page1["results"][0]["task_id"] == ids[-1]
    assert page2["results"][0]["task_id"] != ids[-1]
    assert client.get("/task", params={"page": 0}).status_code == 400
    assert client.get("/task", params={"page_size": 1000}).status_code == 400


def test_delete_index_serving_an_alias_is_400_and_deletes_nothing(client, engine):
    engine.create_index("image-live", {"properties": {"title": {"type": "text"}}})
    engine.bulk("image-live", [BulkAction("index", "1", {"title": "kept"})])
    engine.update_aliases([AliasAction("add", "image-live", "image")])

    response = client.post("/task", json={"model": "image", "action": "DELETE_INDEX", "index_suffix": "live"})

    assert response.status_code == 400
    assert "serves alias image" in response.json()["message"]
    assert engine.count("image-live") == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"action": "DELETE_INDEX", "index_suffix": "missing"}, "does not exist"),
        ({"action": "POINT_ALIAS", "index_suffix": "missing", "alias": "image"}, "does not exist"),
        ({"action": "POINT_ALIAS", "index_suffix": "live", "alias": "image-other"}, "is an index"),
        ({"action": "REINDEX", "index_suffix": "live"}, "already exists"),
        ({"action": "CREATE_AND_POPULATE_FILTERED_INDEX", "origin_index_suffix": "nope"}, "neither"),
    ],
)
def test_create_task_refused_by_the_index_state_is_400(client, engine, body, fragment):
    engine.create_index("image-live", {"properties": {}})
    engine.create_index("image-other", {"properties": {}})

    response = client.post("/task", json={"model": "image", **body})

    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert engine.list_indices("image") == ["image-live", "image-other"]


def test_stat_reports_indexes_aliases_and_missing_names(client, engine):
    engine.create_index("image-a", {"properties": {"title": {"type": "text"}}})
    engine.bulk("image-a", [BulkAction("index", str(i), {"title": "t"}) for i in range(3)])
    engine.update_aliases([AliasAction("add", "image-a", "image")])

    assert client.get("/stat/image-a").json() == {
        "exists": True,
        "is_alias": False,
        "alt_names": ["image"],
        "count": 3,
    }
    assert client.get("/stat/image").json() == {
        "exists": True,
        "is_alias": True,
        "alt_names": ["image-a"],
        "count": 3,
    }
    assert client.get("/stat/nothing").json() == {
        "exists": False,
        "is_alias": None,
        "alt_names": None,
        "count": None,
    }


def test_stat_refuses_wildcards_and_lists(client):
    for name in ("image*", "a,b", "Image", "_all"):
        response = client.get(f"/stat/{name}")
        assert response.status_code == 400, name
        assert "name" in response.json()["message"]


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "bool", "none", "list", "dict", "uuid", "suffix", "date"]
    kind = rng.choice(kinds if depth < 2 else kinds[:5])
    return {
        "str": lambda: "".join(rng.choice("aZ-_ *,/\\\"'é\u0000") for _ in range(rng.randint(0, 12))),
        "int": lambda: rng.choice([0, -1, 2**63, 7]),
        "float": lambda: rng.choice([1.5, float("1e308")]),
        "bool": lambda: rng.choice([True, False]),
        "none": lambda: None,
        "list": lambda: [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        "dict": lambda: {rng.choice(FIELDS): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))},
        "uuid": lambda: str(uuid.uuid4()),
        "suffix": lambda: rng.choice(["a", "live", "x-1", "-bad", "UP"]),
        "date": lambda: rng.choice(["2026-01-01", "2026-13-40", "yesterday"]),
    }[kind]()


FIELDS = ["model", "action", "index_suffix", "alias", "force_delete", "origin_index_suffix",
          "destination_index_suffix", "since_date", "callback_url", "extra"]  # fmt: skip
ACTIONS = ["REINDEX", "UPDATE_INDEX", "CREATE_AND_POPULATE_FILTERED_INDEX", "POINT_ALIAS", "DELETE_INDEX", "PROMOTE"]


def test_random_bodies_never_cause_a_server_error(client, engine):
    engine.create_index("image-live", {"properties": {}})
    engine.update_aliases([AliasAction("add", "image-live", "image")])
    rng = random.Random(20261122)
    seen: set[int] = set()
    for _ in range(300):
        body = {field: _random_value(rng) for field in rng.sample(FIELDS, rng.randint(0, len(FIELDS)))}
        if rng.random() < 0.7:  # mostly well-formed heads, so the deeper checks get exercised too
            body |= {"model": rng.choice(["image", "audio"]), "action": rng.choice(ACTIONS)}
        response = client.post("/task", json=body)
        seen.add(response.status_code)
        assert response.status_code < 500, (body, response.text)
        assert "message" in response.json()
        _cancel_all(client)
    assert {400, 202} <= seen
    assert engine.get_aliases() == {"image": ["image-live"]}
