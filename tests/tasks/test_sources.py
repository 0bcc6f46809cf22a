"""CSV and JSON sources over a real local HTTP server and file://: chunks, types left to the mapping,
clear errors for unreachable URLs and malformed bodies."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.sources.base import SourceError
from tasks.sources.registry import source_class
from tasks.transform import rows

CSV_BODY = "sku;name;price\n" + "".join(f"S{i};Item {i};{i}.5\n" for i in range(2500)) + "S-last;;1\n"
RECORDS = [{"sku": f"S{i}", "n": i} for i in range(1200)]
BODIES = {
    "/items.csv": CSV_BODY.encode(),
    "/items.json": json.dumps(RECORDS).encode(),
    "/items.jsonl": "\n".join(json.dumps(r) for r in RECORDS[:10]).encode(),
    "/broken.json": b'[{"a": 1}, {"b": ',
    "/scalars.json": b"[1, 2]",
    "/bad.csv": b'a,b\n"unterminated,1\n',
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = BODIES.get(self.path.removesuffix("?sized"))
        self.send_response(200 if body is not None else 404)
        if body is not None and self.path.endswith("?sized"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body or b"missing")

    do_POST = do_GET


@pytest.fixture(scope="module")
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def read(source_type: str, **config) -> list[list[dict]]:
    return [rows(chunk) for chunk in source_class(source_type)(config).get_docs(chunk_size=1000)]


def test_csv_is_read_in_chunks_as_text_with_empty_cells_as_none(base_url):
    chunks = read("csv", url=f"{base_url}/items.csv", delimiter=";")

    assert [len(c) for c in chunks] == [1000, 1000, 501]
    assert chunks[0][0] == {"sku": "S0", "name": "Item 0", "price": "0.5"}
    assert chunks[-1][-1] == {"sku": "S-last", "name": None, "price": "1"}


def test_csv_from_a_file_url_and_by_post(base_url, tmp_path):
    path = tmp_path / "local.csv"
    path.write_text("a,b\n1,2\n")

    assert read("csv", url=f"file://{path}") == [[{"a": "1", "b": "2"}]]
    assert sum(len(c) for c in read("csv", url=f"{base_url}/items.csv", delimiter=";", method="POST")) == 2501


def test_json_arrays_and_json_lines_are_streamed_in_chunks(base_url):
    assert [len(c) for c in read("json", url=f"{base_url}/items.json")] == [1000, 200]
    assert read("json", url=f"{base_url}/items.jsonl") == [RECORDS[:10]]


@pytest.mark.parametrize(
    ("source_type", "path", "fragment"),
    [("csv", "/missing.csv", "HTTP 404"), ("json", "/broken.json", "not valid JSON"),
     ("json", "/scalars.json", "JSON object"), ("csv", "/bad.csv", "not valid CSV")],
)  # fmt: skip
def test_unreadable_sources_fail_with_a_reason(base_url, source_type, path, fragment):
    with pytest.raises(SourceError, match=fragment):
        read(source_type, url=f"{base_url}{path}")


def test_an_unreachable_url_fails_with_a_reason():
    from tests.conftest import free_port

    with pytest.raises(SourceError, match="cannot read"):
        read("csv", url=f"http://127.0.0.1:{free_port()}/x.csv")


@pytest.mark.parametrize("where", ["file", "http with a length", "http without"])
def test_sources_report_how_far_through_they_are_when_the_size_is_known(base_url, tmp_path, where):
    big = "sku,text\n" + "".join(f"S{i},{'x' * 200}\n" for i in range(20_000))  # ~4 MB: several blocks
    (tmp_path / "big.csv").write_text(big)
    BODIES["/big.csv"] = big.encode()
    url = {"file": f"file://{tmp_path / 'big.csv'}", "http with a length": f"{base_url}/big.csv?sized",
           "http without": f"{base_url}/big.csv"}[where]  # fmt: skip
    source = source_class("csv")({"url": url})

    seen = [source.progress() for _ in source.get_docs(chunk_size=2000)]

    if where == "http without":
        assert set(seen) == {None}  # unknown size: no made-up figure
    else:
        assert seen == sorted(seen) and 0 < seen[0] < 0.5 and source.progress() == 1.0
