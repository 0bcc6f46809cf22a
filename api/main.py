"""The one FastAPI app: every API's router, and the handlers that turn domain errors into bodies."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from api.routers import collections, connectors, ingestion, task
from sluice.errors import (
    ConfigurationError,
    Conflict,
    EngineUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)

app = FastAPI(
    title="Sluice",
    version="0.1.0",
    description="Feeds search indexes. Every long-running request is a Prefect flow run.",
)
app.include_router(task.router)
app.include_router(ingestion.router)
app.include_router(connectors.router)
app.include_router(collections.router)

_STATUS = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    EngineUnavailable: 503,
    ConfigurationError: 503,
}


def _message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


ALGOLIA_CODES = {400: "invalid_request", 403: "invalid_credentials", 404: "resource_not_found", 409: "conflict",
                 429: "too_many_requests", 503: "service_unavailable"}  # fmt: skip


def _error(request: Request, message: str, status: int) -> JSONResponse:
    """Each API's own error body: FastAPI's ``detail`` for the ingestion API, Algolia's
    ``{error: {code}, message, status}`` for the connectors API, ``{message, message_type}`` for
    the image collections, ``message`` for /task."""
    path = request.url.path
    if path.startswith(ingestion.PREFIX):
        return JSONResponse({"detail": message}, status_code=status)
    if path == connectors.PREFIX or path.startswith(connectors.PREFIX + "/"):
        code = ALGOLIA_CODES.get(status, "error")
        return JSONResponse({"error": {"code": code}, "message": message, "status": status}, status_code=status)
    if path.startswith(collections.PREFIX + "/"):  # the similarity webservice's shape
        return JSONResponse({"message": message, "message_type": "error"}, status_code=status)
    return JSONResponse({"message": message}, status_code=status)


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    if request.url.path.startswith(ingestion.PREFIX):  # FastAPI's own shape: 422 with every error
        return JSONResponse({"detail": jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})}, 422)
    # The Openverse- and Algolia-style APIs answer 400 with a message for any malformed request.
    return _error(request, _message(exc), 400)


for _error_type, _status in _STATUS.items():

    async def _domain_error(request: Request, exc: Exception, _status: int = _status) -> JSONResponse:
        return _error(request, str(exc), _status)

    app.add_exception_handler(_error_type, _domain_error)


@app.exception_handler(httpx.TransportError)
async def _prefect_unreachable(request: Request, exc: httpx.TransportError) -> JSONResponse:
    # Every httpx call the API makes goes to the Prefect API; the search engines raise their own errors.
    return _error(request, f"the Prefect API cannot be reached: {exc}", 503)


@app.exception_handler(RateLimited)
async def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
    response = _error(request, str(exc), 429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@app.exception_handler(OperationalError)
async def _database_busy(request: Request, _exc: OperationalError) -> JSONResponse:
    # SQLite's write lock held past its timeout, or the database server gone: the request can be retried.
    return _error(request, "the app database is busy or unreachable; retry shortly", 503)


@app.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}
