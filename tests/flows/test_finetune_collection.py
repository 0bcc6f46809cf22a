"""The finetune flow against a real Prefect API, a real app database and real photos (scikit-image's
samples) served by a local HTTP server: failures are reported per image and the rest embedded, only
images without a vector are downloaded, ``force`` re-embeds exactly the images whose bytes changed,
and every vector stays on the row of the URL it was made from, even when content changes mid-run."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from skimage import data as samples

from flows.finetune_collection import finetune_collection
from sluice import db
from sluice import image_collections as store
from sluice.image_embedding import decode_image, embed_images
from sluice.models import CollectionImage, ImageCollection
from sluice.settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_api")

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins"]
MAX_BYTES = 300_000  # every sample JPEG is well below; the noise PNG is far above
BATCH_SIZE = 2  # several batches, so several task runs, even for a handful of images


def jpeg(name: str) -> bytes:
    pixels = getattr(samples, name)()
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {name: jpeg(name) for name in PHOTOS}


class ImageServer(ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes, changeable while it runs) and counts every request; the
    optional ``on_request`` hook runs before answering, to change the app database mid-run."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ImageHandler)
        self.files: dict[str, bytes] = {}
        self.served: Counter[str] = Counter()
        self.on_request: Callable[[str], None] | None = None
        self.lock = threading.Lock()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}/{path}"


class ImageHandler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        with self.server.lock:
            self.server.served[path] += 1
        if self.server.on_request is not None:
            self.server.on_request(path)
        body = self.server.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(photos) -> Iterator[ImageServer]:
    server = ImageServer()
    server.files = {f"{name}.jpg": data for name, data in photos.items()}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_db(sluice_env, server) -> str:
    """The app database; loopback is refused except the image server's own address."""
    sluice_env(FETCH_ALLOW_PRIVATE="false", FETCH_ALLOWED_NETWORKS='["127.0.0.1/32"]', FETCH_TIMEOUT="10",
               IMAGE_MAX_BYTES=str(MAX_BYTES), FINETUNE_BATCH_SIZE=str(BATCH_SIZE))  # fmt: skip
    url = get_settings().database_url
    db.upgrade(url)
    return url


def make_collection(url: str, image_urls: list[str]) -> int:
    with db.session(url) as session:
        row = store.create(session, "Photos")
        store.set_content(session, row, csv(image_urls))
        return row.id


def csv(image_urls: list[str]) -> str:
    return "".join(f"{u},https://museum.example/item/{i}\n" for i, u in enumerate(image_urls))


def set_content(url: str, collection_id: int, image_urls: list[str]) -> None:
    with db.session(url) as session:
        store.set_content(session, store.get(session, collection_id), csv(image_urls))


def run(collection_id: int, force: bool = False):
    return finetune_collection(collection_id=collection_id, force=force, return_state=True)


def rows(url: str, collection_id: int) -> dict[str, CollectionImage]:
    with db.session(url) as session:
        return {image.image_url: image for image in store.images(session, collection_id)}


def info(url: str, collection_id: int) -> dict:
    with db.session(url) as session:
        return store.info(session, store.get(session, collection_id))


def vector(row: CollectionImage) -> np.ndarray:
    return np.frombuffer(row.embedding, dtype=np.float32)


def embedding_of(data: bytes) -> np.ndarray:
    return embed_images([decode_image(data)])[0]


def assert_is_embedding_of(row: CollectionImage, data: bytes) -> None:
    """The row's vector is the model's for these bytes (batching may move the last float digits)."""
    assert row.embedding is not None and row.error is None, (row.image_url, row.error)
    assert row.image_sha256 == hashlib.sha256(data).hexdigest(), row.image_url
    np.testing.assert_allclose(vector(row), embedding_of(data), atol=1e-5, err_msg=row.image_url)


def noise_png(size: int = 600) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


# --- failures -------------------------------------------------------------------------------------------


def test_finetune_embeds_what_it_can_and_reports_each_failure_with_its_reason(app_db, server, photos):
    server.files["notes.jpg"] = b"these are not the pixels you are looking for"
    server.files["huge.png"] = noise_png()
    assert len(server.files["huge.png"]) > MAX_BYTES
    good = [server.url(f"{name}.jpg") for name in PHOTOS[:3]]
    private = server.url("private.jpg", host="127.0.0.2")  # loopback, but not the allowed network
    server.files["private.jpg"] = photos["rocket"]
    image_urls = [good[0], server.url("missing.jpg"), good[1], server.url("notes.jpg"), server.url("huge.png"),
                  private, good[2]]  # fmt: skip
    collection_id = make_collection(app_db, image_urls)
    before = datetime.now(UTC)

    state = run(collection_id)

    assert state.is_completed(), state.message
    assert state.message.startswith("3 images embedded, 0 unchanged, 4 failed"), state.message
    shown = info(app_db, collection_id)
    assert shown["number_of_images"] == 7 and shown["number_of_embedded_images"] == 3
    assert shown["number_of_failed_images"] == 4
    reasons = {f["image_url"]: f["reason"] for f in shown["failed_images"]}
    assert [f["image_url"] for f in shown["failed_images"]] == [image_urls[i] for i in (1, 3, 4, 5)]  # CSV order
    assert "HTTP 404" in reasons[server.url("missing.jpg")]
    assert "not an image" in reasons[server.url("notes.jpg")]
    assert f"over the limit of {MAX_BYTES}" in reasons[server.url("huge.png")]
    assert "127.0.0.2" in reasons[private] and "not a public address" in reasons[private]
    assert server.served["private.jpg"] == 0  # refused before any connection
    assert shown["finetuning_progess"] is None and not shown["requires_finetuning"]
    assert before <= datetime.fromisoformat(shown["last_finetuned"]) <= datetime.now(UTC)
    stored = rows(app_db, collection_id)
    for name, image_url in zip(PHOTOS[:3], good, strict=True):
        assert_is_embedding_of(stored[image_url], photos[name])
    for image_url in reasons:
        assert stored[image_url].embedding is None and stored[image_url].image_sha256 is None


def test_every_batch_is_a_task_run_of_the_flow_run(app_db, server):
    collection_id = make_collection(app_db, [server.url(f"{name}.jpg") for name in PHOTOS[:5]])

    state = run(collection_id)

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )[0]
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert flow_run.name == f"collection-{collection_id}"
    assert sorted(t.name for t in task_runs) == ["batch-1", "batch-2", "batch-3"]  # 5 images, 2 a batch
    assert all(t.state.is_completed() for t in task_runs)


def test_progress_moves_while_running_and_is_idle_after(app_db, server):
    collection_id = make_collection(app_db, [server.url(f"{name}.jpg") for name in PHOTOS])
    seen = []
    server.on_request = lambda path: seen.append(info(app_db, collection_id)["finetuning_progess"])

    assert run(collection_id).is_completed()

    # Batch 1 downloads before any progress is stored; then 2 and 4 of 6 images are done.
    assert sorted({round(p, 1) for p in seen if p is not None}) == [33.3, 66.7], seen
    assert info(app_db, collection_id)["finetuning_progess"] is None


def test_a_failing_image_that_becomes_available_is_embedded_next_time(app_db, server, photos):
    image_urls = [server.url("astronaut.jpg"), server.url("later.jpg")]
    collection_id = make_collection(app_db, image_urls)
    assert run(collection_id).is_completed()
    assert info(app_db, collection_id)["number_of_failed_images"] == 1

    server.files["later.jpg"] = photos["coffee"]
    server.served.clear()
    state = run(collection_id)

    assert state.is_completed() and state.message.startswith("1 images embedded, 0 unchanged, 0 failed")
    assert dict(server.served) == {"later.jpg": 1}  # the embedded one is not downloaded again
    shown = info(app_db, collection_id)
    assert shown["number_of_embedded_images"] == 2 and shown["number_of_failed_images"] == 0
    assert shown["failed_images"] == []
    assert_is_embedding_of(rows(app_db, collection_id)[server.url("later.jpg")], photos["coffee"])


# --- what is downloaded again --------------------------------------------------------------------------------


def test_a_second_run_without_changes_downloads_nothing(app_db, server):
    collection_id = make_collection(app_db, [server.url(f"{name}.jpg") for name in PHOTOS[:4]])
    assert run(collection_id).is_completed()
    first = {u: r.embedding for u, r in rows(app_db, collection_id).items()}
    server.served.clear()

    state = run(collection_id)

    assert state.is_completed() and state.message.startswith("0 images embedded, 0 unchanged, 0 failed")
    assert not server.served
    assert {u: r.embedding for u, r in rows(app_db, collection_id).items()} == first


def test_force_re_embeds_exactly_the_image_whose_bytes_changed(app_db, server, photos):
    names = PHOTOS[:4]
    collection_id = make_collection(app_db, [server.url(f"{name}.jpg") for name in names])
    assert run(collection_id).is_completed()
    first = rows(app_db, collection_id)
    changed = server.url("rocket.jpg")
    server.files["rocket.jpg"] = photos["coins"]  # the same URL now serves another photo

    server.served.clear()
    without_force = run(collection_id)
    assert without_force.is_completed() and not server.served
    assert rows(app_db, collection_id)[changed].embedding == first[changed].embedding

    server.served.clear()
    forced = run(collection_id, force=True)

    assert forced.is_completed() and forced.message.startswith("1 images embedded, 3 unchanged, 0 failed")
    assert dict(server.served) == {f"{name}.jpg": 1 for name in names}  # force downloads every image once
    now = rows(app_db, collection_id)
    assert_is_embedding_of(now[changed], photos["coins"])
    assert not np.allclose(vector(now[changed]), vector(first[changed]), atol=1e-3)
    for image_url in set(now) - {changed}:
        assert now[image_url].embedding == first[image_url].embedding  # untouched, bytes for bytes
        assert now[image_url].image_sha256 == first[image_url].image_sha256


def test_force_drops_the_vector_of_an_image_that_is_gone(app_db, server):
    collection_id = make_collection(app_db, [server.url("astronaut.jpg"), server.url("chelsea.jpg")])
    assert run(collection_id).is_completed()
    del server.files["chelsea.jpg"]

    assert run(collection_id, force=True).is_completed()

    shown = info(app_db, collection_id)
    assert shown["number_of_embedded_images"] == 1 and shown["number_of_failed_images"] == 1
    assert rows(app_db, collection_id)[server.url("chelsea.jpg")].embedding is None


# --- alignment ---------------------------------------------------------------------------------------------


def test_vectors_stay_with_their_urls_when_content_is_reordered_trimmed_and_extended(app_db, server, photos):
    url = {name: server.url(f"{name}.jpg") for name in PHOTOS}
    collection_id = make_collection(app_db, [url[n] for n in ("astronaut", "chelsea", "coffee", "rocket")])
    assert run(collection_id).is_completed()
    first = rows(app_db, collection_id)

    # Two leave, two arrive, and the kept ones swap places (the reference misaligned here).
    order = ["rocket", "camera", "chelsea", "coins"]
    set_content(app_db, collection_id, [url[n] for n in order])
    server.served.clear()
    assert info(app_db, collection_id)["requires_finetuning"]
    state = run(collection_id)

    assert state.is_completed() and state.message.startswith("2 images embedded")
    assert dict(server.served) == {"camera.jpg": 1, "coins.jpg": 1}
    now = rows(app_db, collection_id)
    assert [r.image_url for r in sorted(now.values(), key=lambda r: r.position)] == [url[n] for n in order]
    for name in order:
        assert_is_embedding_of(now[url[name]], photos[name])
    for name in ("rocket", "chelsea"):
        assert now[url[name]].embedding == first[url[name]].embedding
    shown = info(app_db, collection_id)
    assert shown["number_of_images"] == shown["number_of_embedded_images"] == 4 and not shown["requires_finetuning"]


def test_content_replaced_mid_run_never_pairs_a_url_with_another_images_vector(app_db, server, photos):
    url = {name: server.url(f"{name}.jpg") for name in PHOTOS}
    collection_id = make_collection(app_db, [url[n] for n in PHOTOS])
    replaced = []

    def replace_once(path: str) -> None:
        # While the second batch downloads: the same URLs in reverse, one dropped, one unknown added.
        if path in ("coffee.jpg", "rocket.jpg") and not replaced:
            replaced.append(path)
            set_content(app_db, collection_id, [server.url("new.jpg"), *[url[n] for n in PHOTOS[::-1][:-1]]])

    server.on_request = replace_once
    server.files["new.jpg"] = photos["astronaut"]

    assert run(collection_id).is_completed()

    assert replaced
    now = rows(app_db, collection_id)
    assert len(now) == len(PHOTOS)
    for name in PHOTOS[1:]:
        if now[url[name]].embedding is not None:
            assert_is_embedding_of(now[url[name]], photos[name])
    assert now[server.url("new.jpg")].embedding is None  # not in the run's content
    shown = info(app_db, collection_id)
    assert shown["requires_finetuning"]  # the newer content still needs a run

    server.on_request = None
    assert run(collection_id).is_completed()
    now = rows(app_db, collection_id)
    assert_is_embedding_of(now[server.url("new.jpg")], photos["astronaut"])
    for name in PHOTOS[1:]:
        assert_is_embedding_of(now[url[name]], photos[name])
    assert not info(app_db, collection_id)["requires_finetuning"]


# --- deleted collections ---------------------------------------------------------------------------------------


def test_a_collection_deleted_before_the_run_completes_without_error(app_db, server):
    collection_id = make_collection(app_db, [server.url("astronaut.jpg")])
    with db.session(app_db) as session:
        store.delete(session, store.get(session, collection_id))

    state = run(collection_id)

    assert state.is_completed(), state.message
    assert "no longer exists" in state.message
    assert not server.served


def test_a_collection_deleted_mid_run_completes_and_leaves_nothing_behind(app_db, server):
    collection_id = make_collection(app_db, [server.url(f"{name}.jpg") for name in PHOTOS[:4]])

    def delete_once(path: str) -> None:
        with db.session(app_db) as session:
            row = session.get(ImageCollection, collection_id)
            if row is not None:
                store.delete(session, row)

    server.on_request = delete_once

    state = run(collection_id)

    assert state.is_completed(), state.message
    with db.session(app_db) as session:
        assert session.get(ImageCollection, collection_id) is None
        assert not store.images(session, collection_id)
