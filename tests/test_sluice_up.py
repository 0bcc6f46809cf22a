"""The acceptance story against a real `sluice up` (Prefect server, runner, API; embedded engine)
with the sample data loaded, driven over HTTP and through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from blocks.search_engine import EmbeddedEngine
from sluice.search import AliasAction
from tests.conftest import free_port
from tests.flows.test_index_lifecycle import _is_sensitive
from tests.utils.sluice_up import SLUICE, clean_env, start, stop


@pytest.fixture(scope="module")
def sluice_up(tmp_path_factory):
    """`sluice up` on free ports and a fresh data dir, with the sample rows loaded."""
    data_dir = tmp_path_factory.mktemp("sluice-up")
    env = clean_env(data_dir)
    subprocess.run([*SLUICE, "load-sample"], env=env, check=True, capture_output=True)
    up = start(data_dir, env)
    yield up
    stop(up)


@pytest.fixture
def api(sluice_up):
    with httpx.Client(base_url=sluice_up["api"], timeout=30) as client:
        yield client


@pytest.fixture
def engine(sluice_up):
    engine = EmbeddedEngine(path=str(sluice_up["data_dir"] / "search.sqlite3"))
    yield engine
    engine.close()


def run_task(api: httpx.Client, body: dict, timeout: float = 180) -> dict:
    response = api.post("/task", json=body)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/task/{task_id}").json()
        if not status["active"]:
            return status
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} still active after {timeout} s: {status}")


def test_reindex_filter_point_alias_story(sluice_up, api, engine):
    done = {"active": False, "progress": 100.0, "error": False}

    reindexed = run_task(api, {"model": "image", "action": "REINDEX", "index_suffix": "s1"})
    filtered = run_task(api, {"model": "image", "action": "CREATE_AND_POPULATE_FILTERED_INDEX",
                              "origin_index_suffix": "s1"})  # fmt: skip
    pointed = run_task(api, {"model": "image", "action": "POINT_ALIAS", "index_suffix": "s1", "alias": "image"})
    pointed_filtered = run_task(api, {"model": "image", "action": "POINT_ALIAS",
                                      "index_suffix": "s1-filtered", "alias": "image-filtered"})  # fmt: skip

    for status in (reindexed, filtered, pointed, pointed_filtered):
        assert {k: status[k] for k in done} == done, status
        assert status["start_timestamp"] <= status["finish_timestamp"]
    stat = api.get("/stat/image-s1").json()
    assert stat == {"exists": True, "is_alias": False, "alt_names": ["image"], "count": 2374}
    docs = [hit.source for batch in engine.scan("image-s1") for hit in batch]
    expected_filtered = sum(not _is_sensitive(doc) for doc in docs)
    assert api.get("/stat/image-s1-filtered").json()["count"] == expected_filtered < 2374
    assert api.get("/stat/image-filtered").json()["alt_names"] == ["image-s1-filtered"]

    refused = api.post("/task", json={"model": "image", "action": "DELETE_INDEX", "index_suffix": "s1"})
    assert refused.status_code == 400
    assert api.get("/stat/image-s1").json()["count"] == 2374


def test_promote_in_one_call_replaces_the_live_indexes(sluice_up, api):
    first = run_task(api, {"model": "audio", "action": "PROMOTE", "index_suffix": "p1"})
    second = run_task(api, {"model": "audio", "action": "PROMOTE", "index_suffix": "p2"})

    assert first["error"] is False and second["error"] is False, (first, second)
    assert api.get("/stat/audio").json() == {"exists": True, "is_alias": True, "alt_names": ["audio-p2"], "count": 100}
    assert api.get("/stat/audio-filtered").json()["alt_names"] == ["audio-p2-filtered"]
    assert api.get("/stat/audio-p1").json()["exists"] is False
    listed = api.get("/task", params={"model": "audio"}).json()
    assert [t["task_id"] for t in listed["results"][:2]] == [second["task_id"], first["task_id"]]


def test_flow_rechecks_at_run_time_and_reports_a_bad_request(sluice_up, api, engine):
    engine.create_index("audio-doomed", {"properties": {}})
    response = api.post("/task", json={"model": "audio", "action": "DELETE_INDEX", "index_suffix": "doomed"})
    assert response.status_code == 202
    # Before the runner picks the run up (seconds), the index starts serving an alias.
    engine.update_aliases([AliasAction("add", "audio-doomed", "audio-keep")])
    task_id = response.json()["task_id"]

    deadline = time.monotonic() + 120
    while (status := api.get(f"/task/{task_id}").json())["active"] and time.monotonic() < deadline:
        time.sleep(0.5)

    assert status["error"] is True and status["is_bad_request"] is True, status
    assert "serves alias audio-keep" in status["error_message"]
    assert engine.index_exists("audio-doomed")


def test_cli_runs_a_task_with_a_progress_bar(sluice_up):
    env = sluice_up["env"] | {"SLUICE_API_URL": sluice_up["api"], "COLUMNS": "100"}

    result = subprocess.run([*SLUICE, "reindex", "audio", "--suffix", "cli", "--wait"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr and "done" in result.stderr
    refused = subprocess.run([*SLUICE, "reindex", "audio", "--suffix", "cli"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "already exists" in refused.stderr


def test_prefect_ui_is_served(sluice_up):
    assert httpx.get(sluice_up["prefect"], timeout=10).status_code == 200
    assert httpx.get(f"{sluice_up['prefect']}/api/health", timeout=10).json() is True


def test_sigterm_stops_everything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLUICE_"))}
    env |= {"SLUICE_DATA_DIR": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    api_port, prefect_port = free_port(), free_port()
    proc = subprocess.Popen([*SLUICE, "up", "--api-port", str(api_port), "--prefect-port", str(prefect_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)

    proc.send_signal(signal.SIGTERM)
    proc.wait(60)

    for port in (api_port, prefect_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert Path(tmp_path / "logs" / "api.log").exists()


def _running_processors(prefect: str) -> list[str]:
    deployment = httpx.get(f"{prefect}/api/deployments/name/process-documents/sluice", timeout=10).json()
    body = {
        "deployments": {"id": {"any_": [deployment["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
    }
    return [run["id"] for run in httpx.post(f"{prefect}/api/flow_runs/filter", json=body, timeout=10).json()]


def _wait_indexed(api: httpx.Client, key: str, ids: list[str], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        params = {"tenant": "acme", "include_document_status": "true", "page_size": 1000, "document_id_in": ids}
        statuses = {d["document_id"]: d["status"] for d in api.get(DOCUMENTS, params=params,
                                                                   headers={"X-Auth": key}).json()["results"]}  # fmt: skip
        if all(s not in ("ingesting", "indexing", "indexing_update") for s in statuses.values()) or (
            time.monotonic() > deadline
        ):
            return statuses
        time.sleep(0.3)


DOCUMENTS = "/v0/service/ingestion/documents"


def test_documents_are_processed_by_the_kept_running_processor(sluice_up, api, tmp_path):
    env = sluice_up["env"] | {"SLUICE_API_URL": sluice_up["api"], "COLUMNS": "100"}
    for command in (["tenants", "create", "acme"], ["tenants", "add-index", "acme", "main"]):
        subprocess.run([*SLUICE, *command], env=env, check=True, capture_output=True)
    key = subprocess.run([*SLUICE, "keys", "create", "acme"], env=env, check=True, capture_output=True,
                         text=True).stdout.strip()  # fmt: skip
    lines = [{"document_id": hashlib.sha1(f"doc-{i}".encode()).hexdigest(), "title": f"Report {i}",
              "allow_access_rights": [{"name": "public"}],
              "document_content": {"content_type": "text/plain", "from_": {"plain_text_string": f"quarterly {i}"}}}
             for i in range(120)] + [{"title": "draft", "is_indexable": False}]  # fmt: skip
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))

    pushed = subprocess.run([*SLUICE, "documents", "push", str(path), "--tenant", "acme", "--wait"],
                            env=env | {"SLUICE_API_KEY": key}, capture_output=True, text=True, timeout=300)  # fmt: skip

    assert pushed.returncode == 0, pushed.stderr
    assert "121 documents accepted" in pushed.stderr and "100%" in pushed.stderr
    ids = [line["document_id"] for line in lines[:120]]
    assert set(_wait_indexed(api, key, ids).values()) == {"indexed"}
    found = api.get(f"{DOCUMENTS}/search", params={"tenant": "acme", "q": "quarterly"}, headers={"X-Auth": key})
    assert found.json()["count"] == 120

    # Cancelled in the UI (here: through the Prefect API), the processor is started again.
    (first,) = _running_processors(sluice_up["prefect"])
    httpx.post(f"{sluice_up['prefect']}/api/flow_runs/{first}/set_state",
               json={"state": {"type": "CANCELLING"}, "force": True}, timeout=10)  # fmt: skip
    deadline = time.monotonic() + 90
    while (running := _running_processors(sluice_up["prefect"])) in ([], [first]) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(running) == 1 and running != [first], running
    late = hashlib.sha1(b"late").hexdigest()
    api.post(f"{DOCUMENTS}/document-batches", params={"tenant": "acme"}, headers={"X-Auth": key},
             json={"documents": [{"document_id": late, "title": "late"}]})  # fmt: skip
    assert _wait_indexed(api, key, [late]) == {late: "indexed"}


def test_cancel_mid_reindex_removes_the_half_built_index(sluice_up, api, engine):
    # Runs last in this module: it adds 60k audio rows so the load lasts long enough to cancel.
    from sqlalchemy import insert

    from sluice import db
    from sluice.models import Audio
    from sluice.sample import SAMPLES, read_rows

    table, filename, header = SAMPLES[2]
    template = next(read_rows(table, Path(__file__).parents[1] / "sluice/sample_data" / filename, header))
    rows = [template | {"id": 1000 + i, "identifier": uuid.uuid4(), "url": f"https://example.org/{i}.mp3"}
            for i in range(60_000)]  # fmt: skip
    url_engine = db.make_engine(f"sqlite:///{sluice_up['data_dir'] / 'app.sqlite3'}")
    with url_engine.begin() as conn:
        conn.execute(insert(Audio), rows)
    task_id = api.post("/task", json={"model": "audio", "action": "REINDEX", "index_suffix": "cancel"}).json()[
        "task_id"
    ]
    deadline = time.monotonic() + 120
    while (status := api.get(f"/task/{task_id}").json())["progress"] == 0 and time.monotonic() < deadline:
        assert status["active"], status
        time.sleep(0.2)

    assert api.delete(f"/task/{task_id}").status_code == 202

    while (status := api.get(f"/task/{task_id}").json())["active"] and time.monotonic() < deadline + 60:
        time.sleep(0.5)
    assert status["state"] == "Cancelled" and status["error"] is True
    assert 0 < status["progress"] < 100
    assert not engine.index_exists("audio-cancel")
