"""``python -m benchmarks.reindex [--sizes 100000,400000] [--engines osmem,embedded] [--quick]``

Builds one app database per size, starts one Prefect server for the whole run, then for each
engine and size measures the Sluice ``reindex`` flow and the raw baseline, each in its own
process (and, for osmem, against a fresh server). Prints the environment, a table and whether
Sluice's peak memory stayed flat between the sizes. Exits 1 when a measurement fails or an
index does not hold every row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchmarks

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SIZES = (100_000, 400_000)
QUICK_SIZES = (5_000, 20_000)
# osmem-server is an in-memory test server: with Sluice's mappings (English analysis, .raw
# sub-fields) it indexes ~250-350 documents a second here (3-5 ms of server CPU each) and holds
# ~55 KB of RSS per document, so 400k documents would take ~25 min per load and ~22 GB of RAM.
# Its default sizes are one and two read pages; --osmem-sizes (or --sizes) overrides them.
OSMEM_DEFAULT_SIZES = (10_000, 20_000)
OSMEM_QUICK_SIZES = (2_000, 8_000)
ENGINES = ("osmem", "embedded")
KINDS = ("sluice", "baseline")
FLAT_GROWTH = 0.25  # Sluice's peak memory is "flat" when the largest size needs < 25% more
INDEX_SUFFIX = "bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- command line ---------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be integers separated by commas, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _engines(text: str) -> tuple[str, ...]:
    engines = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise argparse.ArgumentTypeError(f"engines are among {', '.join(ENGINES)}; got {text!r}")
    return engines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reindex",
        description="Reindex throughput and peak memory: the Sluice flow against a raw bulk load.",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help=f"rows per database, every engine (default: {_show(DEFAULT_SIZES)}; osmem {_show(OSMEM_DEFAULT_SIZES)})",
    )
    parser.add_argument("--osmem-sizes", type=_sizes, default=None, help="rows for osmem only (default: as above)")
    parser.add_argument("--engines", type=_engines, default=ENGINES, help="osmem,embedded (default: both)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: sizes {_show(QUICK_SIZES)} (osmem {_show(OSMEM_QUICK_SIZES)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    args = parser.parse_args(argv)
    default, osmem_default = (QUICK_SIZES, OSMEM_QUICK_SIZES) if args.quick else (DEFAULT_SIZES, OSMEM_DEFAULT_SIZES)
    sizes = args.sizes or default
    args.engine_sizes = {
        engine: (args.osmem_sizes or args.sizes or osmem_default) if engine == "osmem" else sizes
        for engine in args.engines
    }
    return args


def _show(sizes: tuple[int, ...]) -> str:
    return ",".join(map(str, sizes))


# --- child processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This environment without SLUICE_* and PREFECT_* values: every child gets only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class PrefectServer:
    """One ``prefect server start`` for the whole run (SQLite and PREFECT_HOME in the work dir)."""

    def __init__(self, workdir: Path) -> None:
        self.home = workdir / "prefect"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        self.log_path = workdir / "prefect-server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        env = {
            **clean_env(),
            **self.env,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.home / 'prefect.db'}",
            "PREFECT_UI_ENABLED": "false",
        }
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited ({self.process.returncode}); see {self.log_path}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any worker it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` while child processes started inside inherit it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def server_peak_mb(pid: int) -> float | None:
    """Peak RSS (VmHWM) of a live process we started, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Measurement:
    engine: str
    rows: int
    kind: str
    seconds: float | None = None
    documents: int | None = None
    peak_mb: float | None = None
    start_mb: float | None = None
    server_peak_mb: float | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.rows / self.seconds if self.seconds else None


def run_child(m: Measurement, spec: dict[str, Any], env: dict[str, str], rundir: Path, timeout: float) -> None:
    """Run one measurement process; fills ``m`` from its result (or records why it failed)."""
    result, m.error = benchmarks.run_child("benchmarks.reindex.measure", spec, env, rundir, timeout)
    if result is None:
        return
    m.seconds, m.documents = result["seconds"], result["documents"]
    m.peak_mb, m.start_mb = result["peak_mb"], result["start_mb"]
    if m.documents != m.rows:
        m.error = f"the index holds {m.documents} documents, expected {m.rows}"


def measure(
    engine: str, rows: int, kind: str, database_url: str, workdir: Path, prefect: PrefectServer | None
) -> Measurement:
    from osmem_server import OsmemServer

    m = Measurement(engine, rows, kind)
    rundir = workdir / f"{engine}-{rows}-{kind}"
    rundir.mkdir(parents=True)
    env = clean_env()
    env["PREFECT_HOME"] = str(rundir / "prefect-home")
    spec: dict[str, Any] = {
        "kind": kind,
        "engine": engine,
        "rows": rows,
        "index_suffix": INDEX_SUFFIX,
        "database_url": database_url,
        "search_path": str(rundir / "search.sqlite3"),
    }
    if kind == "sluice":
        assert prefect is not None
        env |= prefect.env
        env |= {"SLUICE_DATA_DIR": str(rundir / "data"), "SLUICE_DATABASE_URL": database_url}
    timeout = 300 + rows / 40  # far beyond any rate seen (osmem: ~250 rows/s); a hang must not stall the run
    server = None
    try:
        if engine == "osmem":
            with stderr_to(rundir / "osmem-server.log"):  # the server inherits fd 2 and chats on it
                server = OsmemServer.start(japanese=False)  # fresh per measurement: memory stays honest
            spec["search_url"] = server.url
            if kind == "sluice":
                env |= {"SLUICE_ELASTICSEARCH_URL": server.url, "SLUICE_ELASTICSEARCH_VENDOR_MEDIA_TYPES": "false"}
        run_child(m, spec, env, rundir, timeout)
        if server is not None:
            m.server_peak_mb = server_peak_mb(server.pid)
    finally:
        if server is not None:
            server.close()
    if m.error is None:
        shutil.rmtree(rundir / "data", ignore_errors=True)  # the embedded index: up to GBs
        for leftover in rundir.glob("search.sqlite3*"):
            leftover.unlink()
    return m


# --- report -----------------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> list[str]:
    from importlib.metadata import version

    from benchmarks.reindex.measure import CHUNK_SIZE
    from sluice.settings import Settings

    defaults = Settings.model_fields
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    packages = ", ".join(f"{p} {version(p)}" for p in ("prefect", "elasticsearch", "osmem-server", "SQLAlchemy"))
    sizes = "; ".join(f"{engine} {_show(sizes)}" for engine, sizes in args.engine_sizes.items())
    return [
        f"CPU: {os.cpu_count()} logical CPUs ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.executable}), SQLite {sqlite3.sqlite_version}",
        f"packages: {packages}",
        f"sizes (image rows): {sizes}",
        f"Sluice settings (defaults): read batch {defaults['READ_BATCH_SIZE'].default} rows, bulk chunk "
        f"{defaults['BULK_CHUNK_SIZE'].default} documents; baseline chunk {CHUNK_SIZE} documents",
    ]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _index(results: list[Measurement]) -> dict[tuple[str, int, str], Measurement]:
    return {(m.engine, m.rows, m.kind): m for m in results}


def table(results: list[Measurement], engine_sizes: dict[str, tuple[int, ...]]) -> list[str]:
    by = _index(results)
    header = ("engine", "rows", "Sluice s", "Sluice rows/s", "baseline s", "baseline rows/s",
              "ratio", "Sluice peak MB", "baseline peak MB")  # fmt: skip
    lines = []
    for engine, sizes in engine_sizes.items():
        for rows in sizes:
            s, b = by.get((engine, rows, "sluice")), by.get((engine, rows, "baseline"))
            ratio = s.rate / b.rate if s and b and s.rate and b.rate else None
            lines.append((
                engine, str(rows),
                _num(s and s.seconds, ".1f"), _num(s and s.rate, ",.0f"),
                _num(b and b.seconds, ".1f"), _num(b and b.rate, ",.0f"),
                _num(ratio, ".2f"), _num(s and s.peak_mb, ".0f"), _num(b and b.peak_mb, ".0f"),
            ))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return out + [fmt.format(*row) for row in lines]


def flatness(results: list[Measurement], engine_sizes: dict[str, tuple[int, ...]], page: int) -> list[str]:
    """Per engine: did Sluice's peak RSS stay flat from the smallest to the largest size?"""
    by = _index(results)
    out = []
    for engine, sizes in engine_sizes.items():
        if len(sizes) < 2:
            out.append(f"{engine}: one size only; memory flatness needs two")
            continue
        small, large = by.get((engine, sizes[0], "sluice")), by.get((engine, sizes[-1], "sluice"))
        if not (small and large and small.peak_mb and large.peak_mb):
            out.append(f"{engine}: Sluice peak memory unknown (a measurement failed)")
            continue
        growth = large.peak_mb / small.peak_mb - 1
        verdict = "stayed flat" if growth < FLAT_GROWTH else "did NOT stay flat"
        line = (
            f"{engine}: Sluice peak memory {verdict} from {sizes[0]} to {sizes[-1]} rows: "
            f"{small.peak_mb:.0f} -> {large.peak_mb:.0f} MB ({growth:+.0%}; flat means < +{FLAT_GROWTH:.0%})"
        )
        bs, bl = by.get((engine, sizes[0], "baseline")), by.get((engine, sizes[-1], "baseline"))
        if bs and bl and bs.peak_mb and bl.peak_mb:
            line += f"; baseline {bs.peak_mb:.0f} -> {bl.peak_mb:.0f} MB ({bl.peak_mb / bs.peak_mb - 1:+.0%})"
        if sizes[0] < page:
            line += f" [{sizes[0]} rows is less than one read page of {page}: growth up to one page is expected]"
        out.append(line)
    return out


def notes(results: list[Measurement]) -> list[str]:
    out = []
    osmem = [m for m in results if m.engine == "osmem" and m.server_peak_mb]
    if osmem:
        peaks = ", ".join(f"{m.kind} {m.rows}: {m.server_peak_mb:.0f}" for m in osmem)
        out.append("osmem-server is a separate process (a fresh one per measurement): its memory is not in the "
                   f"peak MB above. Its own peak RSS, MB: {peaks}")  # fmt: skip
    before = ", ".join(f"{m.engine} {m.kind} {m.rows}: {m.start_mb:.0f}" for m in results if m.start_mb)
    if before:
        out.append(f"RSS of each measurement process before its timed load (imports, set-up), MB: {before}")
    return out


# --- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.reindex.data import build_database
    from sluice.settings import Settings

    began = time.monotonic()
    for line in environment(args):
        print(line)
    print(flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    log(f"work directory: {workdir}")
    prefect = PrefectServer(workdir)
    results: list[Measurement] = []
    try:
        databases = {}
        for rows in sorted({rows for sizes in args.engine_sizes.values() for rows in sizes}):
            started = time.monotonic()
            url = f"sqlite:///{workdir / f'app-{rows}.sqlite3'}"
            build_database(url, rows)
            databases[rows] = url
            log(f"app database with {rows} image rows built in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        prefect.start()
        log(f"Prefect server on port {prefect.port} started in {time.monotonic() - started:.1f} s")
        for engine, sizes in args.engine_sizes.items():
            for rows in sizes:
                for kind in KINDS:
                    m = measure(engine, rows, kind, databases[rows], workdir, prefect)
                    results.append(m)
                    if m.error:
                        log(f"{engine:<8} {rows:>7} {kind:<8} FAILED: {m.error}")
                    else:
                        log(f"{engine:<8} {rows:>7} {kind:<8} {m.seconds:7.1f} s {m.rate:>8,.0f} rows/s "
                            f"peak {m.peak_mb:.0f} MB")  # fmt: skip
    finally:
        prefect.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for line in table(results, args.engine_sizes):
        print(line)
    print("ratio = Sluice rows/s / baseline rows/s (1.00: the flow costs nothing over a raw load; 0.50: half as fast)")
    print()
    for line in flatness(results, args.engine_sizes, Settings.model_fields["READ_BATCH_SIZE"].default):
        print(line)
    for line in notes(results):
        print(line)
    failures = [m for m in results if m.error]
    for m in failures:
        print(f"FAILED {m.engine} {m.rows} {m.kind}: {m.error}")
    print(f"total run time {time.monotonic() - began:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
