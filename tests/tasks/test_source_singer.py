"""Singer message parsing, and a real Singer tap (tap-jsonl 0.3.1 from PyPI) installed into its own
virtual environment and run locally through DockerSource's ``sluice.runner: local``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from sluice.errors import ConfigurationError
from tasks.sources.base import SourceError
from tasks.sources.docker import DockerSource
from tasks.sources.singer import LocalTap, MessageParser, iter_lines

FIXTURES = Path(__file__).parent / "fixtures" / "singer"


def feed(lines: list[str], protocol: str = "singer", streams: int | None = None) -> tuple[list, MessageParser]:
    parser = MessageParser(protocol, streams)
    records = [record for n, line in enumerate(lines, 1) if (record := parser.feed(n, line)) is not None]
    return records, parser


def test_singer_messages():
    records, parser = feed([
        '{"type": "SCHEMA", "stream": "a", "schema": {"type": "object"}, "key_properties": []}',
        '{"type": "RECORD", "stream": "a", "record": {"x": 1}}',
        "",
        '{"type": "ACTIVATE_VERSION", "stream": "a", "version": 1}',
        '{"type": "STATE", "value": {"bookmarks": {"a": 1}}}',
        '{"type": "RECORD", "stream": "b", "record": {"y": 2}}',
        '{"type": "STATE", "value": {"bookmarks": {"a": 1, "b": 2}}}',
    ])  # fmt: skip
    assert records == [{"x": 1}, {"y": 2, "_stream": "b"}]
    assert parser.state == {"bookmarks": {"a": 1, "b": 2}} and parser.schemas == {"a": {"type": "object"}}
    assert feed(['{"type": "RECORD", "stream": "a", "record": {"x": 1}}'], streams=2)[0] == [{"x": 1, "_stream": "a"}]


@pytest.mark.parametrize(("line", "reason"), [
    ("not json at all", r"line 2 is not a Singer message: 'not json at all'"),
    ('["a list"]', r"line 2 is not a Singer message"),
    ('{"stream": "a"}', r"line 2 is not a Singer message"),
    ('{"type": "RECORD", "stream": "a"}', r"line 2 is a RECORD without a record object"),
    ('{"type": "RECORD", "record": {"x": 1}}', r"line 2 names no stream"),
    ('{"type": "STATE"}', r"line 2 is a STATE without a value"),
    ("x" * 500, r"line 2 is not a Singer message: 'x{80}…'$"),
])  # fmt: skip
def test_malformed_lines(line, reason):
    with pytest.raises(SourceError, match=reason):
        feed(['{"type": "RECORD", "stream": "a", "record": {}}', line])


def test_airbyte_messages():
    records, parser = feed([
        '{"type": "LOG", "log": {"level": "INFO", "message": "hi"}}',
        '{"type": "RECORD", "record": {"stream": "o", "data": {"n": 1}, "emitted_at": 0}}',
        '{"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "o"}, "stream_state": 1}}}',
        '{"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "o"}, "stream_state": 2}}}',
        '{"type": "TRACE", "trace": {"type": "ERROR", "error": {"message": "token expired"}}}',
    ], "airbyte")  # fmt: skip
    assert records == [{"n": 1}]
    assert [state["stream"]["stream_state"] for state in parser.state] == [2]
    assert parser.errors == ["token expired"]
    with pytest.raises(SourceError, match="line 1 is a RECORD without data"):
        feed(['{"type": "RECORD", "record": {"stream": "o"}}'], "airbyte")


def test_lines_across_chunks():
    assert list(iter_lines([b'{"a"', b': 1}\n{"b": 2}\n{', b'"c": 3}'])) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_local_tap_names_are_checked():
    with pytest.raises(SourceError, match="not a PyPI package name"):
        LocalTap("tap-x; rm -rf /", "1.0")
    with pytest.raises(SourceError, match="not a command name"):
        LocalTap("tap-x", "1.0", "../../bin/sh")


# --- a real local tap ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taps_dir(tmp_path_factory):
    """tap-jsonl installed once for the module (about 15 s: a venv and singer-sdk from PyPI)."""
    folder = tmp_path_factory.mktemp("taps")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def local(sluice_env, taps_dir):
    sluice_env(LOCAL_TAPS="true", TAPS_DIR=str(taps_dir), TAP_TIME_LIMIT="60")
    return sluice_env


def jsonl(tmp_path: Path, state: dict | None = None, **options) -> DockerSource:
    data = tmp_path / "items.jsonl"
    if not data.exists():
        shutil.copy(FIXTURES / "items.jsonl", data)
    made = DockerSource({"imageType": "singer", "registry": "dockerhub", "image": "tap-jsonl", "version": "0.3.1",
                         "configuration": {"path": str(data), "stream_name": "items", "primary_keys": ["id"],
                                           "sluice": {"runner": "local", **options}}}, state=state)  # fmt: skip
    made.validate_config()
    return made


def test_a_local_tap_syncs_in_chunks_and_keeps_its_state(local, taps_dir, tmp_path):
    tap = jsonl(tmp_path)
    chunks = list(tap.get_docs(2))
    assert [len(chunk) for chunk in chunks] == [2, 1]
    assert [(row["id"], row["name"]) for chunk in chunks for row in chunk] == [(1, "alpha"), (2, "beta"), (3, "gamma")]
    assert "_stream" not in chunks[0][0]
    assert (taps_dir / "tap-jsonl-0.3.1" / ".installed").read_text() == "tap-jsonl==0.3.1\n"
    bookmark = tap.state["singer_state"]["bookmarks"]["items"]
    assert bookmark["replication_key"] == "_sdc_last_modified"
    again = jsonl(tmp_path, state=tap.state)  # the state goes back in (--state); the tap decides what is new
    list(again.get_docs(10))
    assert again.state["singer_state"]["bookmarks"]["items"]["replication_key_value"] == bookmark[
        "replication_key_value"]  # fmt: skip


def test_a_local_tap_discovers_and_syncs_selected_streams(local, tmp_path):
    streams = jsonl(tmp_path).discover()
    assert [stream["tap_stream_id"] for stream in streams] == ["items"]
    assert streams[0]["key_properties"] == ["id"] and "name" in streams[0]["schema"]["properties"]
    rows = [row for chunk in jsonl(tmp_path, streams=["items"]).get_docs(10) for row in chunk]
    assert [row["id"] for row in rows] == [1, 2, 3]


def test_a_local_tap_failure_is_a_source_error_with_stderr(local, tmp_path):
    tap = jsonl(tmp_path, state={"singer_state": {"kept": True}})
    tap.tap_config["path"] = str(tmp_path / "missing" / "*.jsonl")
    tap.tap_config["schema_sample_records"] = "not a number"
    with pytest.raises(SourceError, match=r"the tap exited with code \d+: .+"):
        list(tap.get_docs(10))
    assert tap.state == {"singer_state": {"kept": True}}


def test_a_local_tap_is_killed_at_the_time_limit(local, taps_dir, tmp_path):
    # A "tap" that hangs: a venv-less stand-in installed where a package's command would be.
    fake = taps_dir / "tap-sleepy-1.0"
    (fake / "bin").mkdir(parents=True)
    script = fake / "bin" / "tap-sleepy"
    script.write_text(f"#!{sys.executable}\nimport time\nprint({json.dumps(json.dumps({'type': 'RECORD', 'stream': 's', 'record': {}}))}, flush=True)\n"
                      "time.sleep(600)\n")  # fmt: skip
    script.chmod(0o755)
    (fake / ".installed").write_text("tap-sleepy==1.0\n")
    local(TAP_TIME_LIMIT="1")
    tap = DockerSource({"imageType": "singer", "registry": "dockerhub", "image": "tap-sleepy", "version": "1.0",
                        "configuration": {"sluice": {"runner": "local"}}})  # fmt: skip
    with pytest.raises(SourceError, match="timed out after 1 s"):
        list(tap.get_docs(10))


def test_local_taps_are_off_unless_enabled(sluice_env, tmp_path):
    with pytest.raises(ConfigurationError, match="local taps are disabled"):
        jsonl(tmp_path)
