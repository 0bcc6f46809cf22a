"""Finetune throughput for ``benchmarks.similarity``: the real ``finetune_collection`` flow against a
hand-written download-and-embed loop, over the same JPEG files served from 127.0.0.1.

The parent (``benchmarks.similarity.__main__``) calls ``measure``: it writes the files, serves them
from a ``ThreadingHTTPServer`` in its own process, starts one Prefect server (``PrefectServer`` from
``benchmarks.reindex``), then runs each load alone in a child process with a clean environment,
``python -m benchmarks.similarity.finetune SPEC_JSON``, baseline first so that nothing of Prefect's
is running yet. Each child gets its own data dir holding a copy of the exported ONNX model and
embeds a dummy batch before the clock starts, so neither pays for the export or the model load.

Both loads take FINETUNE_BATCH_SIZE images a batch, download them FETCH_CONCURRENCY at once, then
``decode_image`` + ``embed_images`` the batch (Sluice's defaults):

- **sluice**: an app database (``sluice.db.upgrade``) and one collection whose CSV lists every
  URL, made before the clock; then the timed call ``finetune_collection(collection_id=...)`` against
  the Prefect server: flow and task runs, ``tasks.fetch`` (a checked, pinned connection per image),
  a SHA-256 per image, vectors written to the app database, progress and its artifact.
- **baseline**: one ``httpx.Client`` (keep-alive) shared by a thread pool; vectors kept in memory.

SPEC_JSON holds ``kind`` (``sluice`` or ``baseline``), ``urls_file`` (one URL a line) and ``result``
(the JSON file the child writes; the vectors go next to it as ``vectors.npy``, in URL order).
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import benchmarks

KINDS = ("baseline", "sluice")  # baseline first: nothing of Prefect's is running yet
JPEG_QUALITY = 90
MARK_SIDE = 8  # a JPEG block: the mark on a repeated image survives compression
SAME_VECTORS = 1e-4  # max |difference| between the two loads' vectors for the same bytes
COLLECTION = "bench"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- parent: files, server, child processes -------------------------------------------------------


def jpeg_files(images: list[Image.Image], count: int) -> list[bytes]:
    """``count`` JPEG files: the images in turn; the r-th repeat of one carries an 8x8 mark whose
    place and grey level depend on r, so every file differs."""
    from benchmarks.similarity.data import encode

    files = []
    for i in range(count):
        image, repeat = images[i % len(images)], i // len(images)
        if repeat:
            image = image.convert("RGB")  # a copy
            x = (repeat * MARK_SIDE) % max(MARK_SIDE, image.width - MARK_SIDE)
            image.paste((repeat * 37 % 256,) * 3, (x, 0, x + MARK_SIDE, MARK_SIDE))
        files.append(encode(image, "JPEG", JPEG_QUALITY))
    return files


class FileServer(ThreadingHTTPServer):
    """Serves ``/<i>.jpg`` from memory; HTTP/1.1, so a client may keep its connections."""

    daemon_threads = True

    def __init__(self, files: list[bytes]) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.files = files

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.server_address[1]}/{i}.jpg" for i in range(len(self.files))]


class FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body ~40 ms
    server: FileServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/").removesuffix(".jpg")
        if not name.isdigit() or int(name) >= len(self.server.files):
            self.send_error(404)
            return
        body = self.server.files[int(name)]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Load:
    kind: str
    images: int
    seconds: float | None = None
    message: str | None = None
    embedded: int | None = None
    failed: int | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.images / self.seconds if self.seconds else None


@dataclass
class Finetune:
    images: int
    megabytes: float
    batch_size: int
    concurrency: int
    loads: dict[str, Load]
    max_difference: float | None = None

    @property
    def ratio(self) -> float | None:
        flow, baseline = self.loads["sluice"].rate, self.loads["baseline"].rate
        return flow / baseline if flow and baseline else None

    def problems(self) -> list[str]:
        out = [f"{load.kind}: {load.error}" for load in self.loads.values() if load.error]
        if self.max_difference is not None and self.max_difference > SAME_VECTORS:
            out.append(f"the flow's stored vectors differ from the baseline's by up to {self.max_difference:.2g}")
        return out


def measure(images: list[Image.Image], count: int, workdir: Path) -> Finetune:
    """Both loads over ``count`` files made from ``images``; ``workdir/models`` holds the exported model."""
    from benchmarks.reindex.__main__ import PrefectServer, clean_env
    from sluice.settings import Settings

    defaults = Settings.model_fields
    started = time.perf_counter()
    files = jpeg_files(images, count)
    log(f"{count} JPEG files ({sum(map(len, files)) / 2**20:.1f} MB) written in {time.perf_counter() - started:.1f} s")
    result = Finetune(count, sum(map(len, files)) / 2**20, defaults["FINETUNE_BATCH_SIZE"].default,
                      defaults["FETCH_CONCURRENCY"].default, {kind: Load(kind, count) for kind in KINDS})  # fmt: skip
    root = workdir / "finetune"
    server, prefect = FileServer(files), PrefectServer(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.perf_counter()
        try:
            prefect.start()
            log(f"Prefect server on port {prefect.port} started in {time.perf_counter() - started:.1f} s")
        except RuntimeError as exc:
            result.loads["sluice"].error = str(exc)
        for kind, load in result.loads.items():
            if load.error:
                continue
            rundir = root / kind
            shutil.copytree(workdir / "models", rundir / "data" / "models")  # exported once, by the parent
            env = clean_env() | {"PREFECT_HOME": str(rundir / "prefect-home"), "SLUICE_DATA_DIR": str(rundir / "data"),
                                 # explicit, so that a .env file in the checkout cannot make the loads differ
                                 "SLUICE_FINETUNE_BATCH_SIZE": str(result.batch_size),
                                 "SLUICE_FETCH_CONCURRENCY": str(result.concurrency)}  # fmt: skip
            if kind == "sluice":
                env |= prefect.env | {"SLUICE_FETCH_ALLOW_PRIVATE": "true"}  # the files are on 127.0.0.1
            urls_file = root / "urls.txt"  # one file for both loads: thousands of URLs are too long for argv
            urls_file.write_text("\n".join(server.urls()))
            run_child(load, {"kind": kind, "urls_file": str(urls_file)}, env, rundir)
            log(f"{kind:<8} " + (f"FAILED: {load.error}" if load.error else f"{load.rate:.0f} images/s"))
    finally:
        prefect.stop()
        server.shutdown()
        server.server_close()
    if not any(load.error for load in result.loads.values()):
        baseline, flow = (np.load(root / kind / "vectors.npy") for kind in KINDS)
        result.max_difference = float(np.abs(baseline - flow).max()) if baseline.shape == flow.shape else np.inf
    return result


def run_child(load: Load, spec: dict[str, Any], env: dict[str, str], rundir: Path) -> None:
    """One load in its own process; fills ``load`` from its result (or records why it failed)."""
    timeout = 120 + load.images / 5  # far beyond any rate seen: a hang must not stall the run
    result, load.error = benchmarks.run_child("benchmarks.similarity.finetune", spec, env, rundir, timeout)
    if result is None:
        return
    for key, value in result.items():
        setattr(load, key, value)
    if load.embedded != load.images or load.failed:
        load.error = f"{load.embedded} of {load.images} images embedded, {load.failed} failed: {load.message}"


# --- child: one load ------------------------------------------------------------------------------


def warm_up() -> None:
    """Load the model and run one full onnxruntime batch, so the clock sees neither."""
    from sluice.image_embedding import BATCH_SIZE, embed_images

    embed_images([Image.new("RGB", (64, 64), "grey")] * BATCH_SIZE)


def run_baseline(urls: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """What a hand-written loop does: the same batches and concurrency, no database, no Prefect."""
    import httpx

    from sluice.image_embedding import decode_image, embed_images
    from sluice.settings import get_settings

    settings = get_settings()
    size = settings.FINETUNE_BATCH_SIZE

    def download(url: str) -> bytes:
        response = client.get(url)
        response.raise_for_status()
        return response.content

    warm_up()
    batches = []
    started = time.perf_counter()
    with httpx.Client(timeout=settings.FETCH_TIMEOUT) as client, ThreadPoolExecutor(settings.FETCH_CONCURRENCY) as pool:
        for start in range(0, len(urls), size):
            bodies = list(pool.map(download, urls[start : start + size]))
            batches.append(embed_images([decode_image(body) for body in bodies]))
    seconds = time.perf_counter() - started
    vectors = np.vstack(batches) if batches else np.empty((0, 0), dtype=np.float32)
    embedded = int(np.isfinite(vectors).all(axis=1).sum())
    return {"seconds": seconds, "embedded": embedded, "failed": len(urls) - embedded}, vectors


def run_sluice(urls: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """The real flow, called as its deployment calls it, on a collection listing every URL."""
    from flows.finetune_collection import finetune_collection
    from sluice import db
    from sluice import image_collections as store
    from sluice.settings import get_settings

    url = get_settings().database_url
    db.upgrade(url)
    with db.session(url) as session:
        row = store.create(session, COLLECTION)
        store.set_content(session, row, "".join(f"{u},https://example.org/items/{i}\n" for i, u in enumerate(urls)))
        collection_id = row.id
    warm_up()
    started = time.perf_counter()
    state = finetune_collection(collection_id=collection_id, return_state=True)
    seconds = time.perf_counter() - started
    if not state.is_completed():
        raise RuntimeError(f"the flow run ended {state.type.value}: {state.message}")
    with db.session(url) as session:
        info = store.info(session, store.get(session, collection_id))
        stored = [image.embedding for image in store.images(session, collection_id)]  # in URL order
    vectors = np.vstack([np.frombuffer(vector, dtype=np.float32) for vector in stored if vector is not None]
                        or [np.empty((0, 0), dtype=np.float32)])  # fmt: skip
    return {"seconds": seconds, "message": state.message, "embedded": info["number_of_embedded_images"],
            "failed": info["number_of_failed_images"]}, vectors  # fmt: skip


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    urls = Path(spec["urls_file"]).read_text().split()
    result, vectors = (run_sluice if spec["kind"] == "sluice" else run_baseline)(urls)
    np.save(Path(spec["result"]).parent / "vectors.npy", vectors)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
