"""``python -m benchmarks.documents [--seconds 60] [--rate 1000] [--clients 64] [--keep]``

Runs the baseline (the same batches written in-process to a fresh embedded engine, in a process
of its own) while nothing else runs, then starts ``sluice up`` on embedded stores in a temporary
directory, creates a tenant, an index and a key with the ``sluice`` CLI, sends warm-up batches one
at a time (each waited for), then the open-loop load, polls statuses until every document is
indexed, stops ``sluice up`` with SIGTERM and prints the environment, a table, the backlog, the
goals (PASS/FAIL) and where the CPU went. Exits 1 when a measurement fails (a POST refused, a
document not indexed, ``sluice up`` or the baseline dying); missing a goal is not a failure.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TENANT, INDEX_ID = "bench", "main"
GOAL_POST_P95 = 0.100  # seconds: POST of a 100-document batch, p95
GOAL_INDEXED_P95 = 3.0  # seconds: POST answered -> indexed, p95
GOAL_RATE, GOAL_SECONDS = 1000.0, 60.0  # the load the goals are stated at
FLAT_GROWTH_SECONDS = 1.0  # the backlog is flat when its trend adds < 1 s of offered load over the second half
WARMUP_SEED_OFFSET = 1  # warm-up documents come from another seed: never the measured ids


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- command line ---------------------------------------------------------------------------------


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.documents",
        description="Ingestion API latency and throughput under an open-loop load, against a raw engine write.",
    )
    parser.add_argument("--seconds", type=_positive(float), default=60.0, help="length of the load (default: 60)")
    parser.add_argument(
        "--rate", type=_positive(float), default=1000.0, help="documents a second offered (default: 1000)"
    )
    parser.add_argument("--batch", type=_positive(int), default=100, help="documents per POST (default: 100)")
    parser.add_argument(
        "--clients",
        type=_positive(int),
        default=64,
        help="most POSTs in flight at once, one connection each; opened only when needed (default: 64)",
    )
    parser.add_argument("--poll-hz", type=_positive(float), default=10.0, help="status polls a second (default: 10)")
    parser.add_argument("--warmup-batches", type=int, default=10, help="batches sent one at a time first (default: 10)")
    parser.add_argument(
        "--drain-timeout",
        type=_positive(float),
        default=None,
        help="seconds to wait for the backlog after the last POST (default: max(60, --seconds))",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    args = parser.parse_args(argv)  # fmt: skip
    if args.batch > 1000:
        parser.error("--batch: the API takes at most 1000 documents per batch")
    args.batches = max(1, round(args.seconds * args.rate / args.batch))
    args.interval = args.batch / args.rate
    args.drain_timeout = args.drain_timeout or max(60.0, args.seconds)
    return args


# --- processes ------------------------------------------------------------------------------------


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


def sluice_cli(data_dir: Path, *args: str) -> str:
    command = [sys.executable, "-m", "sluice.cli", *args, "--data-dir", str(data_dir)]
    proc = subprocess.run(command, env=clean_env(), cwd=data_dir, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"sluice {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


class SluiceUp:
    """``sluice up`` on free ports, embedded stores in ``data_dir``; stopped with SIGTERM."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.prefect_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.log_path = data_dir / "sluice-up.log"
        self.process: subprocess.Popen | None = None
        self.tree: dict[int, str] = {}  # every process seen under it, pid -> label
        self.stop_seconds: float | None = None
        self.exit_code: int | None = None
        self.left_running: list[str] = []

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        command = [sys.executable, "-m", "sluice.cli", "up", "--data-dir", str(self.data_dir),
                   "--api-port", str(self.api_port), "--prefect-port", str(self.prefect_port)]  # fmt: skip
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=clean_env(), cwd=self.data_dir, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sluice up exited ({self.process.returncode}); see {self.logs()}")
            try:
                if httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"sluice up did not answer within {timeout:.0f} s; see {self.logs()}")

    def logs(self) -> str:
        tails = []
        for path in [self.log_path, *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                tail = path.read_text(errors="replace").strip().splitlines()[-12:]
                tails.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(tails)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu(self) -> dict[int, tuple[str, float]]:
        """CPU seconds of every live process under ``sluice up`` (itself included), by pid."""
        if self.process is None:
            return {}
        found = process_tree(self.process.pid)
        for pid, (label, _) in found.items():
            self.tree.setdefault(pid, label)
        return found

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        self.cpu_tree_final = process_tree(proc.pid)
        for pid, (label, _) in self.cpu_tree_final.items():
            self.tree.setdefault(pid, label)
        started = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.stop_seconds, self.exit_code = time.monotonic() - started, proc.returncode
        time.sleep(0.5)
        for pid, label in self.tree.items():
            if pid != proc.pid and _alive(pid):
                self.left_running.append(f"{label} (pid {pid})")
                try:
                    os.kill(pid, signal.SIGKILL)  # ours: started under the sluice up we started
                except OSError:
                    pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


LABELS = (
    ("sluice.cli up", "sluice up"),
    ("prefect server", "prefect-server"),
    ("-m deployments", "runner"),
    ("api.main:app", "api"),
    ("prefect.engine", "processor (flow run)"),
    ("flow_run", "processor (flow run)"),
)


def _label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    for needle, label in LABELS:
        if needle in text:
            return label
    return text[:60] or "?"


def process_tree(root: int) -> dict[int, tuple[str, float]]:
    parents: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
                cpu[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            found[pid] = (_label(pid), cpu[pid])
        todo.extend(parents.get(pid, []))
    return found


def machine_busy() -> float:
    """CPU seconds every CPU of the machine has spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


# --- the baseline ---------------------------------------------------------------------------------


def run_baseline(args: argparse.Namespace, workdir: Path, seed: int) -> dict[str, Any]:
    rundir = workdir / "baseline"
    rundir.mkdir()
    spec = {"search_path": str(rundir / "search.sqlite3"), "documents": args.batches * args.batch,
            "batch": args.batch, "seed": seed, "result": str(rundir / "result.json")}  # fmt: skip
    log_path = rundir / "baseline.log"
    command = [sys.executable, "-m", "benchmarks.documents.baseline", json.dumps(spec)]
    with log_path.open("wb") as out:
        try:
            code = subprocess.run(command, env=clean_env(), cwd=rundir, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=600 + spec["documents"] / 50).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    result_path = Path(spec["result"])
    if code != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return {"error": ("timed out" if code is None else f"exit code {code}") + ":\n    " + "\n    ".join(tail)}
    result = json.loads(result_path.read_text())
    if result["documents"] != spec["documents"]:
        result["error"] = f"the baseline index holds {result['documents']} documents, expected {spec['documents']}"
    for leftover in rundir.glob("search.sqlite3*"):
        leftover.unlink()
    return result


# --- statistics -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len(points) < 3:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


@dataclass
class Phase:
    """One phase's raw results: the warm-up or the load."""

    name: str
    tracker: Any
    start: float = 0.0
    end_sending: float = 0.0
    end: float = 0.0
    length: float = 0.0  # the schedule's length: batches x interval
    drained: float | None = None  # every acknowledged document seen indexed
    peak_in_flight: int = 0
    db_seen: dict[str, float] = field(default_factory=dict)  # the cross-check: indexed in the app database
    db_cycles: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def load_end(self) -> float:
        """The end of the load: the schedule's, or the last POST answer's if the sends fell behind."""
        return max(self.start + self.length, self.end_sending)


# --- the phases -----------------------------------------------------------------------------------


def warm_up(api: str, key: str, args: argparse.Namespace, seed: int) -> Phase:
    """Batches sent one at a time, each waited for until indexed: the unloaded floor. The first
    also waits for the processor flow run to start."""
    from benchmarks.documents.data import batch_body, documents
    from benchmarks.documents.load import Poller, Senders, Tracker, wait_until_resolved

    tracker = Tracker()
    phase = Phase("warm-up", tracker)
    docs = list(documents(max(1, args.warmup_batches) * args.batch, seed=seed + WARMUP_SEED_OFFSET))
    poller = Poller(api, key, TENANT, tracker, args.poll_hz)
    senders = Senders(api, key, TENANT, tracker, 1, args.batch)
    poller.start()
    phase.start = time.monotonic()
    try:
        for i in range(0, len(docs), args.batch):
            senders.run_schedule([batch_body(docs[i : i + args.batch])], 0, time.monotonic())
            tracker.posts[-1].batch = i // args.batch
            timeout = 180 if i == 0 else args.drain_timeout  # the first one waits for the processor to start
            if not wait_until_resolved(tracker, timeout):
                phase.errors.append(f"warm-up batch {i // args.batch} not indexed within {timeout:.0f} s")
                break
    finally:
        phase.end = phase.end_sending = time.monotonic()
        poller.stop()
        senders.close()
    phase.errors += [f"warm-up POST {p.batch}: {p.error}" for p in tracker.posts if p.error]
    phase.errors += [f"warm-up document {d}: {s}" for d, s in tracker.failed.items()]
    return phase


def load(api: str, key: str, args: argparse.Namespace, seed: int, up: SluiceUp) -> tuple[Phase, dict[str, Any]]:
    from benchmarks.documents.data import batch_body, documents
    from benchmarks.documents.load import DbObserver, Poller, Senders, Tracker, wait_until_resolved

    docs = list(documents(args.batches * args.batch, seed=seed))
    observer = DbObserver(str(up.data_dir / "app.sqlite3"), {d.document_id for d in docs}, args.poll_hz)
    bodies = [batch_body(docs[i : i + args.batch]) for i in range(0, len(docs), args.batch)]
    del docs
    tracker = Tracker()
    phase = Phase("load", tracker, length=args.batches * args.interval)
    poller = Poller(api, key, TENANT, tracker, args.poll_hz)
    senders = Senders(api, key, TENANT, tracker, args.clients, args.batch)
    poller.start()
    observer.start()
    cpu_before, self_before, machine_before = up.cpu(), self_cpu(), machine_busy()
    cpu_from = time.monotonic()
    phase.start = cpu_from + 0.2
    try:
        senders.run_schedule(bodies, args.interval, phase.start)
        phase.end_sending = time.monotonic()
        cpu_after, self_after, machine_after = up.cpu(), self_cpu(), machine_busy()
        log(f"load sent in {phase.end_sending - phase.start:.1f} s; waiting for the backlog "
            f"({len(tracker.pending)} documents)")  # fmt: skip
        if not wait_until_resolved(tracker, args.drain_timeout):
            phase.errors.append(f"{len(tracker.pending)} documents not indexed {args.drain_timeout:.0f} s "
                                "after the last POST")  # fmt: skip
        else:
            phase.drained = time.monotonic()
        time.sleep(3 * args.interval + 2 / args.poll_hz)  # let the database observer see the last ones too
    finally:
        phase.end = time.monotonic()
        phase.peak_in_flight = senders.peak_in_flight
        poller.stop()
        observer.stop()
        senders.close()
    phase.db_seen, phase.db_cycles = observer.seen, observer.cycles
    phase.errors += [f"POST {p.batch}: {p.error}" for p in tracker.posts if p.error]
    phase.errors += [f"document {d}: status {s}" for d, s in list(tracker.failed.items())[:20]]
    phase.errors += [f"poll: {e}" for e in tracker.poll_errors[:5]]
    window = phase.end_sending - cpu_from
    cpu = {"window": window, "self": self_after - self_before, "machine": machine_after - machine_before,
           "processes": {}}  # fmt: skip
    for pid, (label, after) in cpu_after.items():
        before = cpu_before.get(pid, (label, 0.0))[1]
        cpu["processes"][label] = cpu["processes"].get(label, 0.0) + after - before
    return phase, cpu


# --- report ---------------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> list[str]:
    from importlib.metadata import version

    from sluice.settings import Settings

    defaults = Settings.model_fields
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    packages = ", ".join(f"{p} {version(p)}" for p in ("prefect", "fastapi", "uvicorn", "SQLAlchemy", "httpx"))
    from benchmarks.documents.load import POLL_IDS

    return [
        f"CPU: {os.cpu_count()} logical CPUs ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.executable}), SQLite {sqlite3.sqlite_version}",
        f"packages: {packages}",
        f"load: {args.rate:,.0f} documents/s offered as {args.batch}-document batches every "
        f"{args.interval * 1000:.0f} ms for {args.batches * args.interval:.0f} s ({args.batches * args.batch:,} "
        f"documents), open loop (up to {args.clients} POSTs in flight); statuses polled at {args.poll_hz:g} Hz, "
        f"up to {POLL_IDS} ids per GET",
        f"Sluice settings (defaults): processor claims up to {defaults['PROCESS_BATCH_SIZE'].default} documents "
        f"per pass, looks for work every {defaults['PROCESS_POLL_INTERVAL'].default} s",
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*row) for row in rows)]


def _dist(name: str, values: list[float]) -> tuple[str, ...]:
    return (name, _ms(percentile(values, 50)), _ms(percentile(values, 95)), _ms(max(values) if values else None),
            f"{len(values):,}")  # fmt: skip


@dataclass
class Figures:
    post_p95: float | None = None
    indexed_p95: float | None = None
    sluice_rate: float | None = None
    baseline_rate: float | None = None
    flat: bool | None = None


def report(args: argparse.Namespace, warm: Phase | None, phase: Phase | None, cpu: dict[str, Any] | None,
           baseline: dict[str, Any], up: SluiceUp) -> tuple[list[str], Figures]:  # fmt: skip
    out: list[str] = []
    fig = Figures()
    rows = []
    if warm is not None and warm.tracker.posts:
        wt = warm.tracker
        first = wt.posts[0]
        rows.append(_dist("POST, one batch at a time (warm-up, first excluded)", [p.seconds for p in wt.posts[1:]]))
        later = [wt.seen[i] - at for i, at in wt.acknowledged.items() if at != first.received and i in wt.seen]
        rows.append(_dist("POST -> indexed, one batch at a time (first excluded)", later))
    if phase is not None:
        t = phase.tracker
        ok = [p for p in t.posts if p.status == 200]
        post_seconds = [p.seconds for p in ok]
        fig.post_p95 = percentile(post_seconds, 95)
        latencies = t.latencies()
        fig.indexed_p95 = percentile(latencies, 95)
        rows += [
            _dist("POST under load", post_seconds),
            _dist("POST send lag behind schedule", [max(0.0, p.sent - p.scheduled) for p in t.posts]),
            _dist("POST -> indexed under load (first seen)", latencies),
            _dist("  lower bound (last seen unresolved)", t.lower_latencies()),
            _dist("  error bar of polling (per document)", t.error_bars()),
            _dist(
                "POST -> indexed, read in the app database",
                [at - t.acknowledged[i] for i, at in phase.db_seen.items() if i in t.acknowledged],
            ),
            _dist("app database read (cross-check cycle)", phase.db_cycles),
            _dist("poll cycle duration (cycles with a GET)", [c[1] for c in t.poll_cycles if c[2]]),
            _dist("poll GET duration", [r[1] for r in t.poll_requests]),
        ]
    if "batch_seconds" in baseline:
        rows.append(_dist(f"baseline: bulk + refresh of {args.batch} documents", baseline["batch_seconds"]))
    out += _table(("latency", "p50", "p95", "max", "n"), rows)
    out.append("")

    trows = [("offered", _rate(args.rate))]
    if phase is not None:
        t = phase.tracker
        finish = phase.load_end
        begin = (phase.start + finish) / 2  # the second half of the load
        api_rate = per_second(t.seen.values(), begin, finish)
        db_rate = per_second(phase.db_seen.values(), begin, finish) if phase.db_seen else None
        fig.sluice_rate = db_rate if db_rate is not None else api_rate
        last = max(t.seen.values(), default=None)
        overall = len(t.seen) / (last - phase.start) if last and last > phase.start else None
        trows += [
            ("acknowledged (POST 200), second half of the load", _rate(per_second(t.acknowledged.values(), begin,
                                                                                  finish))),
            ("indexed, read in the app database, second half", _rate(db_rate)),
            ("indexed, seen through the API, second half", _rate(api_rate)),
            ("indexed, seen through the API, first POST to last", _rate(overall)),
        ]  # fmt: skip
    if "seconds" in baseline and baseline["seconds"]:
        fig.baseline_rate = len(baseline["batch_seconds"]) * args.batch / baseline["seconds"]
        trows.append(("baseline, in-process, back to back", _rate(fig.baseline_rate)))
    out += _table(("throughput", "docs/s"), trows)
    if fig.sluice_rate is not None and fig.baseline_rate:
        out.append(f"ratio = Sluice indexed docs/s (app database, second half) / baseline docs/s = "
                   f"{fig.sluice_rate / fig.baseline_rate:.3g} "
                   f"(offered {args.rate:,.0f} docs/s, Sluice cannot exceed {args.rate / fig.baseline_rate:.3g} here; "
                   "the baseline runs back to back, as fast as the engine goes)")  # fmt: skip
    if phase is not None and "batch_seconds" in baseline:
        lat, base = phase.tracker.latencies(), baseline["batch_seconds"]
        p50, b50, p95, b95 = percentile(lat, 50), percentile(base, 50), percentile(lat, 95), percentile(base, 95)
        if p50 and b50 and p95 and b95:
            out.append(f"latency ratio = Sluice POST -> indexed / baseline batch write: p50 {p50 / b50:,.0f}x, "
                       f"p95 {p95 / b95:,.0f}x")  # fmt: skip
    out.append("")

    if phase is not None:
        late = sum(1 for p in phase.tracker.posts if p.sent - p.scheduled > args.interval)
        sent = len(phase.tracker.posts)
        out.append(f"POSTs in flight at once: peak {phase.peak_in_flight} (at most {args.clients}); {late} of {sent} "
                   f"sent more than one interval ({args.interval * 1000:.0f} ms) late")  # fmt: skip
        out += backlog_lines(args, phase, fig)
        t = phase.tracker
        requests = len(t.poll_requests)
        window = phase.end - phase.start
        busy = sum(r[1] for r in t.poll_requests)
        out.append(f"polling: {requests:,} GETs in {len(t.poll_cycles):,} cycles ({requests / window:.1f} GETs/s, "
                   f"{busy / window:.0%} of the time a GET was in flight); {t.out_of_order} documents found indexed "
                   "behind an unresolved one")  # fmt: skip
    if cpu is not None:
        window = cpu["window"]
        parts = [f"{label} {seconds / window:.2f}" for label, seconds in
                 sorted(cpu["processes"].items(), key=lambda kv: -kv[1])]  # fmt: skip
        total = (sum(cpu["processes"].values()) + cpu["self"]) / window
        out.append(f"CPU while sending, in cores (of {os.cpu_count()}): {', '.join(parts)}, "
                   f"load generator {cpu['self'] / window:.2f}; total {total:.2f}")  # fmt: skip
        machine = cpu["machine"] / window
        out.append(f"whole machine busy {machine:.2f} cores while sending: {max(0.0, machine - total):.2f} of them "
                   "outside this benchmark (other work: trust a run only when this is near 0)")  # fmt: skip
    if up.stop_seconds is not None:
        line = f"sluice up stopped on SIGTERM in {up.stop_seconds:.1f} s (exit code {up.exit_code})"
        if up.left_running:
            line += f"; left running (killed): {', '.join(up.left_running)}"
        out.append(line)
    out.append("")
    out += goals(args, fig, phase)
    return out, fig


def per_second(times: Any, begin: float, end: float) -> float | None:
    return sum(1 for at in times if begin <= at < end) / (end - begin) if end > begin else None


def backlog_lines(args: argparse.Namespace, phase: Phase, fig: Figures) -> list[str]:
    """The backlog (acknowledged, not yet indexed) over time, from every document's two times; indexed
    as read in the app database, which keeps pace when the API's threads are all busy."""
    t = phase.tracker
    source = "read in the app database" if phase.db_seen else "seen through the API"
    acked = sorted(t.acknowledged.values())
    done = sorted((phase.db_seen or t.seen).values())

    def backlog(at: float) -> int:
        return bisect.bisect_right(acked, at) - bisect.bisect_right(done, at)

    until = phase.drained or phase.end
    grid = [phase.start + i * 0.1 for i in range(int((until - phase.start) / 0.1) + 2)]
    step = 10.0 if args.seconds >= 20 else max(1.0, args.seconds / 4)
    marks = [phase.start + i * step for i in range(int((until - phase.start) / step) + 1)]
    shown = "; ".join(f"{m - phase.start:.0f} s: {backlog(m):,}" for m in marks)
    finish = phase.load_end
    halftime = (finish - phase.start) / 2
    peak = max((backlog(at) for at in grid if at <= finish), default=0)
    drained = "not drained" if phase.drained is None else f"drained {phase.drained - phase.end_sending:.1f} s"
    lines = [f"backlog (acknowledged, not yet {source}), every {step:g} s: {shown}",
             f"peak backlog during the load {peak:,} documents; {drained} after the last POST answer"]  # fmt: skip
    trend = slope([(at, backlog(at)) for at in grid if finish - halftime <= at <= finish])
    if trend is None:
        lines.append("backlog trend: too short a load")
    else:
        growth = trend * halftime
        fig.flat = growth < FLAT_GROWTH_SECONDS * args.rate
        verdict = "flat" if fig.flat else "NOT flat: Sluice falls behind the offered load"
        lines.append(f"backlog trend over the second half of the load: {trend:+,.0f} documents/s, {growth:+,.0f} "
                     f"documents in {halftime:.0f} s: {verdict} (flat: it grows by less than "
                     f"{FLAT_GROWTH_SECONDS:g} s of offered load, {FLAT_GROWTH_SECONDS * args.rate:,.0f})")  # fmt: skip
    return lines


def goals(args: argparse.Namespace, fig: Figures, phase: Phase | None) -> list[str]:
    at_goal_load = args.rate >= GOAL_RATE and args.seconds >= GOAL_SECONDS
    note = "" if at_goal_load else (f" [this run: {args.rate:,.0f} docs/s for {args.seconds:g} s, not the goals' "
                                    f"{GOAL_RATE:,.0f} docs/s for {GOAL_SECONDS:.0f} s]")  # fmt: skip
    complete = phase is not None and not phase.errors
    failed = "" if complete else ", and the run had failures (FAILED below)"
    lines = ["goals:"]
    p = fig.post_p95
    ok = p is not None and p < GOAL_POST_P95 and complete
    lines.append(f"  POST p95 < {GOAL_POST_P95 * 1000:.0f} ms at {GOAL_RATE:,.0f} docs/s: "
                 f"{'PASS' if ok else 'FAIL'} (p95 {_ms(p)}{failed}){note}")  # fmt: skip
    p = fig.indexed_p95
    ok = p is not None and p < GOAL_INDEXED_P95 and complete
    lines.append(f"  POST -> indexed p95 < {GOAL_INDEXED_P95:.0f} s at {GOAL_RATE:,.0f} docs/s for "
                 f"{GOAL_SECONDS:.0f} s: {'PASS' if ok else 'FAIL'} (p95 {_ms(p)}"
                 f"{failed}){note}")  # fmt: skip
    return lines


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.documents.data import SEED

    began = time.monotonic()
    for line in environment(args):
        print(line)
    print(flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-documents-"))
    log(f"work directory: {workdir}")
    failures: list[str] = []
    up = SluiceUp(workdir / "data")
    warm = phase = cpu = None
    baseline: dict[str, Any] = {}
    try:
        started = time.monotonic()
        baseline = run_baseline(args, workdir, SEED)
        if "error" in baseline:
            failures.append(f"baseline: {baseline['error']}")
        else:
            log(f"baseline: {args.batches * args.batch:,} documents in {baseline['seconds']:.1f} s "
                f"({time.monotonic() - started:.1f} s with start-up)")  # fmt: skip
        up.data_dir.mkdir()
        sluice_cli(up.data_dir, "tenants", "create", TENANT)
        sluice_cli(up.data_dir, "tenants", "add-index", TENANT, INDEX_ID)
        key = sluice_cli(up.data_dir, "keys", "create", TENANT, "--role", "ingestion-manager").strip().splitlines()[-1]
        started = time.monotonic()
        up.start()
        log(f"sluice up answering on {up.api} after {time.monotonic() - started:.1f} s")
        if args.warmup_batches > 0:
            started = time.monotonic()
            warm = warm_up(up.api, key, args, SEED)
            failures += warm.errors
            log(f"warm-up: {len(warm.tracker.posts)} batches one at a time in {time.monotonic() - started:.1f} s")
        if not failures:
            if not up.alive():
                raise RuntimeError(f"sluice up died; see {up.logs()}")
            phase, cpu = load(up.api, key, args, SEED, up)
            failures += phase.errors
            if not up.alive():
                failures.append(f"sluice up died during the load:\n{up.logs()}")
    except Exception as exc:  # report what we have, then fail
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        up.stop()
        if up.exit_code not in (0, None):
            failures.append(f"sluice up exited with code {up.exit_code} on SIGTERM; see {up.log_path}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    lines, _ = report(args, warm, phase, cpu, baseline, up)
    for line in lines:
        print(line)
    for failure in failures[:30]:
        print(f"FAILED {failure}")
    print(f"total run time {time.monotonic() - began:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
