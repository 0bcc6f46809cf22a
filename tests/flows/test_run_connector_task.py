"""The connector sync flow against a real Prefect API and both engines: CSV records land in the
destination index shaped as configured; replace swaps atomically, save upserts, partial updates;
failure thresholds, critical failures (and the task disabled after five), skipped runs, events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from flows.run_connector_task import MAX_CRITICAL_FAILURES, run_connector_task
from sluice import connectors as store
from sluice import credentials, db
from sluice.connectors import SourceJSON
from sluice.models import ConnectorEvent, ConnectorTask
from sluice.search import Query
from sluice.settings import get_settings
from tasks.destinations import alias_name
from tasks.sources import registry
from tasks.sources.base import Source, SourceError

pytestmark = pytest.mark.usefixtures("prefect_api")

HEADER = "sku,name,price,in_stock,tags,secret\n"


@pytest.fixture
def app_db(flow_engine, sluice_env):
    sluice_env(CONNECTOR_CHUNK_SIZE="3")  # several chunks even for small files
    url = get_settings().database_url
    db.upgrade(url)
    with db.session(url) as session:
        credentials.create_tenant(session, "shop")
    return url


def write_csv(path, rows: list[str]) -> str:
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return f"file://{path}"


def make_task(url: str, csv_url: str, action: str = "replace", threshold: int | None = None,
              trigger: dict | None = None, index: str = "Products", exclude: list[str] | None = None) -> str:  # fmt: skip
    with db.session(url) as session:
        source = store.create(session, store.SOURCES, "shop", store.ResourceCreate(
            type="csv", name="catalog", input={"url": csv_url, "uniqueIDColumn": "sku",
                                               "mapping": {"price": "float", "in_stock": "boolean", "tags": "json"}}))  # fmt: skip
        dest_input = {"indexName": index} | ({"attributesToExclude": exclude} if exclude else {})
        destination = store.create(session, store.DESTINATIONS, "shop",
                                   store.ResourceCreate(type="search", name="idx", input=dest_input))  # fmt: skip
        task = store.create_task(session, "shop", store.TaskCreate(
            sourceID=source.id, destinationID=destination.id, trigger=trigger or {"type": "onDemand"},
            action=action, failureThreshold=threshold))  # fmt: skip
        return task.id


def run(task_id: str, trigger: str = "onDemand"):
    return run_connector_task(task_id=task_id, trigger=trigger, return_state=True)


def events(url: str, run_id) -> list[ConnectorEvent]:
    with Session(db.get_engine(url)) as session:
        return list(session.exec(select(ConnectorEvent).where(ConnectorEvent.run_id == str(run_id))
                                 .order_by(ConnectorEvent.published_at)).all())  # fmt: skip


def closing(url: str, state) -> dict:
    return next(e for e in events(url, state.state_details.flow_run_id) if e.type == "log").data


ALIAS = alias_name("shop", "Products")
ROWS = [
    'A1,Red kettle,19.5,true,"[""kitchen""]",s1',
    'A2,Blue teapot,12,false,"[""kitchen"", ""tea""]",s2',
    'A3,Green mug,4.25,yes,"[]",s3',
    'A4,Kingfisher print,40,no,"[""art""]",s4',
]


def test_replace_loads_shaped_records_and_reports_events(app_db, flow_engine, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS), exclude=["secret"])

    state = run(task_id)

    assert state.is_completed(), state.message
    assert flow_engine.count(ALIAS) == 4
    assert flow_engine.get(ALIAS, "A2") == {"sku": "A2", "name": "Blue teapot", "price": 12.0, "in_stock": False,
                                            "tags": ["kitchen", "tea"], "objectID": "A2"}  # fmt: skip
    hits = flow_engine.search(ALIAS, Query(text="kettle")).hits
    assert [h.id for h in hits] == ["A1"]
    found = events(app_db, state.state_details.flow_run_id)
    assert [e.type for e in found] == ["fetch", "transform", "record"] * 2 + ["log"]
    assert [e.batch_size for e in found if e.type == "fetch"] == [3, 1]
    summary = found[-1].data
    assert summary["outcome"] == "success" and summary["reasonCode"] == "ok"
    assert summary["rows"] == 4 and summary["indexed"] == 4 and summary["failed"] == 0
    with db.session(app_db) as session:
        assert session.get(ConnectorTask, task_id).last_run is not None


def test_replace_swaps_in_a_fresh_index_and_removes_the_old_one(app_db, flow_engine, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS))
    assert run(task_id).is_completed()
    first = flow_engine.resolve(ALIAS)

    write_csv(tmp_path / "a.csv", ROWS[:2])
    assert run(task_id).is_completed()

    second = flow_engine.resolve(ALIAS)
    assert len(second) == 1 and second != first
    assert flow_engine.list_indices(ALIAS) == second  # the old index is gone, no partial left
    assert flow_engine.count(ALIAS) == 2


def test_too_many_failed_records_fail_a_replace_and_keep_the_live_index(app_db, flow_engine, tmp_path):
    csv_url = write_csv(tmp_path / "a.csv", ROWS)
    task_id = make_task(app_db, csv_url, threshold=20)
    assert run(task_id).is_completed()
    live = flow_engine.resolve(ALIAS)

    write_csv(tmp_path / "a.csv", [*ROWS[:3], "A4,Bad price,not-a-number,true,[],x"])  # 25% fail
    state = run(task_id)

    assert state.is_failed()
    summary = closing(app_db, state)
    assert summary["reasonCode"] == "too_many_errors" and summary["failed"] == 1
    assert "price" in summary["errors"][0] or "float" in summary["errors"][0]
    assert flow_engine.resolve(ALIAS) == live and flow_engine.list_indices(ALIAS) == live
    assert flow_engine.count(ALIAS) == 4


def test_failed_records_within_the_threshold_still_succeed(app_db, flow_engine, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", [*ROWS[:3], ",No sku,1,true,[],x"]), threshold=30)

    state = run(task_id)

    assert state.is_completed(), state.message
    assert closing(app_db, state)["failed"] == 1
    assert flow_engine.count(ALIAS) == 3


def test_save_upserts_and_partial_updates_only_given_fields(app_db, flow_engine, tmp_path):
    save = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS), action="save")
    assert run(save).is_completed()
    write_csv(tmp_path / "a.csv", ["A1,Red kettle v2,21,true,[],s1", "A5,New lamp,30,true,[],s5"])
    assert run(save).is_completed()
    assert flow_engine.count(ALIAS) == 5
    assert flow_engine.get(ALIAS, "A1")["name"] == "Red kettle v2"

    (tmp_path / "p.csv").write_text("sku,price\nA2,99\n")
    with db.session(app_db) as session:
        source = store.create(session, store.SOURCES, "shop", store.ResourceCreate(
            type="csv", name="prices", input={"url": f"file://{tmp_path / 'p.csv'}", "uniqueIDColumn": "sku",
                                              "mapping": {"price": "float"}}))  # fmt: skip
        destination = session.get(ConnectorTask, save).destination_id
        partial = store.create_task(session, "shop", store.TaskCreate(
            sourceID=source.id, destinationID=destination, trigger={"type": "onDemand"}, action="partial")).id  # fmt: skip
    assert run(partial).is_completed()
    assert flow_engine.get(ALIAS, "A2") == {"sku": "A2", "name": "Blue teapot", "price": 99.0,
                                                 "in_stock": False, "tags": ["kitchen", "tea"], "secret": "s2",
                                                 "objectID": "A2"}  # fmt: skip


def test_an_empty_source_leaves_a_replaced_index_as_it_was(app_db, flow_engine, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS))
    assert run(task_id).is_completed()
    write_csv(tmp_path / "a.csv", [])

    state = run(task_id)

    assert state.is_completed()
    assert closing(app_db, state)["reasonCode"] == "no_events"
    assert flow_engine.count(ALIAS) == 4


def test_critical_failures_fail_the_run_and_disable_the_task_after_five(app_db, tmp_path):
    task_id = make_task(app_db, f"file://{tmp_path / 'missing.csv'}")

    for attempt in range(1, MAX_CRITICAL_FAILURES + 1):
        state = run(task_id)
        assert state.is_failed()
        summary = closing(app_db, state)
        assert summary["reasonCode"] == "critical" and "missing.csv" in summary["reason"]
        with db.session(app_db) as session:
            assert session.get(ConnectorTask, task_id).enabled is (attempt < MAX_CRITICAL_FAILURES)
    assert "disabled" in summary["reason"]


def test_a_success_resets_the_count_of_critical_failures(app_db, tmp_path):
    csv = tmp_path / "a.csv"
    task_id = make_task(app_db, f"file://{csv}")
    for _ in range(MAX_CRITICAL_FAILURES - 1):
        assert run(task_id).is_failed()
    write_csv(csv, ROWS)
    assert run(task_id).is_completed()
    csv.unlink()
    assert run(task_id).is_failed()
    with db.session(app_db) as session:
        row = session.get(ConnectorTask, task_id)
        assert row.enabled and row.consecutive_failures == 1


def test_a_scheduled_run_of_a_disabled_task_is_skipped(app_db, flow_engine, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS), trigger={"type": "schedule", "cron": "0 3 * * *"})
    with db.session(app_db) as session:
        store.set_task_enabled(session, "shop", task_id, False)

    state = run(task_id, trigger="schedule")

    assert state.is_completed() and state.name == "Skipped"
    assert flow_engine.resolve(ALIAS) == []


def test_a_deleted_task_is_skipped(app_db, tmp_path):
    task_id = make_task(app_db, write_csv(tmp_path / "a.csv", ROWS))
    with db.session(app_db) as session:
        store.delete_task(session, "shop", task_id)

    state = run(task_id)

    assert state.is_completed() and state.name == "Skipped"


def test_a_json_source_with_nested_records_and_excluded_paths(app_db, flow_engine, tmp_path):
    records = [{"id": n, "title": f"Print {n}", "variants": [{"sku": f"V{n}a", "cost": 1}, {"sku": f"V{n}b", "cost": 2}],
                "meta": {"internal": "x", "public": "y"}} for n in range(5)]  # fmt: skip
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    with db.session(app_db) as session:
        source = store.create(
            session,
            store.SOURCES,
            "shop",
            store.ResourceCreate(
                type="json", name="feed", input={"url": f"file://{tmp_path / 'items.jsonl'}", "uniqueIDColumn": "id"}
            ),
        )
        destination = store.create(
            session,
            store.DESTINATIONS,
            "shop",
            store.ResourceCreate(
                type="search",
                name="idx",
                input={"indexName": "Prints", "attributesToExclude": ["variants.[*].cost", "meta.internal"]},
            ),
        )
        task_id = store.create_task(session, "shop", store.TaskCreate(
            sourceID=source.id, destinationID=destination.id, trigger={"type": "onDemand"}, action="save")).id  # fmt: skip

    assert run(task_id).is_completed()

    alias = alias_name("shop", "Prints")
    assert flow_engine.count(alias) == 5
    assert flow_engine.get(alias, "3") == {"id": 3, "title": "Print 3", "variants": [{"sku": "V3a"}, {"sku": "V3b"}],
                                           "meta": {"public": "y"}, "objectID": "3"}  # fmt: skip


class LinesSource(Source):
    """An incremental source: JSON lines of a local file, from the line after its state's."""

    source_type = "json"
    config_model = SourceJSON

    def get_docs(self, chunk_size: int):
        lines = Path(self.config.url.removeprefix("file://")).read_text().splitlines()
        start = (self.state or {}).get("line", 0)
        for number in range(start, len(lines), chunk_size):
            batch = [json.loads(line) for line in lines[number : number + chunk_size]]
            if any("boom" in record for record in batch):
                raise SourceError("the feed broke off")
            self.state = {"line": number + len(batch)}
            yield batch


def test_an_incremental_source_resumes_from_its_state_saved_only_after_a_success(app_db, flow_engine, tmp_path,
                                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setitem(registry.SOURCES, "json", "tests.flows.test_run_connector_task:LinesSource")
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(4)))
    with db.session(app_db) as session:
        source = store.create(
            session,
            store.SOURCES,
            "shop",
            store.ResourceCreate(type="json", name="feed", input={"url": f"file://{feed}", "uniqueIDColumn": "id"}),
        )
        destination = store.create(
            session,
            store.DESTINATIONS,
            "shop",
            store.ResourceCreate(type="search", name="idx", input={"indexName": "Feed"}),
        )
        task_id = store.create_task(session, "shop", store.TaskCreate(
            sourceID=source.id, destinationID=destination.id, trigger={"type": "onDemand"}, action="save")).id  # fmt: skip

    first = run(task_id)
    with feed.open("a") as out:
        out.write(json.dumps({"id": 4}) + "\n" + json.dumps({"id": 5, "boom": 1}) + "\n")
    broken = run(task_id)
    feed.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(6)))
    second = run(task_id)

    assert first.is_completed() and broken.is_failed() and second.is_completed()
    assert closing(app_db, first)["rows"] == 4
    assert closing(app_db, second)["rows"] == 2  # rows 4 and 5 only: the failed run moved nothing on
    with db.session(app_db) as session:
        assert session.get(ConnectorTask, task_id).cursor == {"line": 6}
    assert flow_engine.count(alias_name("shop", "Feed")) == 6
