"""Image collections against a real `sluice up`: the HeidICON web frontend's whole story. Real photos
(scikit-image's samples) are served by a local HTTP server; a collection is created, given a CSV,
finetuned by the Prefect flow the endpoint starts, and searched with edited copies of its photos."""

from __future__ import annotations

import base64
import io
import subprocess
import time
from collections import Counter

import httpx
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data as samples

from tests.utils.file_server import Quiet, serve_directory
from tests.utils.sluice_up import SLUICE, clean_env, start, stop

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "clock",
          "retina", "brick", "gravel", "page", "camera", "coins", "moon"]  # fmt: skip


def photo(name: str) -> Image.Image:
    pixels = getattr(samples, name)()
    image = Image.fromarray(pixels[..., :3] if pixels.ndim == 3 else pixels)
    return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def edited(image: Image.Image) -> bytes:
    """What a user searches with: a crop, a colour shift and a low-quality JPEG of the photo."""
    width, height = image.size
    cropped = image.crop((width // 10, height // 12, width - width // 8, height - height // 10))
    shifted = ImageEnhance.Color(cropped).enhance(1.6)
    tinted = Image.fromarray(np.clip(np.asarray(shifted, dtype=np.int16) + [18, -6, -12], 0, 255).astype(np.uint8))
    return jpeg(tinted, quality=35)


class CountingHandler(Quiet):
    served: Counter = Counter()

    def do_GET(self):
        CountingHandler.served[self.path] += 1
        super().do_GET()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The photos as JPEG files on a real HTTP server, plus a text file posing as an image."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (root / f"{name}.jpg").write_bytes(jpeg(photo(name)))
    (root / "notes.jpg").write_text("these are not the pixels you are looking for")
    with serve_directory(root, CountingHandler) as url:
        yield url


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sluice-collections")
    env = clean_env(data_dir, SLUICE_FETCH_ALLOW_PRIVATE="true")  # the photos are on this machine
    created = subprocess.run([*SLUICE, "api-keys", "create", "--name", "frontend"], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
    key = next(w for w in created.stdout.split() if w.startswith("sk_"))
    service = start(data_dir, env)
    yield service | {"key": key}
    stop(service)


def wait_finetuned(api: httpx.Client, collection_id: int, timeout: float = 240) -> dict:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        info = api.get(f"/api/collection/{collection_id}/info").json()
        seen.append(info["finetuning_progess"])
        if info["finetuning_progess"] is None and not info["requires_finetuning"]:
            return info | {"progress_seen": seen}
        time.sleep(0.5)
    pytest.fail(f"collection {collection_id} was not finetuned in {timeout} s: {info}")


def test_finetune_then_search_finds_each_photo_from_an_edited_copy(up, photos):
    api = httpx.Client(base_url=up["api"], headers={"API-Key": up["key"]}, timeout=60)
    csv = "".join(f"{photos}/{name}.jpg,https://museum.example/items/{name},{name}\n" for name in PHOTOS)
    csv += f"{photos}/missing.jpg,https://museum.example/items/missing\n{photos}/notes.jpg,https://museum.example/n\n"
    collection_id = api.post("/api/collection/create", json={"name": "Sample photos"}).json()["id"]
    assert api.post(f"/api/collection/{collection_id}/search", json={"image": base64.b64encode(
        jpeg(photo("coffee"))).decode()}).status_code == 400  # never finetuned  # fmt: skip
    assert api.post(f"/api/collection/{collection_id}/updatecontent", content=csv,
                    headers={"Content-Type": "text/csv"}).json()["message_type"] == "push"  # fmt: skip

    started = api.post(f"/api/collection/{collection_id}/finetune")
    assert started.status_code == 200 and started.json()["message_type"] == "push"
    again = api.post(f"/api/collection/{collection_id}/finetune")
    info = wait_finetuned(api, collection_id)

    assert again.status_code in (200, 409)  # refused while the first run is live (or it had already ended)
    assert info["number_of_images"] == len(PHOTOS) + 2 and info["number_of_embedded_images"] == len(PHOTOS)
    assert info["number_of_failed_images"] == 2
    assert {f["image_url"].rsplit("/", 1)[1] for f in info["failed_images"]} == {"missing.jpg", "notes.jpg"}
    assert any("404" in f["reason"] for f in info["failed_images"])

    for name in PHOTOS:
        query = base64.b64encode(edited(photo(name))).decode()
        found = api.post(f"/api/collection/{collection_id}/search?num_results=3", json={"image": query})
        assert found.status_code == 200, found.text
        results = found.json()
        assert results[0]["image_url"] == f"{photos}/{name}.jpg", (name, results)
        assert results[0]["repo_url"] == f"https://museum.example/items/{name}"
        assert len(results) == 3 and results[0]["score"] >= results[1]["score"] >= results[2]["score"]

    data_url = "data:image/jpeg;base64," + base64.b64encode(edited(photo("rocket"))).decode()
    assert api.post(f"/api/collection/{collection_id}/search", json={"image": data_url}).json()[0]["image_url"] == (
        f"{photos}/rocket.jpg")  # fmt: skip
    by_url = api.post(f"/api/collection/{collection_id}/search?num_results=1", json={"image": f"{photos}/chelsea.jpg"})
    assert [r["image_url"] for r in by_url.json()] == [f"{photos}/chelsea.jpg"] and by_url.json()[0]["score"] > 0.99
    strict = api.post(f"/api/collection/{collection_id}/search?num_results=20&threshold=99",
                      json={"image": f"{photos}/chelsea.jpg"}).json()  # fmt: skip
    assert [r["image_url"] for r in strict] == [f"{photos}/chelsea.jpg"]
    not_an_image = api.post(
        f"/api/collection/{collection_id}/search", json={"image": base64.b64encode(b"hello").decode()}
    )
    assert not_an_image.status_code == 400 and not_an_image.json()["message_type"] == "error"


def test_a_new_csv_embeds_only_new_images_and_vectors_stay_with_their_rows(up, photos):
    api = httpx.Client(base_url=up["api"], headers={"API-Key": up["key"]}, timeout=60)
    first, later = PHOTOS[:4], PHOTOS[4:7]
    collection_id = api.post("/api/collection/create", json={"name": "Growing"}).json()["id"]
    rows = "".join(f"{photos}/{name}.jpg,https://museum.example/{name}\n" for name in first)
    api.post(f"/api/collection/{collection_id}/updatecontent", content=rows, headers={"Content-Type": "text/csv"})
    api.post(f"/api/collection/{collection_id}/finetune")
    wait_finetuned(api, collection_id)
    assert api.post(f"/api/collection/{collection_id}/finetune").json()["message"].endswith("has not changed since")

    # New content: two photos leave, three arrive, and the order changes (the reference misaligned here).
    before = Counter(CountingHandler.served)
    kept = first[2:][::-1]
    rows = "".join(f"{photos}/{name}.jpg,https://museum.example/{name}\n" for name in [*later, *kept])
    api.post(f"/api/collection/{collection_id}/updatecontent", content=rows, headers={"Content-Type": "text/csv"})
    api.post(f"/api/collection/{collection_id}/finetune")
    info = wait_finetuned(api, collection_id)

    fetched = Counter(CountingHandler.served) - before
    assert set(fetched) == {f"/{name}.jpg" for name in later}  # the kept photos were not downloaded again
    assert info["number_of_images"] == info["number_of_embedded_images"] == 5
    for name in [*later, *kept]:
        query = base64.b64encode(edited(photo(name))).decode()
        best = api.post(f"/api/collection/{collection_id}/search?num_results=1", json={"image": query}).json()
        assert best == [{"image_url": f"{photos}/{name}.jpg", "repo_url": f"https://museum.example/{name}",
                         "score": best[0]["score"]}]  # fmt: skip


def test_the_cli_finetunes_with_a_progress_bar_and_reports_failed_images(up, photos):
    api = httpx.Client(base_url=up["api"], headers={"API-Key": up["key"]}, timeout=60)
    collection_id = api.post("/api/collection/create", json={"name": "From the CLI"}).json()["id"]
    rows = "".join(f"{photos}/{name}.jpg,https://museum.example/{name}\n" for name in [*PHOTOS[7:10], "missing"])
    api.post(f"/api/collection/{collection_id}/updatecontent", content=rows, headers={"Content-Type": "text/csv"})
    cli = [*SLUICE, "collections", "finetune", "--api-url", up["api"]]

    wide = up["env"] | {"COLUMNS": "200"}  # one line per message
    done = subprocess.run([*cli, str(collection_id), "--key", up["key"], "--wait"], env=wide, capture_output=True,
                          text=True, timeout=300)  # fmt: skip

    shown = done.stdout + done.stderr  # the bar and messages go to stderr
    assert done.returncode == 0, shown
    assert "100%" in shown and "3 of 4 images embedded, 1 failed" in shown
    assert f"{photos}/missing.jpg: HTTP 404" in shown
    refused = subprocess.run([*cli, str(collection_id), "--key", "sk_wrong"], env=up["env"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    unknown = subprocess.run([*cli, "999999", "--key", up["key"]], env=up["env"], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "403" in refused.stderr
    assert unknown.returncode == 1 and "400: Collection 999999 does not exist" in unknown.stderr
