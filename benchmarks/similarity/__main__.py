"""``python -m benchmarks.similarity [--queries 200] [--sizes 1000,10000] [--batch-size 32]
[--finetune-images 225 | --no-finetune]``

Measures ``sluice.image_embedding`` as the image-similarity search uses it:

1. recall@1 and recall@5 of edited copies (crop, colour, JPEG, rotate, low-res, grey, mirror,
   combined) of real sample photos, searched among the originals plus 200 distractor patches;
   for the model, the model with mirror averaging, and a raw-pixel baseline;
2. query latency: embedding one query image, and a brute-force NumPy cosine top-k over n vectors;
3. throughput in batches, as a finetune flow embeds a collection;
4. finetune images/s: the real ``finetune_collection`` flow (Prefect server, app database, images
   downloaded from 127.0.0.1) against a hand-written download-decode-embed loop (``finetune.py``).

The model is exported into a fresh temporary data dir, so the first-use cost is measured too.
Prints tables and the goals' verdicts; exits 1 only when something fails to run or the finetune
loads do not embed every image (``FAILED`` lines).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    from benchmarks.similarity.finetune import Finetune

GOAL_RECALL_AT_1 = 0.95
GOAL_SEARCH_P95_MS = 50.0
GOAL_SEARCH_SIZE = 10_000  # vectors
TOP_K = 10
GALLERY_SIZE = 225  # 25 originals + 200 distractors: the search's real vectors
FINETUNE_IMAGES = 225  # the originals and edited copies, once each
PIXEL_SIDE = 16  # the baseline's vector: 16x16 RGB pixels
SEED = 0

Embedder = Callable[[Sequence[Image.Image]], np.ndarray]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description = "Image embeddings: recall on edited copies, query latency, throughput."
    parser = argparse.ArgumentParser(prog="python -m benchmarks.similarity", description=description)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per measurement (default: 200)")
    parser.add_argument("--sizes", default="1000,10000", help="vectors searched, comma-separated (default: 1000,10000)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per embed_images call (default: 32)")
    finetune_help = f"JPEG files the finetune loads download and embed (default: {FINETUNE_IMAGES})"
    parser.add_argument("--finetune-images", type=_positive, default=FINETUNE_IMAGES, metavar="N", help=finetune_help)
    parser.add_argument("--no-finetune", action="store_true", help="skip the finetune flow against its baseline")
    args = parser.parse_args(argv)
    args.sizes = [int(size.replace("_", "")) for size in args.sizes.split(",")]
    if min(args.sizes) < GALLERY_SIZE:
        parser.error(f"--sizes: at least {GALLERY_SIZE} vectors each, the real gallery's embeddings")
    return args


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive integer, not {text!r}")
    return value


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: Sequence[float]) -> tuple[float, float]:
    """Median and p95, in milliseconds."""
    return float(np.median(seconds)) * 1000, float(np.percentile(seconds, 95)) * 1000


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in rows]


# --- embedders ------------------------------------------------------------------------------------


def model(images: Sequence[Image.Image]) -> np.ndarray:
    from sluice.image_embedding import embed_images

    return embed_images(images)


def model_mirror_average(images: Sequence[Image.Image]) -> np.ndarray:
    """The embedding of the image plus that of its mirror image, renormalised."""
    from sluice.image_embedding import embed_images

    both = embed_images(images) + embed_images([ImageOps.mirror(image) for image in images])
    return both / np.linalg.norm(both, axis=1, keepdims=True)


def pixels(images: Sequence[Image.Image]) -> np.ndarray:
    """Baseline: 16x16 RGB pixels, mean removed, unit length: cosine on a tiny thumbnail."""
    size = (PIXEL_SIDE, PIXEL_SIDE)
    vectors = np.stack([np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.float32).ravel()
                        for image in images])  # fmt: skip
    vectors -= vectors.mean(axis=1, keepdims=True)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


EMBEDDERS: dict[str, Embedder] = {
    "model": model,
    "model + mirror average": model_mirror_average,
    "16x16 pixels": pixels,
}


# --- recall ---------------------------------------------------------------------------------------


def make_queries(photos: dict[str, Image.Image], edits: dict) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """Every edit of every photo, each sent through bytes and ``decode_image`` as an upload would be."""
    from benchmarks.similarity.data import encode
    from sluice.image_embedding import decode_image

    images, truth, kinds = [], [], []
    for index, photo in enumerate(photos.values()):
        rng = np.random.default_rng(SEED + index)
        for name, edit in edits.items():
            images.append(decode_image(encode(edit(photo, rng))))
            truth.append(index)
            kinds.append(name)
    return images, np.array(truth), np.array(kinds)


def ranks(queries: np.ndarray, gallery: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """How many gallery items score above each query's original (0: found first)."""
    scores = queries @ gallery.T
    return (scores > scores[np.arange(len(truth)), truth][:, None]).sum(axis=1)


def recall_tables(photos: dict[str, Image.Image], distractors: list[Image.Image], standard: tuple) -> tuple[list, dict]:
    from benchmarks.similarity.data import EDITS, HARD_EDITS

    gallery = list(photos.values()) + distractors
    sets = {"edits": (EDITS, standard), "hard": (HARD_EDITS, make_queries(photos, HARD_EDITS))}
    lines, results = [], {}
    for set_name, (edits, (queries, truth, kinds)) in sets.items():
        rows = []
        for name, embed in EMBEDDERS.items():
            found = ranks(embed(queries), embed(gallery), truth)
            results[(set_name, name)] = (float(np.mean(found < 1)), float(np.mean(found < 5)))
            misses = sorted({f"{list(photos)[truth[i]]}/{kinds[i]}" for i in np.flatnonzero(found >= 1)})
            results[(set_name, name, "misses")] = misses
            per_edit = [f"{np.mean(found[kinds == edit] < 1):.2f}" for edit in edits]
            rows.append((name, *(f"{value:.3f}" for value in results[(set_name, name)]), *per_edit))
        title = "edited copies" if set_name == "edits" else "harder edits (no goal)"
        lines += [f"{title}: {len(queries)} queries ({len(photos)} photos x {len(edits)} edits), gallery of "
                  f"{len(gallery)} ({len(photos)} originals + {len(distractors)} distractors); "
                  "per-edit columns are recall@1", ""]  # fmt: skip
        lines += table(("embedding", "recall@1", "recall@5", *edits), rows) + [""]
    return lines, results


# --- latency and throughput -----------------------------------------------------------------------


def search(matrix: np.ndarray, query: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Brute-force cosine top-k over unit vectors: one matrix-vector product and a partial sort."""
    scores = matrix @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def search_latency(gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, size: int, repeat: int) -> list:
    """Top-k over ``size`` vectors: the real gallery plus random unit vectors as distractors."""
    rng = np.random.default_rng(SEED)
    filler = rng.standard_normal((size - len(gallery), gallery.shape[1]), dtype=np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    matrix = np.ascontiguousarray(np.vstack([gallery, filler]))
    hits, timings = 0, []
    for i in range(repeat):
        j = i % len(queries)
        started = time.perf_counter()
        top = search(matrix, queries[j])
        timings.append(time.perf_counter() - started)
        hits += int(top[0] == truth[j])
    return [size, *ms(timings), hits / repeat]


def embed_latency(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return ms(timings)


def throughput(images: list[Image.Image], encoded: list[bytes], batch_size: int) -> tuple[float, float]:
    """Images per second through embed_images in batches: decoded images, then from bytes."""
    from sluice.image_embedding import decode_image, embed_images

    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        embed_images(images[start : start + batch_size])
    embed_only = len(images) / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, len(encoded), batch_size):
        embed_images([decode_image(data) for data in encoded[start : start + batch_size]])
    with_decode = len(encoded) / (time.perf_counter() - started)
    return embed_only, with_decode


def cached_start() -> float:
    """Seconds for a new process to load the cached model and embed one image (imports excluded)."""
    code = ("import time, numpy as np\nfrom PIL import Image\nfrom sluice import image_embedding as ie\n"
            "started = time.perf_counter()\nie.embed_images([Image.new('RGB', (64, 64))])\n"
            "import sys\nassert 'torch' not in sys.modules\nprint(time.perf_counter() - started)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    return float(proc.stdout.strip().splitlines()[-1])


def finetune_lines(result: Finetune) -> list[str]:
    labels = {"baseline": "baseline: httpx + decode_image + embed_images, vectors in memory",
              "sluice": "flow finetune_collection (Prefect server, app database)"}  # fmt: skip
    rows = [(labels[kind], f"{load.images:,}", f"{load.seconds:.1f}" if load.seconds else "-",
             f"{load.rate:.0f}" if load.rate else "-") for kind, load in result.loads.items()]  # fmt: skip
    lines = [f"finetune: {result.images:,} JPEG files ({result.megabytes:.1f} MB) served over HTTP on 127.0.0.1; "
             f"both loads download {result.concurrency} at once, in batches of {result.batch_size} that are then "
             "decoded and embedded; each load in its own process, the model loaded before the clock", ""]  # fmt: skip
    lines += table(("load", "images", "seconds", "images/s"), rows) + [""]
    if result.ratio is not None:
        lines.append(f"finetune ratio = flow images/s / baseline images/s = {result.ratio:.2f}")
    flow = result.loads["sluice"]
    if flow.message:
        lines.append(f"flow run: {flow.message}; info(): {flow.embedded} of {flow.images} images embedded, "
                     f"{flow.failed} failed")  # fmt: skip
    if result.max_difference is not None:
        lines.append(f"stored vectors against the baseline's, same files: max |difference| {result.max_difference:.2g}")
    return lines


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-similarity-"))
    os.environ["SLUICE_DATA_DIR"] = str(workdir)  # a fresh data dir: the export is measured
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    from benchmarks.similarity.data import EDITS, encode, load_distractors, load_photos
    from sluice import image_embedding as ie
    from sluice.settings import get_settings

    get_settings.cache_clear()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    packages = ", ".join(f"{p} {version(p)}" for p in ("onnxruntime", "torch", "numpy", "pillow"))
    print(f"CPU: {os.cpu_count()} logical CPUs ({usable} usable), {platform.machine()}, "
          f"{platform.system()} {platform.release()}")  # fmt: skip
    print(f"Python {platform.python_version()}; {packages}; model {ie.MODEL_NAME}, {ie.DIM} dimensions")

    photos, distractors = load_photos(), load_distractors()
    started = time.perf_counter()
    ie.embed_images([photos["astronaut"]])
    first_use = time.perf_counter() - started
    model_files = list((workdir / "models").glob("*.onnx"))
    print(f"first use in a fresh data dir (export to ONNX + load): {first_use:.1f} s -> "
          f"{', '.join(f'{p.name} ({p.stat().st_size / 2**20:.1f} MB)' for p in model_files)}")  # fmt: skip
    print(f"first use with the cached file, in a new process (torch not imported): {cached_start():.2f} s")
    print()

    log(f"recall over {len(photos)} photos and {len(distractors)} distractors")
    queries, truth, kinds = make_queries(photos, EDITS)
    lines, results = recall_tables(photos, distractors, (queries, truth, kinds))
    print("\n".join(lines))

    log("latency")
    gallery = ie.embed_images(list(photos.values()) + distractors)
    vectors = ie.embed_images(queries)
    rows = [search_latency(gallery, vectors, truth, size, args.queries) for size in args.sizes]
    astronaut_png, retina_jpeg = encode(photos["astronaut"]), encode(photos["retina"], "JPEG")
    calls = {"embed_images, 1 decoded 512x512 image": lambda: ie.embed_images([photos["astronaut"]]),
             "embed_bytes, 512x512 PNG": lambda: ie.embed_bytes(astronaut_png),
             "embed_bytes, 1411x1411 JPEG q90": lambda: ie.embed_bytes(retina_jpeg)}  # fmt: skip
    embed_rows = [(name, *embed_latency(call, args.queries)) for name, call in calls.items()]
    print(f"query latency, {args.queries} queries each (the distractors are random unit vectors; top-{TOP_K}):")
    print()
    latency = [(f"search {size:,} vectors", f"{p50:.2f}", f"{p95:.2f}", f"{hit:.3f}") for size, p50, p95, hit in rows]
    latency += [(name, f"{p50:.1f}", f"{p95:.1f}", "-") for name, p50, p95 in embed_rows]
    print("\n".join(table(("step", "median ms", "p95 ms", "top-1 correct"), latency)))
    print()

    log("throughput")
    images = list(photos.values()) + queries
    encoded = [encode(image) for image in images]
    embed_only, with_decode = throughput(images, encoded, args.batch_size)
    print(f"throughput, batches of {args.batch_size}, {len(images)} images (originals + edited copies): "
          f"{embed_only:.0f} images/s from decoded images ({1000 / embed_only:.1f} ms an image), {with_decode:.0f} "
          f"images/s from PNG bytes with decode_image ({1000 / with_decode:.1f} ms an image)")  # fmt: skip
    print()

    problems = []
    if not args.no_finetune:
        from benchmarks.similarity.finetune import measure

        log(f"finetune: the flow against a hand-written loop, {args.finetune_images} images")
        finetune = measure(images, args.finetune_images, workdir)
        print("\n".join(finetune_lines(finetune)))
        print()
        problems = finetune.problems()

    recall_1, recall_5 = results[("edits", "model")]
    baseline_1 = results[("edits", "16x16 pixels")][0]
    mirror_1 = results[("edits", "model + mirror average")][0]
    hard_1, hard_mirror_1 = results[("hard", "model")][0], results[("hard", "model + mirror average")][0]
    verdict = "met" if recall_1 >= GOAL_RECALL_AT_1 else "NOT met"
    print(f"recall@1 {recall_1:.3f}, recall@5 {recall_5:.3f} (goal recall@1 >= {GOAL_RECALL_AT_1}: {verdict}); "
          f"16x16-pixel baseline recall@1 {baseline_1:.3f}, ratio {recall_1 / max(baseline_1, 1e-9):.2f}")  # fmt: skip
    print(f"mirror averaging: recall@1 {mirror_1:.3f} against {recall_1:.3f} without ({hard_mirror_1:.3f} against "
          f"{hard_1:.3f} on the harder edits): {'worth' if mirror_1 > recall_1 else 'not worth'} twice the "
          "embedding time")  # fmt: skip
    print(f"model misses: {', '.join(results[('edits', 'model', 'misses')]) or 'none'}; harder edits: "
          f"{', '.join(results[('hard', 'model', 'misses')]) or 'none'}")  # fmt: skip
    for size, _, p95, _ in rows:
        verdict = ("met" if p95 < GOAL_SEARCH_P95_MS else "NOT met") if size == GOAL_SEARCH_SIZE else "no goal"
        print(f"search p95 at {size:,} vectors: {p95:.2f} ms (goal < {GOAL_SEARCH_P95_MS:.0f} ms at "
              f"{GOAL_SEARCH_SIZE:,}: {verdict})")  # fmt: skip
    for problem in problems:
        print(f"FAILED finetune {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
