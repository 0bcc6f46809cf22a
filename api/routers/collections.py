"""The image-collections API (the HeidICON similarity webservice): ``/api/collection…`` and
``/api/verify``, with the reference's paths, bodies and messages, so its web frontend works.

Answers: ``{message, message_type: "push"}`` on success and ``{message, message_type: "error"}``
on error (an unknown collection is a 400, as the reference documents). The ``API-Key`` header is
needed to verify, create, rename, change content, finetune and delete; reading needs none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from prefect.exceptions import ObjectNotFound

from api.deps import PrefectDep, SessionDep
from deployments import DEPLOYMENT
from flows.finetune_collection import FLOW as FINETUNE_FLOW
from flows.finetune_collection import download
from sluice import image_collections as store
from sluice.errors import ConfigurationError, Conflict, Forbidden, InvalidInput
from sluice.image_embedding import ImageDecodeError, embed_bytes
from tasks.fetch import FetchError

PREFIX = "/api"
MAX_BODY = 20 * 1024 * 1024  # a CSV of 100,000 rows of long URLs fits
MAX_RESULTS = 1000

router = APIRouter(prefix=PREFIX, tags=["image collections"])


def api_key(session: SessionDep, key: Annotated[str | None, Header(alias="API-Key")] = None) -> None:
    if not store.key_is_valid(session, key):
        raise Forbidden("Missing or invalid API key")


KeyDep = Depends(api_key)


def push(message: str) -> dict[str, str]:
    return {"message": message, "message_type": "push"}


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB")
    return body


async def _json(request: Request) -> dict[str, Any]:
    try:
        value = orjson.loads(await _body(request) or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    return value


@router.get("/collection/list")
def list_collections(session: SessionDep) -> dict:
    rows = store.all_collections(session)
    return {"ids": [r.id for r in rows], "names": [{"value": r.id, "id": r.id, "name": r.name} for r in rows]}


@router.post("/collection/create", dependencies=[KeyDep])
async def create_collection(session: SessionDep, request: Request) -> dict:
    body = await _json(request)
    return {"id": store.create(session, body.get("name"), body.get("heidicon_tag")).id}


@router.get("/collection/{collection_id}/info")
def collection_info(session: SessionDep, collection_id: int) -> dict:
    return store.info(session, store.get(session, collection_id))


@router.post("/collection/{collection_id}/updatename", dependencies=[KeyDep])
async def update_name(session: SessionDep, collection_id: int, request: Request) -> dict:
    row = store.get(session, collection_id)
    store.rename(session, row, (await _json(request)).get("name"))
    return push(f"Collection {collection_id} renamed to {row.name!r}")


@router.post("/collection/{collection_id}/updatecontent", dependencies=[KeyDep])
async def update_content(session: SessionDep, collection_id: int, request: Request) -> dict:
    """The CSV as a raw ``text/csv`` body (as the reference reads it) or base64 in JSON ``{content}``
    (as its docs say)."""
    row = store.get(session, collection_id)
    if _media_type(request) == "application/json":
        content = (await _json(request)).get("content")
        if not isinstance(content, str):
            raise InvalidInput("content: the CSV, base64-encoded")
        try:
            raw = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("content: not valid base64") from None
    else:
        raw = await _body(request)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV is not UTF-8 text") from None
    count = store.set_content(session, row, text)
    return push(f"Content of collection {collection_id} replaced: {count} images; it requires finetuning")


@router.get("/collection/{collection_id}/csvfile")
def csv_file(session: SessionDep, collection_id: int) -> Response:
    row = store.get(session, collection_id)
    filename = "".join(c if c.isalnum() or c in "-_ ." else "_" for c in row.name) or "collection"
    return Response(store.csv_text(session, row), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})  # fmt: skip


@router.post("/collection/{collection_id}/finetune", dependencies=[KeyDep])
async def finetune(session: SessionDep, client: PrefectDep, collection_id: int, force: bool = False) -> dict:
    """Start the finetune flow and return at once; ``info`` shows its progress. Nothing starts when
    every image already has its vector (``force`` downloads them all again to find changed bytes)."""
    row = store.get(session, collection_id)
    if row.finetune_run_id is not None:
        try:
            previous = await client.read_flow_run(UUID(row.finetune_run_id))
        except ObjectNotFound:
            previous = None
        if previous is not None and previous.state is not None and not previous.state.is_final():
            raise Conflict(f"Collection {collection_id} is already being finetuned")
    if not force and not store.requires_finetuning(row) and not store.count_unembedded(session, row):
        return push(f"Collection {collection_id} is already finetuned: its content has not changed since")
    try:
        deployment = await client.read_deployment_by_name(f"{FINETUNE_FLOW}/{DEPLOYMENT}")
    except ObjectNotFound:
        raise ConfigurationError("finetuning is not served yet: is the runner up (`sluice up`)?") from None
    run = await client.create_flow_run_from_deployment(
        deployment.id, parameters={"collection_id": collection_id, "force": force},
        tags=["sluice", "image-collections", f"collection:{collection_id}"],
    )  # fmt: skip
    row.finetune_run_id, row.finetuning_progess = str(run.id), 0.0
    session.add(row)
    session.commit()
    return push(f"Finetuning of collection {collection_id} started") | {"run_id": str(run.id)}


@router.post("/collection/{collection_id}/search")
async def search(session: SessionDep, collection_id: int, request: Request,
                 num_results: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 5,
                 threshold: Annotated[float, Query(ge=0, le=100)] = 0) -> list[dict]:  # fmt: skip
    """Images like the one given: JSON ``{image}`` holding base64, a data URL or an http(s) URL
    (or ``{image_url}``), or the image's bytes as the body with an ``image/*`` Content-Type."""
    row = store.get(session, collection_id)
    if row.last_finetuned is None:  # before reading, fetching or embedding the query image
        raise InvalidInput(f"Collection {collection_id} has not been finetuned yet: finetune it first")
    data = await _query_image(request)
    try:
        query = await asyncio.to_thread(embed_bytes, data)
    except ImageDecodeError as exc:
        raise InvalidInput(f"image: {exc}") from None
    return await asyncio.to_thread(store.search, session, row, query, num_results, threshold)


async def _query_image(request: Request) -> bytes:
    if _media_type(request).startswith("image/"):
        return await _body(request)
    body = await _json(request)
    image = body.get("image", body.get("image_url"))
    if not isinstance(image, str) or not image.strip():
        raise InvalidInput("image: give the image as base64, a data URL or an http(s) URL")
    image = image.strip()
    if image.lower().startswith(("http://", "https://")):
        try:
            return await asyncio.to_thread(download, image)
        except FetchError as exc:
            raise InvalidInput(f"image: {exc.message}") from None
    if image.lower().startswith("data:"):
        header, _, image = image.partition(",")
        if not header.lower().endswith(";base64"):
            raise InvalidInput("image: a data URL must be base64 (data:image/...;base64,...)")
    # Line-wrapped (`base64` without -w0) and URL-safe base64 are common too; anything else is refused.
    image = "".join(image.split()).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image: not valid base64, a data URL or an http(s) URL") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@router.post("/collection/{collection_id}/delete", dependencies=[KeyDep])
def delete_collection(session: SessionDep, collection_id: int) -> dict:
    store.delete(session, store.get(session, collection_id))
    return push(f"Collection {collection_id} deleted")


@router.post("/verify", dependencies=[KeyDep])
def verify() -> dict:
    return push("API key is valid")
