"""The commercetools package's own testing backend (``commercetools.testing``) served over real HTTP
on a free local port, with the few fixes it needs to answer the queries a real project answers.

What is changed, and why (everything else is the package's backend as shipped):

- Its WSGI ``Server`` adds the query string twice (URL and ``params``), so any GET with a
  parameter fails (``limit: Not a valid integer``): the request is rebuilt from the URL alone.
- Its product-projections query ignores ``where``, ``sort`` and ``offset`` (it returns the first
  ``limit`` products): the query here filters with the package's own predicate parser, sorts and
  pages, as the real API does.
- Its auth backend accepts any client (and has no answer for one it refuses): ``clients`` holds the
  valid ``client_id -> secret`` pairs, and others get the real API's 401 ``invalid_client``.
- It has no Store endpoints: ``/in-store/key={store}/product-selection-assignments`` is served
  from ``assignments`` (store key -> product ids), in the shape of the SDK's
  ``ProductsInStorePagedQueryResponse``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest.mock import patch
from urllib.parse import parse_qs

import requests
import webob
from commercetools.platform import models
from commercetools.platform.client import Client
from commercetools.platform.models._schemas.product import (
    ProductProjectionPagedQueryResponseSchema,
    ProductSchema,
)
from commercetools.testing import BackendRepository, utils
from commercetools.testing.abstract import BaseBackend
from commercetools.testing.auth import AuthBackend
from commercetools.testing.product_projections import ProductProjectionsBackend, _ProductProjectionQuerySchema
from commercetools.testing.server import Server
from werkzeug.serving import make_server

PROJECT_KEY = "unittest"  # the one project the testing backend has


class _CheckedAuth(AuthBackend):
    def __init__(self, clients: dict[str, str]):
        super().__init__()
        self.clients = clients

    def token(self, request):
        client_id, client_secret = self._get_api_client_credentials(request)
        # The backend decodes Basic credentials as str(bytes): "b'id" and "secret'".
        if client_id and self.clients.get(client_id.removeprefix("b'")) == (client_secret or "").removesuffix("'"):
            return super().token(request)
        message = "Please provide valid client credentials using HTTP Basic Authentication."
        return utils.create_commercetools_response(request, status_code=401, json={
            "statusCode": 401, "message": message, "errors": [{"code": "invalid_client", "message": message}],
            "error": "invalid_client", "error_description": message})  # fmt: skip


class _Projections(ProductProjectionsBackend):
    def query(self, request):
        params = utils.parse_request_params(_ProductProjectionQuerySchema, request)
        products = self.model.query(params.get("where"))  # the package's predicate parser
        for sort in reversed(params.get("sort") or []):
            name, _, direction = sort.partition(" ")
            products.sort(key=lambda p, name=name: p[name], reverse=direction.strip() == "desc")
        projections = [p for p in (self._convert_product_projection(ProductSchema().load(obj), params["staged"])
                                   for obj in products) if p]  # fmt: skip
        offset, limit = params.get("offset", 0), params.get("limit", 20)
        page = projections[offset : offset + limit]
        data = {"count": len(page), "offset": offset, "limit": limit, "results": page}
        if "withTotal" not in request.qs or params["with_total"]:  # the real API's default is true
            data["total"] = len(projections)
        return utils.create_commercetools_response(
            request, text=ProductProjectionPagedQueryResponseSchema().dumps(data)
        )


class _StoreAssignments(BaseBackend):
    hostnames = ["localhost"]
    path_prefix = r"/(?P<project>[^/]+)/in-store/key=(?P<store>[^/]+)/(?P<path>product-selection-assignments)$"

    def __init__(self, assignments: dict[str, list[str]]):
        super().__init__()
        self.assignments = assignments

    def urls(self):
        return [("^product-selection-assignments$", "GET", self.query)]

    def query(self, request):
        store = request.kwargs["store"]
        if store not in self.assignments:
            return utils.create_commercetools_response(request, status_code=404)
        offset = int(request.qs.get("offset", ["0"])[0])
        limit = int(request.qs.get("limit", ["20"])[0])
        ids = self.assignments[store][offset : offset + limit]
        selection = models.ProductSelectionReference(id=f"selection-{store}")
        page = models.ProductsInStorePagedQueryResponse(
            limit=limit, count=len(ids), total=len(self.assignments[store]), offset=offset,
            results=[models.ProductSelectionAssignment(product=models.ProductReference(id=i),
                                                       product_selection=selection) for i in ids],
        )  # fmt: skip
        return utils.create_commercetools_response(request, json=page.serialize())


class _Server(Server):
    def __init__(self, repository, stores: _StoreAssignments):
        super().__init__(repository)
        stores.register(self.adapter)
        self.seen: list[tuple[str, str, dict[str, list[str]]]] = []  # (method, path, query) of every request

    def __call__(self, environ, start_response):
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], parse_qs(environ["QUERY_STRING"])))
        return super().__call__(environ, start_response)

    def _create_request(self, environ: dict) -> requests.Request:
        req = webob.Request(environ)
        req.make_body_seekable()
        return requests.Request(method=req.method, url=req.url, headers=req.headers, data=req.body,
                                cookies=req.cookies)  # fmt: skip


@dataclass
class CommercetoolsServer:
    """A running backend: ``url`` serves both the API and ``/oauth/token``."""

    url: str
    repository: BackendRepository
    clients: dict[str, str]
    assignments: dict[str, list[str]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)

    def queries(self, path_end: str) -> list[dict[str, list[str]]]:
        """The query strings of the GETs whose path ends with ``path_end``, in order."""
        return [query for method, path, query in self.seen if method == "GET" and path.endswith(path_end)]

    def client(self, client_id: str = "sluice", client_secret: str = "s3cret") -> Client:
        """The official SDK, logged in against this server (to create products)."""
        return Client(client_id=client_id, client_secret=client_secret, scope=[f"manage_project:{PROJECT_KEY}"],
                      url=self.url, token_url=f"{self.url}/oauth/token")  # fmt: skip

    def add_product(self, draft: models.ProductDraft) -> models.Product:
        return self.client().with_project_key(PROJECT_KEY).products().post(draft)

    def add_existing(self, product: models.Product) -> None:
        """A product as stored (for what a draft cannot set, e.g. inventory ``availability``)."""
        self.repository.products.add_existing(product)


@contextmanager
def commercetools_server(clients: dict[str, str] | None = None) -> Iterator[CommercetoolsServer]:
    """The backend on ``localhost`` (the hostname its routes answer to), on a free port."""
    clients = {"sluice": "s3cret"} if clients is None else clients
    repository = BackendRepository()
    repository.auth = _CheckedAuth(clients)
    repository.product_projections = _Projections(repository._storage, model=repository.products.model)
    assignments: dict[str, list[str]] = {}
    app = _Server(repository, _StoreAssignments(assignments))
    http = make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    # The SDK's OAuth client refuses plain http and a token scope other than the one requested.
    relaxed = {"OAUTHLIB_INSECURE_TRANSPORT": "1", "OAUTHLIB_RELAX_TOKEN_SCOPE": "1"}
    try:
        with patch.dict(os.environ, relaxed):
            yield CommercetoolsServer(
                f"http://localhost:{http.server_port}", repository, clients, assignments, app.seen
            )
    finally:
        http.shutdown()
        thread.join()
        http.server_close()
