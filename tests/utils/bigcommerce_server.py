"""A local HTTP server that speaks the parts of BigCommerce's REST API (v3) a catalog source reads,
with the real API's shapes: ``data`` + ``meta.pagination`` envelopes, ``include=`` sub-resources,
``X-Auth-Token`` checks, the ``:min``/``:in``/``:greater`` filters, product and variant metafields, and batch
pricing per channel and currency. The ``bigcommerce`` package has no test server (and hardcodes
https), so the source is tested against this one.

Products are stored as the API returns them (see ``product``/``variant``); ``channels`` assigns
product ids to channels and ``rates`` prices each currency as a multiple of the stored price.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LIMIT = 250
STATUS_DOCS = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"


def product(id: int, name: str, price: float, *, variants: list[dict] | None = None, modified: str = "2024-01-01T00:00:00+00:00",
            inventory_level: int = 0, inventory_tracking: str = "none", availability: str = "available",
            custom_fields: dict[str, str] | None = None, images: int = 1, categories: list[int] | None = None,
            brand_id: int = 0, sale_price: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """A product as ``GET /v3/catalog/products`` returns it (sub-resources under their include names)."""
    sku = f"P-{id}"
    variants = variants or [variant(id * 10, id, sku, price=None)]
    return {
        "id": id, "name": name, "type": "physical", "sku": sku, "description": f"<p>{name}</p>", "weight": 1,
        "price": price, "cost_price": 0, "retail_price": 0, "sale_price": sale_price,
        "calculated_price": sale_price or price, "categories": categories or [23], "brand_id": brand_id,
        "inventory_level": inventory_level, "inventory_tracking": inventory_tracking, "availability": availability,
        "is_visible": True, "date_created": "2023-12-01T00:00:00+00:00", "date_modified": modified,
        "custom_url": {"url": f"/{name.lower().replace(' ', '-')}/", "is_customized": False},
        "base_variant_id": variants[0]["id"],
        "variants": [v | {"calculated_price": v["price"] if v["price"] is not None else sale_price or price}
                     for v in variants],
        "images": [{"id": id * 100 + i, "product_id": id, "is_thumbnail": i == 0, "sort_order": i,
                    "description": "", "url_standard": f"https://cdn.example/{id}/{i}.standard.jpg",
                    "url_thumbnail": f"https://cdn.example/{id}/{i}.thumb.jpg",
                    "url_zoom": f"https://cdn.example/{id}/{i}.zoom.jpg"} for i in range(images)],
        "custom_fields": [{"id": id * 1000 + i, "name": k, "value": v}
                          for i, (k, v) in enumerate((custom_fields or {}).items())],
    }  # fmt: skip


def variant(id: int, product_id: int, sku: str, *, price: float | None = None, inventory_level: int = 0,
            options: dict[str, str] | None = None, purchasing_disabled: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id, "product_id": product_id, "sku": sku, "sku_id": id, "price": price, "sale_price": None,
        "retail_price": None, "inventory_level": inventory_level, "purchasing_disabled": purchasing_disabled,
        "image_url": "", "upc": "", "option_values": [
            {"id": id * 10 + i, "label": label, "option_id": i + 1, "option_display_name": name}
            for i, (name, label) in enumerate((options or {}).items())],
    }  # fmt: skip


@dataclass
class BigCommerceStore:
    store_hash: str = "abc123"
    token: str = "good-token"
    products: list[dict[str, Any]] = field(default_factory=list)
    metafields: dict[tuple[int, int | None], list[dict]] = field(default_factory=dict)  # (product, variant|None)
    channels: dict[int, list[int]] = field(default_factory=dict)  # channel id -> product ids
    rates: dict[str, float] = field(default_factory=lambda: {"USD": 1.0})
    seen: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)  # method, path, query
    throttle: int = 0  # answer this many next requests with 429
    url: str = ""

    def add_metafield(self, product_id: int, namespace: str, key: str, value: str, variant_id: int | None = None):
        fields = self.metafields.setdefault((product_id, variant_id), [])
        fields.append({"id": len(fields) + 1, "namespace": namespace, "key": key, "value": value,
                       "permission_set": "read", "resource_type": "variant" if variant_id else "product",
                       "resource_id": variant_id or product_id, "description": "",
                       "date_created": "2024-01-01T00:00:00+00:00", "date_modified": "2024-01-01T00:00:00+00:00"})  # fmt: skip

    def queries(self, path_end: str) -> list[dict[str, list[str]]]:
        return [q for method, path, q in self.seen if method == "GET" and path.endswith(path_end)]


def _page(items: list[Any], query: dict[str, str]) -> dict[str, Any]:
    """One page of ``items`` in the v3 envelope, with ``meta.pagination`` and its links."""
    limit = min(int(query.get("limit", 50)), MAX_LIMIT)
    page = int(query.get("page", 1))
    total_pages = max(1, -(-len(items) // limit))
    data = items[(page - 1) * limit : page * limit]
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={page - 1}&limit={limit}"
    if page < total_pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    return {"data": data, "meta": {"pagination": {"total": len(items), "count": len(data), "per_page": limit,
                                                  "current_page": page, "total_pages": total_pages, "links": links}}}  # fmt: skip


def _instant(value: str) -> datetime:
    return datetime.fromtimestamp(int(value), UTC) if value.isdigit() else datetime.fromisoformat(value)


def _handler(store: BigCommerceStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int, title: str) -> None:
            self._send(status, {"status": status, "title": title, "type": STATUS_DOCS, "errors": {}})

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            store.seen.append((method, url.path, parse_qs(url.query)))
            if store.throttle > 0:
                store.throttle -= 1
                return self._send(429, {"status": 429, "title": "Too many requests", "type": STATUS_DOCS},
                                  {"X-Rate-Limit-Time-Reset-Ms": "50"})  # fmt: skip
            parts = url.path.strip("/").split("/")
            if parts[:1] != ["stores"] or len(parts) < 3 or parts[2] != "v3":
                return self._error(404, "Not Found")
            if self.headers.get("X-Auth-Token") != store.token:
                return self._error(401, "No valid credentials were found in this request")
            if parts[1] != store.store_hash:
                return self._error(404, "Store not found")
            route = parts[3:]
            if method == "GET" and route == ["catalog", "products"]:
                return self._send(200, self._products(query))
            if method == "GET" and route[:2] == ["catalog", "products"] and route[-1] == "metafields":
                ids = route[2:-1]  # [product] or [product, "variants", variant]
                key = (int(ids[0]), int(ids[2]) if len(ids) == 3 else None)
                if not any(p["id"] == key[0] for p in store.products):
                    return self._error(404, "The requested product was not found")
                return self._send(200, self._metafields(store.metafields.get(key, []), query))
            if method == "POST" and route == ["pricing", "products"]:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                return self._send(200, self._prices(body))
            return self._error(404, "Not Found")

        def _products(self, query: dict[str, str]) -> dict[str, Any]:
            products = list(store.products)
            if "channel_id:in" in query:
                wanted = {int(c) for c in query["channel_id:in"].split(",")}
                products = [p for p in products if any(p["id"] in store.channels.get(c, []) for c in wanted)]
            if "id:greater" in query:
                products = [p for p in products if p["id"] > int(query["id:greater"])]
            if "date_modified:min" in query:
                since = _instant(query["date_modified:min"])
                products = [p for p in products if _instant(p["date_modified"]) >= since]
            if query.get("sort", "id") == "id":
                products.sort(key=lambda p: p["id"], reverse=query.get("direction") == "desc")
            includes = set(query.get("include", "").split(","))
            subresources = {"variants", "images", "custom_fields"}
            products = [{k: v for k, v in p.items() if k not in subresources or k in includes} for p in products]
            return _page(products, query)

        def _metafields(self, fields: list[dict], query: dict[str, str]) -> dict[str, Any]:
            for name in ("namespace", "key"):
                if name in query:
                    fields = [f for f in fields if f[name] == query[name]]
                if f"{name}:in" in query:
                    fields = [f for f in fields if f[name] in query[f"{name}:in"].split(",")]
            return _page(fields, query)

        def _prices(self, body: dict[str, Any]) -> dict[str, Any]:
            rate = store.rates[body["currency_code"]]
            by_id = {p["id"]: p for p in store.products}
            data = []
            for item in body["items"]:
                found = by_id[item["product_id"]]
                # A product alone is priced as its base variant, which the answer names.
                wanted = item.get("variant_id", found["base_variant_id"])
                chosen = next(v for v in found["variants"] if v["id"] == wanted)
                base = chosen["calculated_price"]
                amount = {"as_entered": round(base * rate, 2), "entered_inclusive": False,
                          "tax_exclusive": round(base * rate, 2), "tax_inclusive": round(base * rate * 1.2, 2)}  # fmt: skip
                data.append({"product_id": item["product_id"], "variant_id": wanted, "options": [],
                             "reference_request": item, "price": amount, "calculated_price": amount,
                             "bulk_pricing": []})  # fmt: skip
            return {"data": data, "meta": {}}

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

    return Handler


@contextmanager
def bigcommerce_server(store: BigCommerceStore | None = None) -> Iterator[BigCommerceStore]:
    """``store`` served on 127.0.0.1 at a free port; its ``url`` is the API base (BIGCOMMERCE_API_URL)."""
    store = store or BigCommerceStore()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    store.url = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        yield store
    finally:
        http.shutdown()
        thread.join()
        http.server_close()
