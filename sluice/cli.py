"""The ``sluice`` command: run everything (``up``), load the sample data, and drive the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Sluice: feeds search indexes. Every pipeline runs as a Prefect flow.", no_args_is_help=True)
console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where every embedded store lives [SLUICE_DATA_DIR].")
]
ApiUrlOption = Annotated[str | None, typer.Option("--api-url", help="Sluice API base URL [SLUICE_API_URL].")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the task with a progress bar until it ends.")]
Model = Annotated[str, typer.Argument(help="image or audio")]


def _settings(data_dir: Path | None = None, **overrides: object):
    """Settings with command-line overrides exported, so child processes read the same values."""
    from sluice.settings import get_settings

    if data_dir is not None:
        os.environ["SLUICE_DATA_DIR"] = str(data_dir)
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"SLUICE_{key}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


@app.command("load-sample")
def load_sample_command(data_dir: DataDirOption = None) -> None:
    """Load Openverse's public sample rows (images and audio) into the app database."""
    from sluice import db
    from sluice.sample import load_sample

    settings = _settings(data_dir)
    db.upgrade(settings.database_url)
    added = load_sample(db.get_engine(settings.database_url))
    for table, count in added.items():
        typer.echo(f"{table}: {count} rows added")


@app.command("migrate")
def migrate_command(data_dir: DataDirOption = None) -> None:
    """Bring the app database schema up to date (keeps every row)."""
    from sluice import db

    db.upgrade(_settings(data_dir).database_url)
    typer.echo("app database is up to date")


# --- tenants, indexes, keys (document ingestion) -----------------------------------------------

tenants_app = typer.Typer(help="Tenants of the document-ingestion API and their indexes.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once when created).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")


def _session(data_dir: Path | None):
    from sluice import db

    settings = _settings(data_dir)
    db.upgrade(settings.database_url)
    return db.session(settings.database_url)


def _domain(call):
    """Run a credentials call; a domain error becomes a one-line message and exit code 1."""
    from sluice.errors import SluiceError

    try:
        return call()
    except SluiceError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


@tenants_app.command("create")
def tenants_create(name: str, data_dir: DataDirOption = None) -> None:
    """Create a tenant."""
    from sluice import credentials

    with _session(data_dir) as session:
        _domain(lambda: credentials.create_tenant(session, name))
    typer.echo(f"tenant {name} created")


@tenants_app.command("list")
def tenants_list(data_dir: DataDirOption = None) -> None:
    """List tenants with their indexes."""
    from sqlmodel import select

    from sluice.models import DocumentIndex, Tenant

    with _session(data_dir) as session:
        for tenant in session.exec(select(Tenant).order_by(Tenant.name)):
            typer.echo(tenant.name)
            for ix in session.exec(select(DocumentIndex).where(DocumentIndex.tenant == tenant.name)):
                keys = ", ".join(ix.allowed_metadata_keys) or "no custom metadata"
                typer.echo(f"  {ix.index_id}{' (default)' if ix.is_default else ''}: {keys}")


@tenants_app.command("add-index")
def tenants_add_index(
    tenant: str,
    index_id: str,
    metadata_key: Annotated[
        list[str] | None, typer.Option("--metadata-key", help="Allowed custom metadata key.")
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the tenant's default index.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Add a document index to a tenant (the first one is the default)."""
    from sluice import credentials

    with _session(data_dir) as session:
        ix = _domain(lambda: credentials.create_index(session, tenant, index_id, metadata_key or [], default))
        typer.echo(f"index {ix.index_id} added to {tenant}{' (default)' if ix.is_default else ''}")


@keys_app.command("create")
def keys_create(
    tenant: str,
    role: Annotated[list[str] | None, typer.Option("--role", help="Role the key holds.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    data_dir: DataDirOption = None,
) -> None:
    """Create a key for a tenant and print it (the only time it is shown)."""
    from sluice import credentials

    with _session(data_dir) as session:
        row, key = _domain(lambda: credentials.create_key(session, tenant, role or ["ingestion-manager"], name))
        console.print(f"key {row.key_id} for {tenant} ({', '.join(row.roles)}); store it now, it is not shown again:")
    typer.echo(key)


apps_app = typer.Typer(help="Applications of the connectors API (/1/…): a tenant and its keys.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")


@apps_app.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="Application ID (the tenant's name; an existing tenant is reused).")],
    data_dir: DataDirOption = None,
) -> None:
    """Create an application and a connectors-admin key; prints the Application ID and the API key."""
    from sluice import credentials
    from sluice.models import Tenant

    with _session(data_dir) as session:
        if session.get(Tenant, name) is None:
            _domain(lambda: credentials.create_tenant(session, name))
        row, key = _domain(lambda: credentials.create_key(session, name, ["connectors-admin"], "connectors"))
        console.print(f"application {name}: X-Algolia-Application-Id: {name}; key {row.key_id} (shown once):")
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOption = None) -> None:
    """Revoke a key at once."""
    from sluice import credentials

    with _session(data_dir) as session:
        _domain(lambda: credentials.revoke_key(session, key_id))
    typer.echo(f"key {key_id} revoked")


# --- sluice up --------------------------------------------------------------------------------


def _wait_http(url: str, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s")


def _wait_deployments(proc: subprocess.Popen, timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    from deployments import deployment_name
    from flows.index_lifecycle import FLOWS

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        for action in FLOWS:
            while True:
                try:
                    client.read_deployment_by_name(deployment_name(action))
                    break
                except Exception:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the runner exited with code {proc.returncode}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError("the runner did not register its deployments") from None
                    time.sleep(0.3)


def prefect_env(data_dir: Path, prefect_port: int) -> dict[str, str]:
    """The environment of every process `sluice up` starts: one Prefect server on SQLite in DATA_DIR."""
    home = data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(prefect_port),  # else the UI calls port 4200
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick runs up within a second, not ten
        # A new task schedule gets its first runs within 15 s, not a minute.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "15",
        # Finished flow runs (and their task runs) age out after the retention period (90 days).
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    }


@app.command("up")
def up(
    api_port: Annotated[int, typer.Option(help="Port of the Sluice API.")] = 8001,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server and UI.")] = 4200,
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    data_dir: DataDirOption = None,
) -> None:
    """Run everything: the Prefect server (SQLite in DATA_DIR), a runner serving every flow, the API."""
    from sluice import db

    settings = _settings(data_dir, API_PORT=api_port, API_HOST=host)
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    db.upgrade(settings.database_url)
    env = {**os.environ, **prefect_env(settings.DATA_DIR, prefect_port), "SLUICE_DATA_DIR": str(settings.DATA_DIR)}
    os.environ.update(env)
    logs = settings.DATA_DIR / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
        log = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        procs.append((name, proc))
        return proc

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server = start("prefect-server", "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                       "--port", str(prefect_port))  # fmt: skip
        _wait_http(f"http://127.0.0.1:{prefect_port}/api/health", "the Prefect server", server)
        runner = start("runner", "-m", "deployments")
        _wait_deployments(runner)
        api = start("api", "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(api_port))
        _wait_http(f"http://127.0.0.1:{api_port}/healthz", "the API", api)
        console.print(f"[bold green]Sluice is up[/]  API http://{host}:{api_port}  (docs /docs)   "
                      f"Prefect UI http://127.0.0.1:{prefect_port}   logs {logs}")  # fmt: skip
        while all(proc.poll() is None for _, proc in procs):
            time.sleep(0.5)
        dead = [f"{name} (exit {proc.returncode})" for name, proc in procs if proc.poll() is not None]
        console.print(f"[red]stopped: {', '.join(dead)} exited; see {logs}[/]")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    except RuntimeError as exc:
        console.print(f"[red]{exc}; see {logs}[/]")
        raise typer.Exit(1) from None
    finally:
        # One at a time, last started first: the runner needs the Prefect server to shut down cleanly.
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


# --- driving the /task API ----------------------------------------------------------------------


def progress_bar() -> Progress:
    """The bar every --wait shows: what is happening, the bar, the percentage, the time taken."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=console)  # fmt: skip


def _api(api_url: str | None) -> httpx.Client:
    return httpx.Client(base_url=api_url or _settings().api_url, timeout=30)


def _fail(response: httpx.Response) -> None:
    try:
        body = response.json()
        message = body.get("message") or body.get("detail") or response.text
    except ValueError:
        message = response.text
    console.print(f"[red]{response.status_code}: {message}[/]")
    raise typer.Exit(1)


def follow(client: httpx.Client, task_id: str, label: str) -> dict:
    """Poll a task to its end with a progress bar; returns its final status."""
    with progress_bar() as bar:
        row = bar.add_task(label, total=100)
        while True:
            response = client.get(f"/task/{task_id}")
            if response.status_code != 200:
                _fail(response)
            status = response.json()
            bar.update(row, completed=status["progress"], description=f"{label} [{status['state']}]")
            if not status["active"]:
                return status
            time.sleep(0.5)


def submit(api_url: str | None, wait: bool, body: dict) -> None:
    """POST a task; print its id, or follow it to the end with ``--wait``."""
    with _api(api_url) as client:
        response = client.post("/task", json={k: v for k, v in body.items() if v is not None})
        if response.status_code != 202:
            _fail(response)
        task_id = response.json()["task_id"]
        if not wait:
            typer.echo(task_id)
            return
        status = follow(client, task_id, f"{body['action']} {body['model']}")
        if status["error"]:
            console.print(f"[red]task {task_id} failed: {status.get('error_message')}[/]")
            raise typer.Exit(1)
        console.print(f"[green]task {task_id} done[/]")


@app.command()
def reindex(
    model: Model, suffix: Annotated[str | None, typer.Option(help="Index suffix.")] = None,
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Build a new index {model}-{suffix} from the app database."""
    submit(api_url, wait, {"model": model, "action": "REINDEX", "index_suffix": suffix})


@app.command("update-index")
def update_index(
    model: Model, since: Annotated[str, typer.Option(help="ISO date: re-index rows updated since.")],
    suffix: Annotated[str | None, typer.Option(help="Index suffix (default: the live alias).")] = None,
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Re-index the rows updated since a date."""
    submit(api_url, wait, {"model": model, "action": "UPDATE_INDEX", "since_date": since, "index_suffix": suffix})


@app.command("filter")
def create_filtered_index(
    model: Model,
    origin: Annotated[str | None, typer.Option(help="Origin suffix (default: the live alias).")] = None,
    dest: Annotated[str | None, typer.Option(help="Destination suffix.")] = None,
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Build {model}-{dest}-filtered without documents that hold a sensitive term."""
    body = {"model": model, "action": "CREATE_AND_POPULATE_FILTERED_INDEX",
            "origin_index_suffix": origin, "destination_index_suffix": dest}  # fmt: skip
    submit(api_url, wait, body)


@app.command("point-alias")
def point_alias(
    model: Model, suffix: Annotated[str, typer.Argument(help="Suffix of the index to point at.")],
    alias: Annotated[str | None, typer.Option(help="Alias (default: the model).")] = None,
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Point an alias at {model}-{suffix} atomically."""
    submit(api_url, wait, {"model": model, "action": "POINT_ALIAS", "index_suffix": suffix, "alias": alias or model})


@app.command("delete-index")
def delete_index(
    model: Model, suffix: Annotated[str, typer.Argument(help="Suffix of the index to delete.")],
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Delete {model}-{suffix} (refused while it serves an alias)."""
    submit(api_url, wait, {"model": model, "action": "DELETE_INDEX", "index_suffix": suffix})


@app.command()
def promote(
    model: Model, suffix: Annotated[str | None, typer.Option(help="Index suffix.")] = None,
    wait: WaitOption = False, api_url: ApiUrlOption = None,
) -> None:  # fmt: skip
    """Reindex, filter, move both aliases at once and delete the old indexes."""
    submit(api_url, wait, {"model": model, "action": "PROMOTE", "index_suffix": suffix})


@app.command()
def status(task_id: str, wait: WaitOption = False, api_url: ApiUrlOption = None) -> None:
    """Show a task (or follow it with --wait)."""
    with _api(api_url) as client:
        if wait:
            follow(client, task_id, task_id)
        response = client.get(f"/task/{task_id}")
        if response.status_code != 200:
            _fail(response)
        typer.echo(response.text)


@app.command()
def cancel(task_id: str, api_url: ApiUrlOption = None) -> None:
    """Cancel a running task."""
    with _api(api_url) as client:
        response = client.delete(f"/task/{task_id}")
        if response.status_code != 202:
            _fail(response)
        typer.echo(f"cancelling {task_id}")


# --- pushing documents to the ingestion API ----------------------------------------------------------

documents_app = typer.Typer(help="Documents of the ingestion API.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")
DOCUMENTS_PATH = "/v0/service/ingestion/documents"
DONE_STATUSES = frozenset(
    {"indexed", "indexed_update", "ingested", "failed", "quarantined", "quarantine_failed", "deleted"}
)


def _read_documents(path: Path) -> Iterator[dict]:
    """Documents from a JSON Lines file (one object per line), streamed."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise typer.BadParameter(f"{path}:{number}: not JSON: {exc}") from None


@documents_app.command("push")
def push_documents(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines: one document per line.")],
    tenant: Annotated[str, typer.Option(help="Tenant to ingest into.")],
    key: Annotated[str, typer.Option(envvar="SLUICE_API_KEY", help="API key with ingestion-manager [SLUICE_API_KEY].")],
    index_id: Annotated[str | None, typer.Option(help="Index (default: the tenant's default).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    wait: Annotated[bool, typer.Option("--wait", help="Follow processing with a progress bar.")] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Send documents in batches; with --wait, follow them until every one is processed."""
    job = str(uuid.uuid4())  # one ingestion job for the whole push, so it can be followed
    params = {"tenant": tenant, **({"index_id": index_id} if index_id else {})}
    accepted = errors = 0
    with _api(api_url) as client:
        client.headers["X-Auth"] = key
        batch: list[dict] = []

        def send() -> None:
            nonlocal accepted, errors
            body = {"documents": batch, **({"index_id": index_id} if index_id else {})}
            response = client.post(f"{DOCUMENTS_PATH}/document-batches", params=params, json=body)
            if response.status_code != 200:
                _fail(response)
            answer = response.json()
            accepted += len(answer["documents"])
            for error in answer["errors"]:
                errors += 1
                console.print(f"[yellow]{error['document_id']}: {error['error_message']}[/]")
            batch.clear()

        for document in _read_documents(path):
            if isinstance(document, dict):
                document.setdefault("content_ingestion_job_id", job)
            batch.append(document)
            if len(batch) >= batch_size:
                send()
        if batch:
            send()
        console.print(f"{accepted} documents accepted, {errors} refused (job {job})")
        if wait and accepted:
            _follow_job(client, params, job, accepted)


def _follow_job(client: httpx.Client, params: dict, job: str, total: int) -> None:
    with progress_bar() as bar:
        row = bar.add_task("processing", total=total)
        while True:
            counts: dict[str, int] = {}
            page = 1
            while page:
                query = {**params, "content_ingestion_job_id": job, "include_document_status": "true",
                         "page": page, "page_size": 1000}  # fmt: skip
                response = client.get(DOCUMENTS_PATH, params=query)
                if response.status_code != 200:
                    _fail(response)
                answer = response.json()
                for document in answer["results"]:
                    counts[document["status"]] = counts.get(document["status"], 0) + 1
                page = answer["next"]["page"] if answer.get("next") else 0
            total = sum(counts.values())  # distinct documents: an id pushed twice counts once
            done = sum(n for status, n in counts.items() if status in DONE_STATUSES)
            bar.update(
                row,
                completed=done,
                description=f"processing [{', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}]",
            )
            if done >= total:
                return
            time.sleep(1)


# --- image collections ---------------------------------------------------------------------------------------

api_keys_app = typer.Typer(help="API keys of the image-collections API (the API-Key header).", no_args_is_help=True)
app.add_typer(api_keys_app, name="api-keys")


@api_keys_app.command("create")
def api_keys_create(name: Annotated[str, typer.Option(help="A label for the key.")] = "",
                    data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Create a key and print it (the only time it is shown)."""
    from sluice import image_collections

    with _session(data_dir) as session:
        row, key = image_collections.create_key(session, name)
        console.print(f"key {row.key_id} created (shown once):")
    typer.echo(key)


@api_keys_app.command("list")
def api_keys_list(data_dir: DataDirOption = None) -> None:
    """Every key: id, label, created, revoked."""
    from sluice import image_collections

    with _session(data_dir) as session:
        for row in image_collections.list_keys(session):
            state = f"deleted {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            typer.echo(f"{row.key_id}\t{row.name or '-'}\t{row.created_at:%Y-%m-%d %H:%M}\t{state}")


@api_keys_app.command("delete")
def api_keys_delete(key_id: str, data_dir: DataDirOption = None) -> None:
    """Delete (revoke) a key at once."""
    from sluice import credentials, image_collections

    with _session(data_dir) as session:
        if key_id not in {row.key_id for row in image_collections.list_keys(session)}:
            console.print(f"[red]no image-collections key {key_id!r}[/]")
            raise typer.Exit(1)
        _domain(lambda: credentials.revoke_key(session, key_id))
        console.print(f"key {key_id} deleted")


collections_app = typer.Typer(help="Image collections: finetune from the command line.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")


@collections_app.command("finetune")
def collections_finetune(
    collection_id: Annotated[int, typer.Argument(help="The collection's id.")],
    key: Annotated[
        str,
        typer.Option(
            envvar="SLUICE_COLLECTIONS_API_KEY", help="An image-collections key [SLUICE_COLLECTIONS_API_KEY]."
        ),
    ],  # fmt: skip
    force: Annotated[bool, typer.Option("--force", help="Download every image again; re-embed changed ones.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the finetune with a progress bar.")] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Finetune a collection; with --wait, follow it to the end (exit 1 when the run fails)."""
    with _api(api_url) as client:
        client.headers["API-Key"] = key
        before = client.get(f"/api/collection/{collection_id}/info")
        if before.status_code != 200:
            _fail(before)
        response = client.post(f"/api/collection/{collection_id}/finetune", params={"force": force} if force else None)
        if response.status_code != 200:
            _fail(response)
        console.print(response.json()["message"])
        if not wait or "run_id" not in response.json():
            return
        finetuned_before = before.json()["last_finetuned"]
        with progress_bar() as bar:
            row = bar.add_task("finetuning", total=100)
            while True:
                info = client.get(f"/api/collection/{collection_id}/info").json()
                if info["finetuning_progess"] is None:  # idle again: the run ended
                    break
                bar.update(row, completed=info["finetuning_progess"])
                time.sleep(1)
            done = info["last_finetuned"] != finetuned_before
            bar.update(row, completed=100 if done else bar.tasks[0].completed)
    if not done:
        console.print("[red]the finetune run failed or was cancelled: see its flow run in the Prefect UI[/]")
        raise typer.Exit(1)
    failed = info["number_of_failed_images"]
    console.print(f"[green]{info['number_of_embedded_images']} of {info['number_of_images']} images embedded[/]"
                  + (f", [red]{failed} failed[/]" if failed else ""))  # fmt: skip
    for failure in info["failed_images"]:
        console.print(f"  {failure['image_url']}: {failure['reason']}")


# --- connectors ----------------------------------------------------------------------------------------------

connectors_app = typer.Typer(help="Tasks of the connectors API.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")


@connectors_app.command("run")
def run_connector_task(
    task_id: Annotated[str, typer.Argument(help="The task's taskID.")],
    app_id: Annotated[str, typer.Option("--app", envvar="SLUICE_APP_ID", help="Application ID [SLUICE_APP_ID].")],
    key: Annotated[str, typer.Option(envvar="SLUICE_API_KEY", help="The application's key [SLUICE_API_KEY].")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run with a progress bar.")] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Run a connector task now; with --wait, follow the run to its outcome (exit 1 on failure)."""
    with _api(api_url) as client:
        client.headers.update({"X-Algolia-Application-Id": app_id, "X-Algolia-API-Key": key})
        response = client.post(f"/1/tasks/{task_id}/run")
        if response.status_code != 200:
            _fail(response)
        run_id = response.json()["runID"]
        console.print(f"run {run_id} created")
        if not wait:
            return
        with progress_bar() as bar:
            row = bar.add_task("created", total=1)
            while True:
                response = client.get(f"/1/runs/{run_id}")
                if response.status_code == 429:  # runs allow 200 reads per 30 s: keep polling politely
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code != 200:
                    _fail(response)
                run = response.json()
                progress = run.get("progress") or {}
                bar.update(row, description=run["status"], total=max(progress.get("expectedNbOfEvents", 1), 1),
                           completed=progress.get("receivedNbOfEvents", 0))  # fmt: skip
                if run["status"] in ("finished", "skipped"):
                    break
                time.sleep(1)
    outcome = run.get("outcome", "success")
    console.print(f"[{'green' if outcome == 'success' else 'red'}]{outcome}[/]: {run.get('reason', '')}")
    if outcome != "success":
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
