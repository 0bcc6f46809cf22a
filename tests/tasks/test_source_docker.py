"""DockerSource against a real podman service (Docker Engine API) and tiny busybox images whose
entrypoint is a shell-script tap printing Singer (or Airbyte) messages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sluice import db
from sluice.errors import ConfigurationError
from sluice.models import ConnectorSource, ConnectorTask
from tasks.sources.base import SourceError
from tasks.sources.docker import DockerSource
from tests.utils.podman import Podman, missing

FIXTURES = Path(__file__).parent / "fixtures" / "singer"
IMAGE = "sluicetest/tap"

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def podman():
    with Podman() as service:
        for tag in ("ok", "crash", "hang", "malformed", "probe", "airbyte"):
            service.image(f"docker.io/{IMAGE}:{tag}", (FIXTURES / f"{tag if tag != 'ok' else 'tap'}.sh").read_text())
        service.image(f"docker.io/{IMAGE}:custom", (FIXTURES / "tap.sh").read_text(), entrypoint=False)
        client = service.client()
        service.docker = client
        yield service
        client.close()


@pytest.fixture
def env(podman, sluice_env):
    sluice_env(DOCKER_URL=podman.url, TAP_TIME_LIMIT="20", TAP_MEMORY_LIMIT="64m")
    yield sluice_env
    assert podman.docker.containers.list(all=True) == [], "a tap's container was left behind"


def source(version: str = "ok", image_type: str = "singer", state: dict | None = None, **configuration) -> DockerSource:
    made = DockerSource({"imageType": image_type, "registry": "dockerhub", "image": IMAGE, "version": version,
                         "configuration": configuration}, state=state)  # fmt: skip
    made.validate_config()
    return made


def test_records_come_in_chunks_with_the_state_at_the_end(env):
    tap = source(count=5)
    chunks = list(tap.get_docs(2))
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert chunks[0] == [{"id": 1, "name": "item 1", "objectID": "1"},  # one stream: no _stream; id from the key
                         {"id": 2, "name": "item 2", "objectID": "2"}]  # fmt: skip
    assert tap.state == {"singer_state": {"bookmarks": {"items": {"id": 5}}}}


def test_the_state_passed_back_reads_only_new_records(env):
    first = source(count=3)
    assert [row["id"] for chunk in first.get_docs(10) for row in chunk] == [1, 2, 3]
    second = source(count=6, state=first.state)
    assert [row["id"] for chunk in second.get_docs(10) for row in chunk] == [4, 5, 6]
    assert second.state == {"singer_state": {"bookmarks": {"items": {"id": 6}}}}


def test_several_streams_name_the_stream_of_each_record(env):
    rows = [row for chunk in source(count=1, both=True).get_docs(10) for row in chunk]
    assert rows == [{"id": 1, "name": "item 1", "objectID": "1"},
                    {"login": "ada", "_stream": "users", "objectID": "ada"}]  # fmt: skip  # lazily, without a catalog
    selected = source(count=1, sluice={"streams": ["items", "users"]})
    rows = [row for chunk in selected.get_docs(10) for row in chunk]  # a catalog: known up front
    assert rows == [{"id": 1, "name": "item 1", "_stream": "items", "objectID": "1"},
                    {"login": "ada", "_stream": "users", "objectID": "ada"}]  # fmt: skip
    only_users = source(count=3, sluice={"streams": ["users"]})
    assert [row for chunk in only_users.get_docs(10) for row in chunk] == [{"login": "ada", "objectID": "ada"}]


def test_discover_returns_the_catalog_streams(env):
    streams = source().discover()
    assert [stream["tap_stream_id"] for stream in streams] == ["items", "users"]
    assert streams[0]["key_properties"] == ["id"] and streams[0]["schema"]["properties"]["id"] == {"type": "integer"}
    with pytest.raises(SourceError, match="no stream 'orders'"):
        list(source(sluice={"streams": ["orders"]}).get_docs(10))


def test_a_crash_is_a_source_error_with_the_stderr_tail_and_keeps_the_state(env, podman):
    tap = source("crash", state={"singer_state": {"bookmarks": {"items": {"id": 0}}}})
    with pytest.raises(SourceError, match=r"exited with code 3: starting the sync\nboom: the API answered 401"):
        list(tap.get_docs(10))
    assert tap.state == {"singer_state": {"bookmarks": {"items": {"id": 0}}}}  # not the crashed run's STATE


def test_a_hanging_tap_is_killed_at_the_time_limit(env, podman):
    env(TAP_TIME_LIMIT="1.5")
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 1.5 s"):
        list(source("hang").get_docs(10))
    assert time.monotonic() - started < 15


def test_a_malformed_line_names_its_number_and_the_container_goes(env, podman):
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"line 3 is not a Singer message: 'Traceback \(most recent call last\)"):
        list(source("malformed").get_docs(10))
    assert time.monotonic() - started < 15  # removed while still running, not waited for


def test_an_abandoned_run_removes_its_container(env, podman):
    docs = source("hang").get_docs(1)
    assert next(docs) == [{"id": 1, "objectID": "1"}]
    assert len(podman.docker.containers.list(all=True)) == 1
    docs.close()  # the flow stops reading (e.g. a failed chunk write)
    assert podman.docker.containers.list(all=True) == []


def test_the_config_is_read_only_and_there_is_no_network(env):
    rows = [row for chunk in source("probe", secret_key="s3cr3t").get_docs(10) for row in chunk]
    assert rows == [{"writable": "no", "interfaces": "lo", "user_config": "{secret_key: s3cr3t}"}]


def test_the_sluice_options_are_checked_and_not_passed_to_the_tap(env):
    with pytest.raises(ConfigurationError, match="configuration.sluice.network"):
        source(sluice={"network": "host"})
    with pytest.raises(ConfigurationError, match="configuration.sluice: unknown option 'netwrok'"):
        source(sluice={"netwrok": "none"})
    with pytest.raises(ConfigurationError, match="configuration.sluice.runner: local taps are disabled"):
        source(sluice={"runner": "local"})
    rows = [row for chunk in source("probe", sluice={"network": "none"}).get_docs(10) for row in chunk]
    assert rows[0]["user_config"] == "{}"


def test_an_absent_image_is_pulled_and_a_failed_pull_is_a_source_error(env):
    with pytest.raises(SourceError, match=r"cannot pull docker.io/sluicetest/tap:absent"):
        list(source("absent").get_docs(10))


def test_an_unreachable_docker_api_is_a_source_error(env, tmp_path):
    env(DOCKER_URL=f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(SourceError, match="cannot reach the Docker API"):
        list(source().get_docs(10))


def test_a_custom_image_runs_its_own_command_with_the_files_in_variables(env):
    tap = source("custom", image_type="custom", state={"singer_state": {"bookmarks": {"items": {"id": 1}}}}, count=2)
    assert [row for chunk in tap.get_docs(10) for row in chunk] == [{"id": 2, "name": "item 2", "objectID": "2"}]
    with pytest.raises(SourceError, match="custom images have no discover mode"):
        tap.discover()


def test_an_airbyte_image_syncs_with_a_configured_catalog_and_its_state(env):
    tap = source("airbyte", image_type="airbyte")
    assert tap.discover()[0] | {"airbyte": None} == {
        "tap_stream_id": "orders", "stream": "orders", "schema": {"type": "object"}, "key_properties": ["n"],
        "airbyte": None,
    }  # fmt: skip
    assert [row for chunk in tap.get_docs(3) for row in chunk] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert tap.state["airbyte_state"][0]["stream"]["stream_state"] == {"n": 4}
    again = source("airbyte", image_type="airbyte", state={"airbyte_state": [{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "orders"}, "stream_state": {"n": 2}}}]})  # fmt: skip
    assert [row for chunk in again.get_docs(3) for row in chunk] == [{"n": 3}, {"n": 4}]


def test_a_connector_task_runs_a_singer_image_and_a_second_run_loads_only_new_records(env, prefect_api):
    """The story through the API: a docker source, a save task, two runs; the tap's STATE is the cursor."""
    from blocks.embedded import EmbeddedEngine
    from flows.run_connector_task import run_connector_task
    from sluice.settings import get_settings
    from tasks.destinations import alias_name
    from tests.utils.connector_tasks import TENANT, api_task, create_shop, run_summary, task_cursor

    url = get_settings().database_url
    create_shop(url)
    task_id = api_task(url, source_type="docker", index="Taps", action="save", source_input={
        "imageType": "singer", "registry": "dockerhub", "image": IMAGE, "version": "ok",
        "configuration": {"count": 4}})  # fmt: skip

    first = run_connector_task(task_id=task_id, return_state=True)
    assert first.is_completed(), first.message
    assert task_cursor(url, task_id) == {"singer_state": {"bookmarks": {"items": {"id": 4}}}}
    with db.session(url) as session:  # the tap now has two more records to offer
        source = session.get(ConnectorSource, session.get(ConnectorTask, task_id).source_id)
        source.input = source.input | {"configuration": {"count": 6}}
        session.add(source)
        session.commit()
    second = run_connector_task(task_id=task_id, return_state=True)

    assert second.is_completed(), second.message
    assert run_summary(url, first)["rows"] == 4 and run_summary(url, second)["rows"] == 2
    engine = EmbeddedEngine(path=str(get_settings().search_path))
    try:
        assert engine.count(alias_name(TENANT, "Taps")) == 6
        assert engine.get(alias_name(TENANT, "Taps"), "5") == {"id": 5, "name": "item 5", "objectID": "5"}
    finally:
        engine.close()


def test_discover_through_the_api_lists_the_taps_streams(env, prefect_api):
    """POST /1/sources/{id}/discover starts a discover run; the run (here executed by calling the flow
    as the runner would) keeps the streams, and GET /1/sources/{id}/discover returns them."""
    from fastapi.testclient import TestClient

    from api.main import app
    from deployments import connector_deployments
    from flows.discover_source import discover_source
    from sluice import credentials
    from sluice.settings import get_settings
    from tests.utils.connector_tasks import TENANT, create_shop

    url = get_settings().database_url
    create_shop(url)
    with db.session(url) as session:
        key = credentials.create_key(session, TENANT, ["connectors-admin"])[1]
    for deployment in connector_deployments():
        deployment.apply()
    headers = {"X-Algolia-Application-Id": TENANT, "X-Algolia-API-Key": key}
    body = {"type": "docker", "name": "tap", "input": {"imageType": "singer", "registry": "dockerhub", "image": IMAGE,
                                                      "version": "ok", "configuration": {"count": 1}}}  # fmt: skip
    with TestClient(app) as client:
        source_id = client.post("/1/sources", json=body, headers=headers).json()["sourceID"]
        before = client.get(f"/1/sources/{source_id}/discover", headers=headers)
        started = client.post(f"/1/sources/{source_id}/discover", headers=headers)
        state = discover_source(source_id=source_id, return_state=True)
        streams = client.get(f"/1/sources/{source_id}/discover", headers=headers)
        csv = client.post("/1/sources", json={"type": "csv", "name": "c", "input": {"url": "http://x/a.csv"}},
                          headers=headers).json()["sourceID"]  # fmt: skip
        refused = client.post(f"/1/sources/{csv}/discover", headers=headers)

    assert before.status_code == 404 and before.json()["error"]["code"] == "resource_not_found"
    assert started.status_code == 200 and set(started.json()) == {"runID", "createdAt"}
    assert state.is_completed(), state.message
    assert streams.status_code == 200
    assert [s["tap_stream_id"] for s in streams.json()["streams"]] == ["items", "users"]
    assert refused.status_code == 400 and "no streams to discover" in refused.json()["message"]


def test_a_crashing_tap_fails_the_run_with_its_stderr_and_keeps_the_tasks_cursor(env, prefect_api):
    from flows.run_connector_task import run_connector_task
    from sluice.settings import get_settings
    from tests.utils.connector_tasks import api_task, create_shop, run_summary, task_cursor

    url = get_settings().database_url
    create_shop(url)
    task_id = api_task(url, source_type="docker", index="Taps", action="save", source_input={
        "imageType": "singer", "registry": "dockerhub", "image": IMAGE, "version": "ok",
        "configuration": {"count": 2}})  # fmt: skip
    assert run_connector_task(task_id=task_id, return_state=True).is_completed()
    kept = task_cursor(url, task_id)
    with db.session(url) as session:  # the same task, now on an image whose tap crashes
        source = session.get(ConnectorSource, session.get(ConnectorTask, task_id).source_id)
        source.input = source.input | {"version": "crash"}
        session.add(source)
        session.commit()

    state = run_connector_task(task_id=task_id, return_state=True)

    assert state.is_failed()
    summary = run_summary(url, state)
    assert summary["reasonCode"] == "critical" and "exited with code 3" in summary["reason"], summary
    assert task_cursor(url, task_id) == kept
