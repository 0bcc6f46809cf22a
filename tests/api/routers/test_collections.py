"""The image-collections API (HeidICON similarity webservice): keys, collections, CSV content in
both upload forms, the reference's messages and error shape; bad input changes nothing."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from api.main import app
from sluice import credentials, db, image_collections
from sluice.settings import get_settings

CSV = (
    "https://img.example.org/a.jpg,https://museum.example.org/item/1,Vase,1890\n"
    'https://img.example.org/b.jpg,https://museum.example.org/item/2,"Bowl, blue",1901\n'
)
ERROR = "error"


@pytest.fixture
def client(sluice_env):
    url = get_settings().database_url
    db.upgrade(url)
    with db.session(url) as session:
        key = image_collections.create_key(session, "tests")[1]
        credentials.create_tenant(session, "shop")
        other = credentials.create_key(session, "shop", ["connectors-admin"])[1]
    with TestClient(app) as test_client:
        test_client.key, test_client.other_key = key, other
        yield test_client


def auth(client) -> dict[str, str]:
    return {"API-Key": client.key}


def create(client, name: str = "Ceramics") -> int:
    response = client.post("/api/collection/create", json={"name": name, "heidicon_tag": "ceramics"},
                           headers=auth(client))  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_verify_accepts_a_key_and_refuses_anything_else(client):
    assert client.post("/api/verify", headers=auth(client)).json() == {"message": "API key is valid",
                                                                       "message_type": "push"}  # fmt: skip
    for headers in ({}, {"API-Key": "nope"}, {"API-Key": client.other_key}, {"API-Key": client.key + "x"}):
        response = client.post("/api/verify", headers=headers)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing or invalid API key", "message_type": ERROR}


@pytest.mark.parametrize(
    "path",
    [
        "/api/collection/create",
        "/api/collection/{id}/updatename",
        "/api/collection/{id}/updatecontent",
        "/api/collection/{id}/delete",
    ],
)
def test_changes_need_a_key_and_change_nothing_without_one(client, path):
    collection = create(client)
    response = client.post(path.format(id=collection), json={"name": "x"}, headers={"API-Key": client.other_key})

    assert response.status_code == 403 and response.json()["message_type"] == ERROR
    assert client.get(f"/api/collection/{collection}/info").json()["name"] == "Ceramics"
    assert client.get("/api/collection/list").json()["ids"] == [collection]


def test_create_list_info_rename_delete(client):
    first, second = create(client, "Ceramics"), create(client, "Prints")

    listed = client.get("/api/collection/list").json()
    info = client.get(f"/api/collection/{first}/info").json()
    renamed = client.post(f"/api/collection/{second}/updatename", json={"name": "Woodcuts"}, headers=auth(client))
    deleted = client.post(f"/api/collection/{first}/delete", headers=auth(client))

    assert listed == {"ids": [first, second], "names": [{"value": first, "id": first, "name": "Ceramics"},
                                                        {"value": second, "id": second, "name": "Prints"}]}  # fmt: skip
    assert info["name"] == "Ceramics" and info["heidicon_tag"] == "ceramics" and info["number_of_images"] == 0
    assert info["finetuning_progess"] is None and info["last_finetuned"] is None and info["requires_finetuning"]
    assert renamed.json()["message_type"] == "push"
    assert client.get("/api/collection/list").json()["names"] == [{"value": second, "id": second, "name": "Woodcuts"}]
    assert deleted.json()["message_type"] == "push"
    gone = client.get(f"/api/collection/{first}/info")
    assert gone.status_code == 400 and gone.json() == {"message": f"Collection {first} does not exist",
                                                       "message_type": ERROR}  # fmt: skip


@pytest.mark.parametrize("form", ["text/csv", "base64 json"])
def test_content_replaces_the_old_and_comes_back_as_a_csv_file(client, form):
    collection = create(client)
    before = client.get(f"/api/collection/{collection}/info").json()["last_modified"]
    client.post(f"/api/collection/{collection}/updatecontent", content="https://x.org/old.jpg,https://x.org/1\n",
                headers=auth(client) | {"Content-Type": "text/csv"})  # fmt: skip
    if form == "text/csv":
        response = client.post(f"/api/collection/{collection}/updatecontent", content=CSV.encode(),
                               headers=auth(client) | {"Content-Type": "text/csv"})  # fmt: skip
    else:
        response = client.post(f"/api/collection/{collection}/updatecontent", headers=auth(client),
                               json={"content": base64.b64encode(CSV.encode()).decode()})  # fmt: skip

    assert response.status_code == 200 and response.json()["message_type"] == "push", response.text
    info = client.get(f"/api/collection/{collection}/info").json()
    assert info["number_of_images"] == 2 and info["requires_finetuning"] and info["last_modified"] > before
    csv_file = client.get(f"/api/collection/{collection}/csvfile")
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert csv_file.headers["content-disposition"] == 'attachment; filename="Ceramics.csv"'
    assert csv_file.text == CSV  # extra columns kept, quoting restored


@pytest.mark.parametrize(("body", "headers", "fragment"), [
    (b"not-a-url,https://x.org/1\n", {"Content-Type": "text/csv"}, "column 1 must be an http(s) image URL"),
    (b"\n\n", {"Content-Type": "text/csv"}, "no rows"),
    (b"\xff\xfe\x00bad", {"Content-Type": "text/csv"}, "not UTF-8"),
    (b'"https://x.org/a.jpg,unterminated\n', {"Content-Type": "text/csv"}, "not valid CSV"),
    (b'{"content": "%%%"}', {"Content-Type": "application/json"}, "not valid base64"),
    (b'{"content": 5}', {"Content-Type": "application/json"}, "base64-encoded"),
    (b"[1, 2", {"Content-Type": "application/json"}, "not JSON"),
], ids=["not a url", "empty", "not utf-8", "bad csv", "bad base64", "content not text", "bad json"])  # fmt: skip
def test_bad_content_is_a_400_and_keeps_the_content(client, body, headers, fragment):
    collection = create(client)
    client.post(f"/api/collection/{collection}/updatecontent", content=CSV.encode(),
                headers=auth(client) | {"Content-Type": "text/csv"})  # fmt: skip

    response = client.post(f"/api/collection/{collection}/updatecontent", content=body, headers=auth(client) | headers)

    assert response.status_code == 400 and response.json()["message_type"] == ERROR
    assert fragment in response.json()["message"], response.json()
    assert client.get(f"/api/collection/{collection}/csvfile").text == CSV


@pytest.mark.parametrize(("path", "body"), [
    ("/api/collection/create", {"name": ""}), ("/api/collection/create", {}),
    ("/api/collection/create", {"name": "x" * 201}), ("/api/collection/create", {"name": "x", "heidicon_tag": 5}),
    ("/api/collection/{id}/updatename", {"name": "  "}), ("/api/collection/{id}/updatename", {"name": ["x"]}),
])  # fmt: skip
def test_bad_names_are_a_400(client, path, body):
    collection = create(client)
    response = client.post(path.format(id=collection), json=body, headers=auth(client))

    assert response.status_code == 400 and response.json()["message"].split(":")[0] in ("name", "heidicon_tag")
    assert client.get("/api/collection/list").json()["ids"] == [collection]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "info"), ("GET", "csvfile"), ("POST", "updatename"), ("POST", "updatecontent"), ("POST", "delete"),
])  # fmt: skip
def test_an_unknown_collection_is_a_400_on_every_route(client, method, path):
    response = client.request(method, f"/api/collection/999/{path}", json={"name": "x"}, headers=auth(client))

    assert response.status_code == 400
    assert response.json() == {"message": "Collection 999 does not exist", "message_type": ERROR}


def test_a_malformed_collection_id_is_a_400_in_the_apis_shape(client):
    response = client.get("/api/collection/abc/info")

    assert response.status_code == 400 and response.json()["message_type"] == ERROR


def test_cli_creates_lists_and_deletes_keys(client, tmp_path):
    data_dir = str(get_settings().DATA_DIR)
    cli = [sys.executable, "-m", "sluice.cli", "api-keys"]
    created = subprocess.run([*cli, "create", "--name", "frontend", "--data-dir", data_dir], capture_output=True,
                             text=True, check=True)  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    assert client.post("/api/verify", headers={"API-Key": key}).status_code == 200

    listed = subprocess.run([*cli, "list", "--data-dir", data_dir], capture_output=True, text=True, check=True).stdout
    key_id = next(line.split("\t")[0] for line in listed.splitlines() if "\tfrontend\t" in line)
    subprocess.run([*cli, "delete", key_id, "--data-dir", data_dir], capture_output=True, check=True)

    assert client.post("/api/verify", headers={"API-Key": key}).status_code == 403
    assert "deleted" in subprocess.run([*cli, "list", "--data-dir", data_dir], capture_output=True, text=True).stdout
