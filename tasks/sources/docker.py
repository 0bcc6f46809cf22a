"""Docker sources: a Singer (or Airbyte) tap in a container image, or a Singer tap from PyPI run
locally.

``configuration`` is the tap's own configuration (written to ``config.json``), except for one
reserved key, ``sluice``, which Sluice reads and never passes on:

- ``network``: "none" (default: the container has no network) or "bridge".
- ``streams``: the stream IDs to sync; Sluice discovers the catalog and selects them.
- ``catalog``: a whole Singer catalog (or Airbyte configured catalog) to pass as is.
- ``runner``: "docker" (default) or "local": ``image`` is then a PyPI package, ``version`` its
  version, run from its own virtual environment (``SLUICE_LOCAL_TAPS`` must allow it).
- ``executable``: the local tap's command, default the package name.

imageType singer: the image's entrypoint is the tap, run with ``--config /config/config.json
[--state /config/state.json] [--catalog /config/catalog.json]`` (``--discover`` to discover).
airbyte: ``read --config ... --catalog ... [--state ...]`` / ``discover --config ...``, with the
Airbyte messages. custom: the image's own command, no arguments, the files under ``/config`` and
their paths in ``SLUICE_CONFIG``/``SLUICE_STATE``/``SLUICE_CATALOG``, Singer messages on stdout.
The files are mounted read-only; the container is always removed, also on failure or timeout.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sluice.connectors import SourceDocker
from sluice.errors import ConfigurationError
from tasks.sources.base import Source, SourceError, require
from tasks.sources.singer import (
    LocalTap,
    MessageParser,
    TapRun,
    drive,
    iter_lines,
    read_all,
    select,
    singer_streams,
    snippet,
    tail,
    tap_setting,
    time_limit,
)

REGISTRIES = {"dockerhub": "docker.io", "ghcr": "ghcr.io"}
NETWORKS = ("none", "bridge")
MOUNT = "/config"
OPTIONS = {"network", "streams", "catalog", "runner", "executable"}


def docker_client():
    """A client of the Docker Engine API at ``SLUICE_DOCKER_URL`` (default: the SDK's from_env)."""
    import docker
    from docker.errors import DockerException

    url = tap_setting("DOCKER_URL", None)
    try:
        return docker.DockerClient(base_url=url, timeout=120) if url else docker.from_env(timeout=120)
    except DockerException as exc:
        raise SourceError(f"cannot reach the Docker API at {url or 'the default socket'}: {exc}") from None


class ContainerRun:
    """A tap in a container: created, attached (stdout), started; killed at the time limit; always
    removed. The configuration files sit in a temporary directory mounted read-only."""

    def __init__(self, client, image: str, command: list[str] | None, files: dict[str, str], network: str,
                 environment: dict[str, str], limit: float):  # fmt: skip
        from docker.errors import DockerException

        self.client, self.limit, self.timed_out = client, limit, False
        self.container = None
        self.folder = Path(tempfile.mkdtemp(prefix="sluice-docker-"))
        self.folder.chmod(0o755)
        for name, content in files.items():
            (self.folder / name).write_text(content)
            (self.folder / name).chmod(0o444)  # the tap may run as any user; the mount is read-only anyway
        try:
            self.container = client.containers.create(
                image, command, network_mode=network, environment=environment,
                mem_limit=str(tap_setting("TAP_MEMORY_LIMIT", "1g")), pids_limit=1024,
                volumes={str(self.folder): {"bind": MOUNT, "mode": "ro"}}, labels={"sluice.tap": "1"},
            )  # fmt: skip
            self._stream = self.container.attach(stdout=True, stderr=False, stream=True, logs=True)
            self.container.start()
        except DockerException as exc:
            self.close()
            raise SourceError(f"cannot start {image}: {exc}") from None
        self._timer = threading.Timer(limit, self._kill)
        self._timer.daemon = True
        self._timer.start()

    def _kill(self) -> None:
        self.timed_out = True
        try:
            self.container.kill()
        except Exception:  # noqa: BLE001 - it may have just exited
            pass

    def lines(self) -> Iterator[bytes]:
        from docker.errors import DockerException

        try:
            yield from iter_lines(self._stream)
        except DockerException as exc:
            if not self.timed_out:
                raise SourceError(f"lost the tap's output: {exc}") from None

    def finish(self) -> None:
        from docker.errors import DockerException

        try:
            code = self.container.wait(timeout=self.limit + 30)["StatusCode"]
        except Exception as exc:  # noqa: BLE001 - a read timeout or an API error
            if self.timed_out:
                code = -1
            else:
                raise SourceError(f"lost the tap's container: {exc}") from None
        if self.timed_out:
            raise SourceError(f"the tap timed out after {self.limit:g} s")
        if code != 0:
            try:
                stderr = self.container.logs(stdout=False, stderr=True, tail=40)
            except DockerException:
                stderr = b""
            reason = tail(stderr) or "(no stderr)"
            if code == 137:  # SIGKILL, and not our timeout: most likely the memory limit
                reason = f"killed, likely over the memory limit of {tap_setting('TAP_MEMORY_LIMIT', '1g')}; {reason}"
            raise SourceError(f"the tap exited with code {code}: {reason}")

    def close(self) -> None:
        if getattr(self, "_timer", None):
            self._timer.cancel()
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.container = None
        shutil.rmtree(self.folder, ignore_errors=True)


class DockerSource(Source):
    source_type = "docker"
    config_model = SourceDocker

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        configuration = dict(self.config.configuration)
        options = configuration.pop("sluice", None) or {}
        self.options: dict[str, Any] = options if isinstance(options, dict) else {"invalid": options}
        self.tap_config = configuration

    # --- configuration ---

    @property
    def protocol(self) -> str:
        return "airbyte" if self.config.imageType == "airbyte" else "singer"

    @property
    def local(self) -> bool:
        return self.options.get("runner", "docker") == "local"

    @property
    def image(self) -> str:
        name = self.config.image
        if self.config.registry == "dockerhub" and "/" not in name:
            name = f"library/{name}"
        return f"{REGISTRIES[self.config.registry]}/{name}:{self.config.version}"

    def validate_config(self) -> None:
        options = self.options
        require("invalid" not in options, "configuration.sluice", "must be an object")
        require(not (unknown := set(options) - OPTIONS), "configuration.sluice",
                f"unknown option {sorted(unknown)[0] if unknown else ''!r}")  # fmt: skip
        require(options.get("network", "none") in NETWORKS, "configuration.sluice.network",
                f"must be one of {', '.join(NETWORKS)}")  # fmt: skip
        require(options.get("runner", "docker") in ("docker", "local"), "configuration.sluice.runner",
                "must be docker or local")  # fmt: skip
        streams = options.get("streams")
        require(streams is None or (isinstance(streams, list) and streams and all(isinstance(s, str) for s in streams)),
                "configuration.sluice.streams", "must be a non-empty list of stream IDs")  # fmt: skip
        require(options.get("catalog") is None or isinstance(options["catalog"], dict), "configuration.sluice.catalog",
                "must be a catalog object")  # fmt: skip
        require(not (streams and options.get("catalog")), "configuration.sluice", "give streams or catalog, not both")
        require(all(c not in self.config.image for c in " \t\n@") and ":" not in self.config.image,
                "image", "must be a repository name without tag or digest (the tag is version)")  # fmt: skip
        if self.local:
            require(self.config.imageType == "singer", "imageType", "a local tap must be a singer tap")
            require(bool(tap_setting("LOCAL_TAPS", False)), "configuration.sluice.runner",
                    "local taps are disabled on this server (SLUICE_LOCAL_TAPS)")  # fmt: skip
        elif options.get("executable"):
            raise ConfigurationError("configuration.sluice.executable: only for local taps")

    def check_connection(self) -> None:
        if self.local:
            self._local().install()
            return
        self._image(docker_client())

    # --- running ---

    def _local(self) -> LocalTap:
        return LocalTap(self.config.image, self.config.version, self.options.get("executable"))

    def _image(self, client) -> str:
        """The image, pulled from its registry only when absent here."""
        from docker.errors import DockerException, ImageNotFound

        try:
            client.images.get(self.image)
        except ImageNotFound:
            repository, _, tag = self.image.rpartition(":")
            try:
                client.images.pull(repository, tag=tag)
            except DockerException as exc:
                raise SourceError(f"cannot pull {self.image}: {snippet(str(exc), 300)}") from None
        except DockerException as exc:
            raise SourceError(f"cannot reach the Docker API: {snippet(str(exc), 300)}") from None
        return self.image

    def _start(self, mode: str, files: dict[str, str]) -> TapRun:
        """Start the tap: mode "sync" or "discover"; ``files`` besides config.json."""
        files = {"config.json": json.dumps(self.tap_config), **files}
        limit = time_limit()

        def args(folder: str) -> list[str]:
            given = [name.removesuffix(".json") for name in files if name != "config.json"]
            if self.protocol == "airbyte":
                out = ["discover" if mode == "discover" else "read", "--config", f"{folder}/config.json"]
            else:
                out = ["--config", f"{folder}/config.json"] + (["--discover"] if mode == "discover" else [])
            for name in given:
                out += [f"--{name}", f"{folder}/{name}.json"]
            return out

        if self.local:
            return self._local().start(args, files, limit)
        client = docker_client()
        image = self._image(client)
        environment = {f"SLUICE_{name.removesuffix('.json').upper()}": f"{MOUNT}/{name}" for name in files}
        command = None if self.config.imageType == "custom" else args(MOUNT)
        return ContainerRun(client, image, command, files, self.options.get("network", "none"), environment, limit)

    def discover(self) -> list[dict[str, Any]]:
        if self.config.imageType == "custom":
            raise SourceError("custom images have no discover mode; use imageType singer or airbyte")
        if self.protocol == "airbyte":
            run = self._start("discover", {})
            parser = MessageParser("airbyte")
            for number, line in enumerate(_lines(run), start=1):
                parser.feed(number, line)
            if parser.catalog is None or not isinstance(parser.catalog.get("streams"), list):
                raise SourceError("the tap printed no CATALOG message")
            return [_airbyte_stream(stream) for stream in parser.catalog["streams"]]
        return singer_streams(read_all(self._start("discover", {})))

    def _catalog(self) -> tuple[dict[str, Any] | None, int | None]:
        """The catalog to pass (or None) and the number of streams it selects (None: unknown)."""
        catalog, streams = self.options.get("catalog"), self.options.get("streams")
        if self.protocol == "airbyte":
            if catalog is None:
                found = self.discover()
                wanted = streams or [stream["tap_stream_id"] for stream in found]
                if missing := [name for name in wanted if name not in {s["tap_stream_id"] for s in found}]:
                    raise SourceError(f"the tap has no stream {missing[0]!r}")
                catalog = {"streams": [_configured(s["airbyte"]) for s in found if s["tap_stream_id"] in wanted]}
            return catalog, len(catalog.get("streams") or [])
        if streams:
            catalog = select(self.discover(), streams)
        if catalog is None:
            return None, None
        chosen = [s for s in catalog.get("streams") or [] if _selected(s)]
        return catalog, len(chosen) or len(catalog.get("streams") or [])

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        files: dict[str, str] = {}
        catalog, count = self._catalog() if self.config.imageType != "custom" else (None, None)
        if catalog is not None:
            files["catalog.json"] = json.dumps(catalog)
        key = "airbyte_state" if self.protocol == "airbyte" else "singer_state"
        if self.state and self.state.get(key) is not None:
            files["state.json"] = json.dumps(self.state[key])
        parser = MessageParser(self.protocol, count)

        def done(parsed: MessageParser) -> None:
            if parsed.state is not None:  # a run without STATE keeps the previous bookmark
                self.state = {key: parsed.state}

        yield from drive(self._start("sync", files), parser, chunk_size, done)


def _lines(run: TapRun) -> Iterator[bytes]:
    try:
        yield from run.lines()
        run.finish()
    finally:
        run.close()


def _selected(stream: dict[str, Any]) -> bool:
    if stream.get("selected"):
        return True
    return any(entry.get("breadcrumb") == [] and (entry.get("metadata") or {}).get("selected")
               for entry in stream.get("metadata") or [])  # fmt: skip


def _airbyte_stream(stream: dict[str, Any]) -> dict[str, Any]:
    """An Airbyte stream, shaped like a Singer catalog entry (the original under ``airbyte``)."""
    name = stream.get("name")
    keys = [path[0] for path in stream.get("source_defined_primary_key") or [] if path]
    return {"tap_stream_id": name, "stream": name, "schema": stream.get("json_schema") or {},
            "key_properties": keys, "airbyte": stream}  # fmt: skip


def _configured(stream: dict[str, Any]) -> dict[str, Any]:
    incremental = "incremental" in (stream.get("supported_sync_modes") or []) and stream.get("default_cursor_field")
    entry = {"stream": stream, "sync_mode": "incremental" if incremental else "full_refresh",
             "destination_sync_mode": "append"}  # fmt: skip
    if incremental:
        entry["cursor_field"] = stream["default_cursor_field"]
    return entry
