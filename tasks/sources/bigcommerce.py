"""BigCommerce: a store's catalog over the REST API (v3), with the source's ``apiKey``
authentication as the ``X-Auth-Token``.

One record per product, or per variant when ``record_type`` is "variant" (the destination's
``recordType``, set by the flow). ``channel`` keeps the products of one channel and, with
``currencies``, adds their prices in each currency (batch pricing API). ``customFields`` keeps
only the named custom fields; ``productMetafields``/``variantMetafields`` add the named
metafields. ``state`` holds the newest ``date_modified`` read (at most the run's start); the next
run reads only products modified since (``date_modified:min`` is inclusive, so products of that
very second come again).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import islice
from typing import Any

import httpx

from sluice.connectors import BigCommerceMetafield, SourceBigCommerce
from sluice.settings import get_settings
from tasks.sources.base import Source, SourceError, json_object, require

PAGE_LIMIT = 250  # the API's largest page
PRICE_BATCH = 250  # items per batch-pricing request
RETRIES = 5  # on HTTP 429, after the wait BigCommerce asks for
MAX_WAIT = 30.0
TIMEOUT = 30.0


class BigCommerceSource(Source):
    source_type = "bigcommerce"
    config_model = SourceBigCommerce

    def validate_config(self) -> None:
        require(bool(self.secret.get("key")), "authenticationID", "a BigCommerce source needs an apiKey authentication")
        require(self.record_type in ("product", "variant"), "recordType", "must be product or variant")

    def check_connection(self) -> None:
        with self._client() as client:
            self._request(client, "GET", "/catalog/products", params={"limit": 1})

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        self.state = dict(self.state or {})
        with self._client() as client:
            records = (record for page in self._pages(client, min(chunk_size, PAGE_LIMIT))
                       for record in self._page_records(client, page))  # fmt: skip
            while chunk := list(islice(records, chunk_size)):
                yield chunk

    # --- HTTP ---------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        base = f"{get_settings().BIGCOMMERCE_API_URL.rstrip('/')}/stores/{self.config.storeHash}/v3"
        headers = {"X-Auth-Token": self.secret["key"], "Accept": "application/json"}
        return httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT)

    def _request(self, client: httpx.Client, method: str, path: str, missing_ok: bool = False,
                 **kwargs: Any) -> httpx.Response:  # fmt: skip
        for _ in range(RETRIES + 1):
            try:
                response = client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise SourceError(f"cannot reach BigCommerce at {client.base_url}: {exc}") from None
            if response.status_code != 429:
                break
            # The rate limit says when its window reopens.
            wait = int(response.headers.get("X-Rate-Limit-Time-Reset-Ms", "1000")) / 1000
            time.sleep(min(wait, MAX_WAIT))
        if response.status_code in (401, 403):
            raise SourceError("BigCommerce refused the API key")
        if response.status_code == 404:
            if missing_ok:  # e.g. a product deleted while the catalog is read
                return httpx.Response(200, json={"data": []})
            raise SourceError(f"BigCommerce has no store {self.config.storeHash!r}: check the storeHash")
        if response.is_error:
            title = json_object(response).get("title") or response.reason_phrase
            raise SourceError(f"BigCommerce answered HTTP {response.status_code} to {method} {path}: {title}")
        return response

    def _all(self, client: httpx.Client, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a small paged list (metafields), following ``meta.pagination``."""
        page = 1
        while True:
            body = json_object(
                self._request(client, "GET", path, missing_ok=True, params=params | {"page": page, "limit": 250})
            )
            yield from body.get("data") or []
            pagination = (body.get("meta") or {}).get("pagination") or {}
            if page >= pagination.get("total_pages", 1):
                return
            page += 1

    # --- reading ------------------------------------------------------------------------------

    def _pages(self, client: httpx.Client, limit: int) -> Iterator[list[dict[str, Any]]]:
        """The catalog's products in id order, a page at a time, paged by id (``id:greater``) rather
        than by page number: a product deleted during the run would shift the pages and hide another."""
        params: dict[str, Any] = {"include": "variants,images,custom_fields", "limit": limit,
                                  "sort": "id", "direction": "asc"}  # fmt: skip
        if self.config.channel:
            params["channel_id:in"] = str(self.config.channel.id)
        if self.state.get("dateModified"):
            params["date_modified:min"] = self.state["dateModified"]
        last_id, started = None, None
        while True:
            response = self._request(client, "GET", "/catalog/products",
                                     params=params | ({"id:greater": last_id} if last_id else {}))  # fmt: skip
            body = json_object(response)
            pagination = (body.get("meta") or {}).get("pagination") or {}
            products = body.get("data") or []
            if last_id is None:
                self.meter.total, started = pagination.get("total"), _server_time(response)
            self.meter.read += len(products)
            self._move_state(products, started)
            yield products
            if not products or pagination.get("total_pages", 1) <= 1:
                return
            last_id = products[-1]["id"]

    def _move_state(self, products: list[dict[str, Any]], started: datetime | None) -> None:
        """The newest ``date_modified`` read, but never past the run's start: a product changed
        during the run, on a page already read, has to come again next time."""
        for product in products:
            modified, newest = product.get("date_modified"), self.state.get("dateModified")
            if modified and (newest is None or _instant(modified) > _instant(newest)):
                self.state["dateModified"] = modified
        newest = self.state.get("dateModified")
        if newest and started and _instant(newest) > started:
            self.state["dateModified"] = started.isoformat()

    def _page_records(self, client: httpx.Client, products: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prices = self._prices(client, products)
        records = []
        for product in products:
            shared = self._product(client, product)
            variants = [self._variant(client, product, v) for v in product.get("variants") or []]
            for variant in variants:
                variant["prices"] = prices.get((product["id"], variant["id"]))
            if self.record_type == "product":
                records.append(_compact(shared | {
                    "objectID": str(product["id"]), "prices": prices.get((product["id"], None)),
                    "variants": [_compact({k: v for k, v in variant.items() if k != "image"}) for variant in variants],
                }))  # fmt: skip
                continue
            for variant in variants:
                variant_id, image = variant.pop("id"), variant.pop("image")
                records.append(_compact(shared | variant | {
                    "objectID": str(variant_id), "productID": product["id"], "variantID": variant_id,
                    "images": image + shared["images"],
                    "metafields": _merge(shared["metafields"], variant["metafields"]),
                }))  # fmt: skip
        return records

    def _product(self, client: httpx.Client, product: dict[str, Any]) -> dict[str, Any]:
        wanted = self.config.customFields
        custom: dict[str, list[Any]] = {}
        for custom_field in product.get("custom_fields") or []:
            if wanted is None or custom_field["name"] in wanted:
                custom.setdefault(custom_field["name"], []).append(custom_field["value"])
        images = sorted(product.get("images") or [], key=lambda i: (not i.get("is_thumbnail"), i.get("sort_order", 0)))
        return {
            "name": product.get("name"), "description": product.get("description"), "sku": product.get("sku"),
            "price": product.get("calculated_price", product.get("price")),
            "categories": product.get("categories") or [], "brand_id": product.get("brand_id"),
            "url": (product.get("custom_url") or {}).get("url"),
            "images": [i["url_standard"] for i in images if i.get("url_standard")],
            "inStock": _in_stock(product), "inventory_level": product.get("inventory_level"),
            "date_modified": product.get("date_modified"),
            # A name given twice keeps both values.
            "customFields": {name: values[0] if len(values) == 1 else values for name, values in custom.items()},
            "metafields": self._metafields(client, f"/catalog/products/{product['id']}", self.config.productMetafields),
        }  # fmt: skip

    def _variant(self, client: httpx.Client, product: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
        path = f"/catalog/products/{product['id']}/variants/{variant['id']}"
        return {
            "id": variant["id"], "sku": variant.get("sku"),
            "price": variant.get("calculated_price", variant.get("price")),
            "inStock": _in_stock(product, variant), "inventory_level": variant.get("inventory_level"),
            "options": {o["option_display_name"]: o["label"] for o in variant.get("option_values") or []},
            "image": [variant["image_url"]] if variant.get("image_url") else [],
            "metafields": self._metafields(client, path, self.config.variantMetafields),
        }  # fmt: skip

    def _metafields(self, client: httpx.Client, owner: str, wanted: list[BigCommerceMetafield] | None
                    ) -> dict[str, dict[str, Any]] | None:  # fmt: skip
        """The wanted metafields of a product or variant, as ``{namespace: {key: value}}``."""
        if not wanted:
            return None
        pairs = {(m.namespace, m.key) for m in wanted}
        # The :in filters narrow the answer; the exact pairs are kept here.
        params = {"namespace:in": ",".join(sorted({m.namespace for m in wanted})),
                  "key:in": ",".join(sorted({m.key for m in wanted}))}  # fmt: skip
        found: dict[str, dict[str, Any]] = {}
        for metafield in self._all(client, f"{owner}/metafields", params):
            if (metafield.get("namespace"), metafield.get("key")) in pairs:
                found.setdefault(metafield["namespace"], {})[metafield["key"]] = metafield.get("value")
        return found

    def _prices(self, client: httpx.Client, products: list[dict[str, Any]]) -> dict[tuple[int, int | None], dict]:
        """(product id, variant id or None) -> {currency: price} in the channel's ``currencies``."""
        channel = self.config.channel
        if not channel or not channel.currencies:
            return {}
        items = [{"product_id": p["id"]} for p in products] + [
            {"product_id": p["id"], "variant_id": v["id"]} for p in products for v in p.get("variants") or []
        ]
        prices: dict[tuple[int, int | None], dict[str, float]] = {}
        for currency in channel.currencies:
            for start in range(0, len(items), PRICE_BATCH):
                body = {"channel_id": channel.id, "currency_code": currency.upper(), "customer_group_id": 0,
                        "items": items[start : start + PRICE_BATCH]}  # fmt: skip
                answer = json_object(self._request(client, "POST", "/pricing/products", json=body))
                for price in answer.get("data") or []:
                    # Keyed by the item asked for: a product's answer names the variant priced.
                    asked = price.get("reference_request") or price
                    amount = (price.get("calculated_price") or price.get("price") or {}).get("as_entered")
                    prices.setdefault((asked["product_id"], asked.get("variant_id")), {})[currency.upper()] = amount
        return prices


def _in_stock(product: dict[str, Any], variant: dict[str, Any] | None = None) -> bool:
    """Purchasable now: not disabled, and with stock when the inventory is tracked."""
    if product.get("availability") == "disabled" or (variant or {}).get("purchasing_disabled"):
        return False
    tracking = product.get("inventory_tracking") or "none"
    if tracking == "none":
        return True
    holder = variant if variant is not None and tracking == "variant" else product
    return (holder.get("inventory_level") or 0) > 0


def _merge(first: dict | None, second: dict | None) -> dict | None:
    if first is None and second is None:
        return None
    merged = {namespace: dict(keys) for namespace, keys in (first or {}).items()}
    for namespace, keys in (second or {}).items():
        merged.setdefault(namespace, {}).update(keys)
    return merged


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _server_time(response: httpx.Response) -> datetime | None:
    """When the server answered (its ``Date``), less a second for the query before it (the header
    counts whole seconds)."""
    try:
        return parsedate_to_datetime(response.headers["Date"]) - timedelta(seconds=1)
    except (KeyError, TypeError, ValueError):
        return None
