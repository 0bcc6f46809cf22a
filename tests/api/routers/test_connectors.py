"""The connectors API (/1/…): Algolia-style credentials and errors, and authentications — secrets
encrypted at rest and never returned, validation, paging, PATCH, soft delete, application isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.main import app
from api.routers import connectors as connectors_router
from sluice import connectors, credentials, db
from sluice.models import ConnectorAuthentication
from sluice.settings import get_settings

AUTHS = "/1/authentications"
INPUTS = {
    "googleServiceAccount": ({"clientEmail": "sa@p.iam.gserviceaccount.com", "privateKey": "PK-secret-1"},
                             {"clientEmail": "sa@p.iam.gserviceaccount.com"}),
    "basic": ({"username": "ada", "password": "pw-secret-2"}, {"username": "ada"}),
    "apiKey": ({"key": "key-secret-3"}, {}),
    "oauth": ({"url": "https://auth.example.org/token", "client_id": "cid", "client_secret": "cs-secret-4"},
              {"url": "https://auth.example.org/token", "client_id": "cid"}),
    "algolia": ({"appID": "APP1", "apiKey": "ak-secret-5"}, {"appID": "APP1"}),
}  # fmt: skip


@pytest.fixture
def client(sluice_env):
    url = get_settings().database_url
    db.upgrade(url)
    keys = {}
    with db.session(url) as session:
        for name in ("shop", "museum"):
            credentials.create_tenant(session, name)
            keys[name] = credentials.create_key(session, name, ["connectors-admin"])[1]
        keys["ingestion-only"] = credentials.create_key(session, "shop", ["ingestion-manager"])[1]
    connectors_router._limiter.storage.reset()  # every test starts with a fresh rate-limit window
    with TestClient(app) as test_client:
        test_client.keys = keys
        yield test_client


def headers(client, app_id: str = "shop", key: str | None = None) -> dict[str, str]:
    return {"X-Algolia-Application-Id": app_id, "X-Algolia-API-Key": key or client.keys[app_id]}


def create(client, auth_type: str = "basic", name: str = "auth", app_id: str = "shop", **extra) -> str:
    body = {"type": auth_type, "name": name, "input": INPUTS[auth_type][0]} | extra
    response = client.post(AUTHS, json=body, headers=headers(client, app_id))
    assert response.status_code == 200, response.text
    return response.json()["authenticationID"]


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda c: {},
        lambda c: {"X-Algolia-Application-Id": "shop"},
        lambda c: {"X-Algolia-API-Key": c.keys["shop"]},
        lambda c: headers(c, "shop", "sk_nope_nope"),
        lambda c: headers(c, "museum", c.keys["shop"]),  # another application's key
        lambda c: headers(c, "shop", c.keys["ingestion-only"]),  # a key without connectors-admin
    ],
    ids=["none", "no key", "no app id", "bad key", "other app's key", "ingestion key"],
)
def test_credentials_are_refused_with_403_in_algolia_shape(client, make_headers):
    response = client.get(AUTHS, headers=make_headers(client))

    assert response.status_code == 403
    assert response.json() == {"error": {"code": "invalid_credentials"}, "message": "Invalid Application-Id or API-Key",
                               "status": 403}  # fmt: skip


@pytest.mark.parametrize("auth_type", list(INPUTS))
def test_secrets_are_encrypted_at_rest_and_never_returned(client, auth_type):
    secret_input, public_input = INPUTS[auth_type]
    auth_id = create(client, auth_type, name=f"my {auth_type}")

    got = client.get(f"{AUTHS}/{auth_id}", headers=headers(client)).json()
    listed = client.get(AUTHS, headers=headers(client)).json()["authentications"]

    assert got["input"] == public_input and got["type"] == auth_type and got["name"] == f"my {auth_type}"
    assert got["createdAt"].endswith("Z")
    for shown in (got, *listed):
        assert not any(value.endswith("-secret-" + value[-1]) for value in _strings(shown)), shown
    with Session(db.get_engine(get_settings().database_url)) as session:
        row = session.get(ConnectorAuthentication, auth_id)
        secret = next(v for k, v in secret_input.items() if "secret" in str(v))
        assert secret not in row.input_secret and secret not in str(row.input_public)
        assert connectors.authentication_secret(row) == secret_input


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "kerberos", "name": "x", "input": {}}, "type"),
        ({"type": "basic", "input": {"username": "a", "password": "b"}}, "name"),
        ({"type": "basic", "name": "x", "input": {"username": "a"}}, "password"),
        ({"type": "basic", "name": "x", "input": {"key": "k"}}, "input"),
        ({"type": "apiKey", "name": "x", "input": {"key": "k", "extra": 1}}, "extra"),
        ({"type": "basic", "name": "x", "platform": "shopify", "input": {"username": "a", "password": "b"}}, "platform"),
        ({"type": "basic", "name": "x", "input": "user:pass"}, "input"),
        ({"type": "basic", "name": "x", "input": {"username": "a", "password": "b"}, "colour": "red"}, "colour"),
    ],
)  # fmt: skip
def test_invalid_bodies_answer_400_in_algolia_shape_and_store_nothing(client, body, fragment):
    response = client.post(AUTHS, json=body, headers=headers(client))

    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": "invalid_request"} and response.json()["status"] == 400
    assert fragment in response.json()["message"]
    assert client.get(AUTHS, headers=headers(client)).json()["pagination"]["nbItems"] == 0


def test_list_pages_filters_and_sorts(client):
    for i, (auth_type, platform) in enumerate([("basic", None), ("apiKey", "bigcommerce"), ("oauth", "commercetools"),
                                               ("basic", "commercetools"), ("algolia", None)]):  # fmt: skip
        create(client, auth_type, name=f"a{i}", **({"platform": platform} if platform else {}))
    create(client, "basic", name="museum's", app_id="museum")

    def names(**params) -> list[str]:
        body = client.get(AUTHS, params=params, headers=headers(client)).json()
        return [a["name"] for a in body["authentications"]]

    assert names(sort="name", order="asc") == ["a0", "a1", "a2", "a3", "a4"]
    assert names() == ["a4", "a3", "a2", "a1", "a0"]  # createdAt, newest first
    assert names(type="basic", sort="name", order="asc") == ["a0", "a3"]
    assert names(type="basic,algolia", sort="name", order="asc") == ["a0", "a3", "a4"]  # the spec's comma form
    assert names(platform="none,bigcommerce", sort="name", order="asc") == ["a0", "a1", "a4"]
    assert names(platform="commercetools", sort="name", order="asc") == ["a2", "a3"]
    assert names(platform="none", sort="name", order="asc") == ["a0", "a4"]
    page = client.get(AUTHS, params={"itemsPerPage": 2, "page": 3, "sort": "name", "order": "asc"},
                      headers=headers(client)).json()  # fmt: skip
    assert [a["name"] for a in page["authentications"]] == ["a4"]
    assert page["pagination"] == {"nbPages": 3, "page": 3, "nbItems": 5, "itemsPerPage": 2}
    for bad in ({"itemsPerPage": 0}, {"itemsPerPage": 101}, {"page": 0}, {"sort": "secret"}, {"order": "up"},
                {"type": "kerberos"}, {"type": "basic,kerberos"}, {"platform": "shopify"}):  # fmt: skip
        assert client.get(AUTHS, params=bad, headers=headers(client)).status_code == 400, bad


def test_search_by_ids_returns_only_the_applications_own(client):
    mine, other = create(client, name="mine"), create(client, name="theirs", app_id="museum")

    found = client.post(f"{AUTHS}/search", json={"authenticationIDs": [mine, other, "nope"]}, headers=headers(client))

    assert [a["authenticationID"] for a in found.json()] == [mine]


def test_patch_renames_rotates_a_secret_alone_and_changes_type_only_with_a_whole_input(client):
    auth_id = create(client, "basic", name="old")

    renamed = client.patch(f"{AUTHS}/{auth_id}", json={"name": "new"}, headers=headers(client)).json()
    rotated = client.patch(f"{AUTHS}/{auth_id}", json={"input": {"password": "rotated"}}, headers=headers(client))
    half_type = client.patch(f"{AUTHS}/{auth_id}", json={"type": "apiKey"}, headers=headers(client))
    whole_type = client.patch(f"{AUTHS}/{auth_id}", json={"type": "apiKey", "input": {"key": "k2"}},
                              headers=headers(client))  # fmt: skip

    assert renamed["name"] == "new" and renamed["updatedAt"].endswith("Z")
    assert rotated.status_code == 200
    assert half_type.status_code == 400 and "key" in half_type.json()["message"]
    assert whole_type.status_code == 200
    got = client.get(f"{AUTHS}/{auth_id}", headers=headers(client)).json()
    assert (got["type"], got["name"], got["input"]) == ("apiKey", "new", {})
    with Session(db.get_engine(get_settings().database_url)) as session:
        assert connectors.authentication_secret(session.get(ConnectorAuthentication, auth_id)) == {"key": "k2"}


def test_rotating_a_secret_keeps_the_rest_of_the_input(client):
    auth_id = create(client, "basic")
    client.patch(f"{AUTHS}/{auth_id}", json={"input": {"password": "rotated"}}, headers=headers(client))

    with Session(db.get_engine(get_settings().database_url)) as session:
        row = session.get(ConnectorAuthentication, auth_id)
        assert connectors.authentication_secret(row) == {"username": "ada", "password": "rotated"}


def test_delete_is_soft_and_the_authentication_is_gone_from_every_read(client):
    auth_id = create(client)

    deleted = client.delete(f"{AUTHS}/{auth_id}", headers=headers(client))

    assert deleted.status_code == 200 and deleted.json()["deletedAt"].endswith("Z")
    gone = client.get(f"{AUTHS}/{auth_id}", headers=headers(client))
    assert gone.status_code == 404 and gone.json()["error"] == {"code": "resource_not_found"}
    assert client.get(AUTHS, headers=headers(client)).json()["authentications"] == []
    assert client.delete(f"{AUTHS}/{auth_id}", headers=headers(client)).status_code == 404
    with Session(db.get_engine(get_settings().database_url)) as session:
        assert session.get(ConnectorAuthentication, auth_id) is not None


def test_another_application_can_neither_read_nor_change_an_authentication(client):
    auth_id = create(client, name="shop's")
    museum = headers(client, "museum")

    assert client.get(f"{AUTHS}/{auth_id}", headers=museum).status_code == 404
    assert client.patch(f"{AUTHS}/{auth_id}", json={"name": "taken"}, headers=museum).status_code == 404
    assert client.delete(f"{AUTHS}/{auth_id}", headers=museum).status_code == 404
    assert client.get(f"{AUTHS}/{auth_id}", headers=headers(client)).json()["name"] == "shop's"


# --- destinations and sources ---------------------------------------------------------------------------

DESTS, SOURCES = "/1/destinations", "/1/sources"
CSV = {"url": "https://example.org/products.csv", "uniqueIDColumn": "sku", "mapping": {"price": "float"},
       "delimiter": ";"}  # fmt: skip


def test_destinations_and_sources_round_trip_with_their_authentication(client):
    auth_id = create(client, "apiKey")
    destination = client.post(DESTS, json={"type": "search", "name": "products", "authenticationID": auth_id,
                                           "input": {"indexName": "products", "attributesToExclude": ["a.[*].b"]}},
                              headers=headers(client))  # fmt: skip
    source = client.post(SOURCES, json={"type": "csv", "name": "feed", "input": CSV}, headers=headers(client))
    assert destination.status_code == 200 and source.status_code == 200, (destination.text, source.text)
    dest_id, source_id = destination.json()["destinationID"], source.json()["sourceID"]

    got = client.get(f"{DESTS}/{dest_id}", headers=headers(client)).json()
    assert got["input"] == {"indexName": "products", "attributesToExclude": ["a.[*].b"]}
    assert got["authenticationID"] == auth_id and got["type"] == "search"
    assert client.get(f"{SOURCES}/{source_id}", headers=headers(client)).json()["input"] == CSV | {"method": "GET"}
    listed = client.get(DESTS, params={"authenticationID": auth_id}, headers=headers(client)).json()
    assert [d["destinationID"] for d in listed["destinations"]] == [dest_id]
    assert client.get(SOURCES, params={"type": "json"}, headers=headers(client)).json()["sources"] == []
    without = client.get(SOURCES, params={"authenticationID": "none"}, headers=headers(client)).json()["sources"]
    assert [s["sourceID"] for s in without] == [source_id]
    found = client.post(f"{SOURCES}/search", json={"sourceIDs": [source_id, "nope"]}, headers=headers(client))
    assert [s["sourceID"] for s in found.json()] == [source_id]
    patched = client.patch(f"{SOURCES}/{source_id}", json={"input": CSV | {"delimiter": "|"}}, headers=headers(client))
    assert patched.status_code == 200
    assert client.get(f"{SOURCES}/{source_id}", headers=headers(client)).json()["input"]["delimiter"] == "|"


def test_an_authentication_in_use_cannot_be_deleted(client):
    auth_id = create(client, "oauth")
    source_id = client.post(SOURCES, json={"type": "commercetools", "name": "shop", "authenticationID": auth_id,
                                           "input": {"url": "https://api.example.org", "projectKey": "p"}},
                            headers=headers(client)).json()["sourceID"]  # fmt: skip

    refused = client.delete(f"{AUTHS}/{auth_id}", headers=headers(client))

    assert refused.status_code == 400 and source_id in refused.json()["message"]
    assert client.get(f"{AUTHS}/{auth_id}", headers=headers(client)).status_code == 200
    assert client.delete(f"{SOURCES}/{source_id}", headers=headers(client)).status_code == 200
    assert client.delete(f"{AUTHS}/{auth_id}", headers=headers(client)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        (DESTS, {"type": "search", "name": "d", "input": {}}, "indexName or indexPrefix"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a", "indexPrefix": "b"}}, "indexName or"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexPrefix": "p", "recordType": "product"}}, "recordType"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a", "recordType": "sku"}}, "recordType"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a", "attributesToExclude": ["a..b"]}}, "a..b"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a", "attributesToExclude": ["a.[x]"]}}, "a.[x]"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "bad name"}}, "indexName"),
        (DESTS, {"type": "queue", "name": "d", "input": {"indexName": "a"}}, "type"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a"}, "authenticationID": "nope"}, "nope"),
        (DESTS, {"type": "search", "name": "d", "input": {"indexName": "a"}, "platform": "commercetools"}, "platform"),
        (SOURCES, {"type": "csv", "name": "s", "input": {"url": "ftp://x/y.csv"}}, "url"),
        (SOURCES, {"type": "csv", "name": "s", "input": CSV | {"delimiter": " "}}, "delimiter"),
        (SOURCES, {"type": "csv", "name": "s", "input": CSV | {"delimiter": ";;"}}, "delimiter"),
        (SOURCES, {"type": "csv", "name": "s", "input": CSV | {"delimiter": "\n"}}, "delimiter"),
        (SOURCES, {"type": "csv", "name": "s", "input": CSV | {"mapping": {"price": "money"}}}, "mapping"),
        (SOURCES, {"type": "csv", "name": "s", "input": CSV | {"method": "PUT"}}, "method"),
        (SOURCES, {"type": "json", "name": "s", "input": CSV}, "mapping"),
        (SOURCES, {"type": "commercetools", "name": "s", "input": {"url": "u", "projectKey": "p",
                                                                   "locales": ["fr_FR"]}}, "locales"),
        (SOURCES, {"type": "bigquery", "name": "s", "input": {"projectID": "p"}}, "datasetID"),
        (SOURCES, {"type": "docker", "name": "s", "input": {"imageType": "singer", "registry": "quay",
                                                            "image": "tap", "configuration": {}}}, "registry"),
        (SOURCES, {"type": "bigcommerce", "name": "s", "input": {}}, "storeHash"),
    ],
)  # fmt: skip
def test_destination_and_source_inputs_are_checked_per_type(client, path, body, fragment):
    response = client.post(path, json=body, headers=headers(client))

    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": "invalid_request"} and fragment in response.json()["message"]
    assert client.get(path, headers=headers(client)).json()["pagination"]["nbItems"] == 0


def test_requests_over_the_rate_limit_get_429_with_retry_after_even_without_credentials(sluice_env, client):
    sluice_env(CONNECTORS_RATE_LIMIT="5/minute")

    answers = [client.get(AUTHS, headers=headers(client)).status_code for _ in range(5)]
    limited = client.get(AUTHS, headers=headers(client))
    anonymous = client.get(AUTHS)

    assert answers == [200] * 5
    assert limited.status_code == 429 and anonymous.status_code == 429
    assert limited.json()["error"] == {"code": "too_many_requests"} and limited.json()["status"] == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_cli_creates_an_application_whose_key_works(client):
    import subprocess
    import sys

    made = subprocess.run([sys.executable, "-m", "sluice.cli", "apps", "create", "gallery"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    key = made.stdout.strip()

    assert "X-Algolia-Application-Id: gallery" in made.stderr
    assert client.get(AUTHS, headers=headers(client, "gallery", key)).status_code == 200
    assert client.get(AUTHS, headers=headers(client, "shop", key)).status_code == 403


# --- tasks ------------------------------------------------------------------------------------------------

TASKS = "/1/tasks"


@pytest.fixture
def pipeline(client) -> dict[str, str]:
    """A source and a destination of the application "shop"."""
    source = client.post(SOURCES, json={"type": "csv", "name": "feed", "input": CSV}, headers=headers(client)).json()
    dest = client.post(DESTS, json={"type": "search", "name": "idx", "input": {"indexName": "products"}},
                       headers=headers(client)).json()  # fmt: skip
    return {"sourceID": source["sourceID"], "destinationID": dest["destinationID"]}


def make_task(client, pipeline, **body) -> str:
    response = client.post(TASKS, json=pipeline | {"action": "replace", "trigger": {"type": "onDemand"}} | body,
                           headers=headers(client))  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["taskID"]


def test_a_scheduled_task_reports_its_cron_and_next_run_and_can_be_disabled(client, pipeline):
    task_id = make_task(client, pipeline, trigger={"type": "schedule", "cron": "*/5 * * * *"}, failureThreshold=10,
                        input={"timeframe": 7})  # fmt: skip

    got = client.get(f"{TASKS}/{task_id}", headers=headers(client)).json()
    assert got["trigger"]["type"] == "schedule" and got["trigger"]["cron"] == "*/5 * * * *"
    minute = int(got["trigger"]["nextRun"][14:16])
    assert minute % 5 == 0 and got["trigger"]["nextRun"].endswith("Z")
    assert (got["enabled"], got["failureThreshold"], got["input"], got["action"]) == (True, 10, {"timeframe": 7},
                                                                                      "replace")  # fmt: skip
    disabled = client.put(f"{TASKS}/{task_id}/disable", headers=headers(client))
    assert disabled.status_code == 200 and disabled.json()["taskID"] == task_id
    assert client.get(f"{TASKS}/{task_id}", headers=headers(client)).json()["enabled"] is False
    assert client.get(TASKS, params={"enabled": "false"}, headers=headers(client)).json()["pagination"]["nbItems"] == 1
    client.put(f"{TASKS}/{task_id}/enable", headers=headers(client))
    patched = client.patch(f"{TASKS}/{task_id}", json={"trigger": {"cron": "0 3 * * *"}}, headers=headers(client))
    assert patched.status_code == 200
    assert client.get(f"{TASKS}/{task_id}", headers=headers(client)).json()["trigger"]["nextRun"][11:16] == "03:00"


def test_tasks_list_filters_and_search(client, pipeline):
    on_demand = make_task(client, pipeline)
    scheduled = make_task(client, pipeline, action="save", trigger={"type": "schedule", "cron": "0 * * * *"})

    def ids(**params) -> list[str]:
        return [t["taskID"] for t in client.get(TASKS, params=params, headers=headers(client)).json()["tasks"]]

    assert ids() == [scheduled, on_demand]
    assert ids(action="save") == [scheduled] and ids(action="save,replace", order="asc") == [on_demand, scheduled]
    assert ids(triggerType="onDemand") == [on_demand]
    assert ids(sourceID=pipeline["sourceID"], order="asc") == [on_demand, scheduled] and ids(sourceID="x") == []
    found = client.post(f"{TASKS}/search", json={"taskIDs": [scheduled, "nope"]}, headers=headers(client)).json()
    assert [t["taskID"] for t in found] == [scheduled]


def test_sources_and_destinations_used_by_a_task_cannot_be_deleted(client, pipeline):
    task_id = make_task(client, pipeline)

    for path, resource_id in ((SOURCES, pipeline["sourceID"]), (DESTS, pipeline["destinationID"])):
        refused = client.delete(f"{path}/{resource_id}", headers=headers(client))
        assert refused.status_code == 400 and task_id in refused.json()["message"]
    assert client.delete(f"{TASKS}/{task_id}", headers=headers(client)).status_code == 200
    assert client.get(f"{TASKS}/{task_id}", headers=headers(client)).status_code == 404
    assert client.delete(f"{SOURCES}/{pipeline['sourceID']}", headers=headers(client)).status_code == 200


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"action": "upsert"}, "action"),
        ({"trigger": {"type": "hourly"}}, "trigger"),
        ({"trigger": {"type": "schedule"}}, "cron"),
        ({"trigger": {"type": "schedule", "cron": "every minute"}}, "cron"),
        ({"trigger": {"type": "schedule", "cron": "61 * * * *"}}, "cron"),
        ({"trigger": {"type": "onDemand", "cron": "* * * * *"}}, "cron"),
        ({"failureThreshold": 101}, "failureThreshold"),
        ({"failureThreshold": -1}, "failureThreshold"),
        ({"input": {"timeframe": 31}}, "timeframe"),
        ({"input": {"startDate": "2026-11-02T00:00:00Z", "endDate": "2026-11-01T00:00:00Z"}}, "endDate"),
        ({"input": {"startDate": "yesterday", "endDate": "today"}}, "startDate"),
        ({"sourceID": "nope"}, "sourceID"),
        ({"destinationID": "nope"}, "destinationID"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_task_bodies_are_checked(client, pipeline, change, fragment):
    body = pipeline | {"action": "replace", "trigger": {"type": "onDemand"}} | change

    response = client.post(TASKS, json=body, headers=headers(client))

    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": "invalid_request"} and fragment in response.json()["message"]


def test_a_cron_patch_on_an_on_demand_task_is_refused_and_other_apps_see_no_task(client, pipeline):
    task_id = make_task(client, pipeline)

    refused = client.patch(f"{TASKS}/{task_id}", json={"trigger": {"cron": "* * * * *"}}, headers=headers(client))

    assert refused.status_code == 400 and "onDemand" in refused.json()["message"]
    museum = headers(client, "museum")
    assert client.get(f"{TASKS}/{task_id}", headers=museum).status_code == 404
    assert client.put(f"{TASKS}/{task_id}/disable", headers=museum).status_code == 404
    assert client.get(f"{TASKS}/{task_id}", headers=headers(client)).json()["enabled"] is True


# --- no client input yields a 5xx ----------------------------------------------------------------------------

KEYS = ["type", "name", "input", "platform", "authenticationID", "sourceID", "destinationID", "trigger", "action",
        "enabled", "failureThreshold", "url", "cron", "indexName", "attributesToExclude", "mapping", "delimiter",
        "startDate", "timeframe", "authenticationIDs", "sourceIDs", "destinationIDs", "taskIDs", "extra"]  # fmt: skip
QUERY_KEYS = ["page", "itemsPerPage", "sort", "order", "type", "platform", "authenticationID", "action", "enabled",
              "sourceID", "destinationID", "triggerType", "status", "taskID", "startDate", "endDate"]  # fmt: skip


def _fuzz(rng, known: list[str], depth: int = 0):
    kind = rng.choice(["str", "int", "bool", "none", "id", "list", "dict"] if depth < 3 else ["str", "int", "none"])
    return {
        "str": lambda: rng.choice(
            [
                "",
                "csv",
                "basic",
                "schedule",
                "* * * * *",
                "a.[*].b",
                "é\u0000",
                "x" * 300,
                "http://x",
                "file:///etc/passwd",
                "2024-01-17T00:00:00Z",
                ";",
                "none",
            ]
        ),
        "int": lambda: rng.choice([0, -1, 101, 2**63, 10]),
        "bool": lambda: rng.choice([True, False]),
        "none": lambda: None,
        "id": lambda: rng.choice(known),
        "list": lambda: [_fuzz(rng, known, depth + 1) for _ in range(rng.randint(0, 3))],
        "dict": lambda: {rng.choice(KEYS): _fuzz(rng, known, depth + 1) for _ in range(rng.randint(0, 4))},
    }[kind]()


def test_random_requests_never_cause_a_server_error(sluice_env, client, pipeline):
    """Seeded random bodies, paths and query strings on every route that takes input."""
    import random

    sluice_env(CONNECTORS_RATE_LIMIT="10000/minute")
    rng = random.Random(20261122)
    task_id = make_task(client, pipeline)
    known = [
        pipeline["sourceID"],
        pipeline["destinationID"],
        task_id,
        "not-an-id",
        "00000000-0000-0000-0000-000000000000",
    ]
    collections = ["/1/authentications", "/1/destinations", "/1/sources", "/1/tasks"]
    statuses: dict[int, int] = {}
    for _ in range(400):
        base = rng.choice(collections)
        route = rng.choice(["create", "search", "patch", "list", "get", "delete", "enable"])
        if route == "create":
            request = ("POST", base, _fuzz(rng, known) if rng.random() < 0.2 else
                       {k: _fuzz(rng, known) for k in rng.sample(KEYS, rng.randint(1, 6))})  # fmt: skip
        elif route == "search":
            request = ("POST", f"{base}/search", {rng.choice(KEYS): _fuzz(rng, known)})
        elif route == "patch":
            request = ("PATCH", f"{base}/{rng.choice(known)}", {k: _fuzz(rng, known) for k in rng.sample(KEYS, 3)})
        elif route == "list":
            params = {k: str(_fuzz(rng, known)) for k in rng.sample(QUERY_KEYS, rng.randint(1, 5))}
            request = ("GET", base, None, params)
        elif route == "enable":
            request = ("PUT", f"/1/tasks/{rng.choice(known)}/{rng.choice(['enable', 'disable'])}", None)
        else:
            request = ("GET" if route == "get" else "DELETE", f"{base}/{rng.choice(known)}", None)
        method, path, body, *params = request
        response = client.request(method, path, json=body, params=params[0] if params else None,
                                  headers=headers(client))  # fmt: skip
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, body, params, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error", "message", "status"}, response.text
    assert 429 not in statuses and statuses.get(400, 0) > 100 and statuses.get(200, 0) > 10, statuses
