"""Singer (and Airbyte) taps: the messages they print, and running a tap installed locally.

A tap prints one JSON message a line on stdout (https://hub.meltano.com/singer/spec): SCHEMA,
RECORD and STATE (Airbyte's protocol wraps them differently: ``{"type": "RECORD", "record":
{"stream", "data"}}``). ``drive`` turns a running tap's lines into chunks of records as they come
(memory stays flat), checks how the tap ended, and only then hands back the last STATE, so a
failed run never moves the bookmark. ``LocalTap`` runs a tap installed from PyPI into its own
virtual environment (taps pin conflicting ``singer-sdk`` versions: one environment each, as
Meltano does) under ``DATA_DIR/taps/<package>-<version>``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from tasks.sources.base import SourceError

MAX_LINE = 64 << 20  # a single message longer than this is a broken tap, not a record
MAX_CATALOG = 64 << 20
STDERR_TAIL = 1_000


def tap_setting(name: str, default: Any = None) -> Any:
    """A tap setting (``SLUICE_TAP_TIME_LIMIT``, ``SLUICE_DOCKER_URL``…)."""
    from sluice.settings import get_settings

    value = getattr(get_settings(), name)
    return default if value is None else value


def time_limit() -> float:
    return float(tap_setting("TAP_TIME_LIMIT", 3600.0))


def snippet(text: str | bytes, size: int = 80) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= size else text[:size] + "…"


def tail(text: str | bytes, size: int = STDERR_TAIL) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= size else "…" + text[-size:]


# --- messages ---------------------------------------------------------------------------------------------------


class MessageParser:
    """Reads a tap's messages one line at a time.

    ``protocol`` is "singer" or "airbyte". ``streams``: how many streams the run was asked for
    (from the catalog), when known. A record carries its stream's name under ``_stream`` when the
    run has several streams: known up front from the catalog, else from the moment a second
    stream appears (a tap run without a catalog that turns out to have one stream adds nothing).
    """

    def __init__(self, protocol: str = "singer", streams: int | None = None):
        self.protocol = protocol
        self.several = streams is not None and streams > 1
        self.seen: list[str] = []
        self.schemas: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, list[str]] = {}  # each stream's key_properties: they make the record's objectID
        self.state: Any = None  # the last STATE's value (Singer) / the latest state message per stream (Airbyte)
        self._airbyte_states: dict[str, Any] = {}
        self.catalog: dict[str, Any] | None = None  # Airbyte's CATALOG message
        self.errors: list[str] = []  # Airbyte TRACE errors, for the failure's reason

    def _stream(self, name: Any, number: int, line: bytes) -> str:
        if not isinstance(name, str) or not name:
            raise SourceError(f"the tap's output line {number} names no stream: {snippet(line)!r}")
        if name not in self.seen:
            self.seen.append(name)
            if len(self.seen) > 1:
                self.several = True
        return name

    def feed(self, number: int, line: bytes | str) -> dict[str, Any] | None:
        """The record on this line (or None for other messages); SourceError for a broken line."""
        if not line.strip():
            return None
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise SourceError(f"the tap's output line {number} is not a {self.protocol.title()} message: "
                              f"{snippet(line)!r}")  # fmt: skip
        kind = message["type"]
        if self.protocol == "airbyte":
            return self._airbyte(kind, message, number, line)
        if kind == "RECORD":
            record = message.get("record")
            if not isinstance(record, dict):
                raise SourceError(f"the tap's output line {number} is a RECORD without a record object: "
                                  f"{snippet(line)!r}")  # fmt: skip
            stream = self._stream(message.get("stream"), number, line)
            record = self._keyed(record, stream)
            return {**record, "_stream": stream} if self.several else record
        if kind == "SCHEMA":
            stream = self._stream(message.get("stream"), number, line)
            self.schemas[stream] = message.get("schema") or {}
            keys = message.get("key_properties")
            self.keys[stream] = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
        elif kind == "STATE":
            if "value" not in message:
                raise SourceError(f"the tap's output line {number} is a STATE without a value: {snippet(line)!r}")
            self.state = message["value"]
        return None  # ACTIVATE_VERSION, BATCH and future types carry no rows

    def _keyed(self, record: dict[str, Any], stream: str) -> dict[str, Any]:
        """The record with an ``objectID``: its stream's key properties joined by "-" (unless it has
        one, or lacks a key value). Never prefixed by the stream, so ids stay the same run to run."""
        keys = self.keys.get(stream)
        if not keys or "objectID" in record or any(record.get(k) is None for k in keys):
            return record
        return {**record, "objectID": "-".join(str(record[k]) for k in keys)}

    def _airbyte(self, kind: str, message: dict[str, Any], number: int, line: bytes | str) -> dict[str, Any] | None:
        body = message.get(kind.lower())
        if kind == "RECORD":
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                raise SourceError(f"the tap's output line {number} is a RECORD without data: {snippet(line)!r}")
            stream = self._stream(body.get("stream"), number, line)
            return {**body["data"], "_stream": stream} if self.several else body["data"]
        if kind == "STATE" and isinstance(body, dict):
            if body.get("type") == "STREAM":
                descriptor = (body.get("stream") or {}).get("stream_descriptor") or {}
                key = f"{descriptor.get('namespace') or ''}.{descriptor.get('name') or ''}"
            else:  # GLOBAL or LEGACY: one state for the whole source
                key = "*"
            self._airbyte_states[key] = body
            self.state = list(self._airbyte_states.values())
        elif kind == "CATALOG" and isinstance(body, dict):
            self.catalog = body
        elif kind == "TRACE" and isinstance(body, dict) and body.get("type") == "ERROR":
            error = body.get("error") or {}
            self.errors.append(str(error.get("message") or error.get("internal_message") or "an error"))
        return None


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a stream of byte chunks (a container's output), without their line ends."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        if b"\n" not in chunk:
            if len(rest) > MAX_LINE:
                raise SourceError(f"the tap printed a line longer than {MAX_LINE >> 20} MiB")
            continue
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


class TapRun(Protocol):
    """A started tap: its stdout's lines, then how it ended."""

    def lines(self) -> Iterator[bytes]: ...

    def finish(self) -> None:
        """After the lines: raise SourceError if the tap timed out or exited non-zero."""

    def close(self) -> None:
        """Always: stop the tap if still running and clean up after it (idempotent)."""


def drive(run: TapRun, parser: MessageParser, chunk_size: int, done: Callable[[MessageParser], None]
          ) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    """The run's records in chunks as they come; ``done(parser)`` once the tap exited cleanly."""
    try:
        chunk: list[dict[str, Any]] = []
        for number, line in enumerate(run.lines(), start=1):
            record = parser.feed(number, line)
            if record is not None:
                chunk.append(record)
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        run.finish()
        if parser.errors:
            raise SourceError(f"the tap reported an error: {parser.errors[-1]}")
        if chunk:
            yield chunk
        done(parser)
    finally:
        run.close()


def read_all(run: TapRun) -> bytes:
    """The whole stdout of a short run (a discover), checked."""
    try:
        out, size = [], 0
        for line in run.lines():
            size += len(line) + 1
            if size > MAX_CATALOG:
                raise SourceError(f"the tap's catalog is larger than {MAX_CATALOG >> 20} MiB")
            out.append(line)
        run.finish()
        return b"\n".join(out)
    finally:
        run.close()


def singer_streams(output: bytes) -> list[dict[str, Any]]:
    """The streams of a Singer ``--discover`` output (the catalog, possibly pretty-printed)."""
    try:
        catalog = json.loads(output)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"the tap's discover output is not a JSON catalog: {snippet(output)!r}") from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise SourceError(f"the tap's discover output has no streams list: {snippet(output)!r}")
    return catalog["streams"]


def select(streams: list[dict[str, Any]], names: list[str] | None) -> dict[str, Any]:
    """A Singer catalog with ``names`` (every stream when None) marked selected."""
    known = {stream.get("tap_stream_id") or stream.get("stream") for stream in streams}
    if names is not None and (missing := [name for name in names if name not in known]):
        raise SourceError(f"the tap has no stream {missing[0]!r} (it has {', '.join(sorted(map(str, known)))})")
    chosen = []
    for stream in streams:
        stream = json.loads(json.dumps(stream))
        name = stream.get("tap_stream_id") or stream.get("stream")
        if names is not None and name not in names:
            continue
        stream["selected"] = True
        metadata = stream.setdefault("metadata", [])
        for entry in metadata:
            if entry.get("breadcrumb") == []:
                entry.setdefault("metadata", {})["selected"] = True
                break
        else:
            metadata.append({"breadcrumb": [], "metadata": {"selected": True}})
        chosen.append(stream)
    return {"streams": chosen}


# --- local taps -------------------------------------------------------------------------------------------------

_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


class ProcessRun:
    """A tap run as a local process: stdout read line by line, stderr to a temporary file, killed
    (its whole process group) at the time limit."""

    def __init__(self, command: list[str], workdir: Path, limit: float):
        self.limit, self.workdir = limit, workdir
        self.timed_out = False
        self._stderr = open(workdir / "stderr.log", "w+b")  # noqa: SIM115 - closed in close()
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr,
                                            stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True)  # fmt: skip
        except OSError as exc:
            self._stderr.close()
            raise SourceError(f"cannot start the tap {command[0]}: {exc.strerror or exc}") from None
        self._timer = threading.Timer(limit, self._kill, kwargs={"timeout": True})
        self._timer.daemon = True
        self._timer.start()

    def _kill(self, timeout: bool = False) -> None:
        if self.process.poll() is None:
            self.timed_out = self.timed_out or timeout
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def lines(self) -> Iterator[bytes]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if len(line) > MAX_LINE:
                raise SourceError(f"the tap printed a line longer than {MAX_LINE >> 20} MiB")
            yield line.rstrip(b"\r\n")

    def finish(self) -> None:
        code = self.process.wait()
        if self.timed_out:
            raise SourceError(f"the tap timed out after {self.limit:g} s")
        if code != 0:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 4 * STDERR_TAIL))
            raise SourceError(f"the tap exited with code {code}: {tail(self._stderr.read()) or '(no stderr)'}")

    def close(self) -> None:
        self._timer.cancel()
        self._kill()
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self._stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalTap:
    """A Singer tap installed from PyPI into ``TAPS_DIR/<package>-<version>`` (once), run as a
    process. ``version`` "latest" installs the newest release the first time and keeps it."""

    def __init__(self, package: str, version: str, executable: str | None = None):
        if not _PACKAGE.match(package):
            raise SourceError(f"{package!r} is not a PyPI package name")
        if not _VERSION.match(version):
            raise SourceError(f"{version!r} is not a package version")
        self.package, self.version = package, version
        self.executable = executable or package
        if "/" in self.executable or not _PACKAGE.match(self.executable):
            raise SourceError(f"{self.executable!r} is not a command name")
        from sluice.settings import get_settings

        base = tap_setting("TAPS_DIR", None) or Path(get_settings().DATA_DIR) / "taps"
        self.home = Path(base) / f"{package.lower()}-{version}"

    @property
    def command(self) -> Path:
        return self.home / "bin" / self.executable

    def install(self) -> Path:
        """The tap's command, installing the tap first if needed (one installer at a time)."""
        stamp = self.home / ".installed"
        if stamp.exists():
            return self._checked()
        self.home.parent.mkdir(parents=True, exist_ok=True)
        with open(self.home.parent / f".{self.home.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not stamp.exists():
                shutil.rmtree(self.home, ignore_errors=True)
                requirement = self.package if self.version == "latest" else f"{self.package}=={self.version}"
                self._run([sys.executable, "-m", "venv", str(self.home)], "create a virtual environment for")
                self._run([str(self.home / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", requirement], "install")  # fmt: skip
                stamp.write_text(requirement + "\n")
        return self._checked()

    def _checked(self) -> Path:
        if not self.command.exists():
            raise SourceError(f"the package {self.package} has no command {self.executable!r}")
        return self.command

    def _run(self, command: list[str], what: str) -> None:
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=float(tap_setting("TAP_INSTALL_TIME_LIMIT", 900.0))
            )
        except subprocess.TimeoutExpired:
            raise SourceError(f"could not {what} {self.package} {self.version}: timed out") from None
        if done.returncode != 0:
            shutil.rmtree(self.home, ignore_errors=True)
            raise SourceError(f"could not {what} {self.package} {self.version}: {tail(done.stderr, 500)}")

    def start(self, args: Callable[[str], list[str]], files: dict[str, str], limit: float) -> ProcessRun:
        """Run the tap with ``args(directory)``, ``files`` written into that (private) directory."""
        command = self.install()
        workdir = Path(tempfile.mkdtemp(prefix="sluice-tap-"))
        for name, content in files.items():
            path = workdir / name
            path.write_text(content)
            path.chmod(0o400)
        return ProcessRun([str(command), *args(str(workdir))], workdir, limit)
