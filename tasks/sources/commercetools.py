"""commercetools: the published product projections of a project, read over its HTTP API after an
OAuth client-credentials login (the source's ``oauth`` authentication: url, client_id,
client_secret).

One record per product, or per variant when ``record_type`` is "variant" (the destination's
``recordType``, set by the flow). Localized fields keep only the configured ``locales`` (all when
none are given). With ``storeKeys``, only the products of those stores' product selections are
kept, each record naming its ``stores``. ``state`` holds the newest ``lastModifiedAt`` read; the
next run reads only products modified after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import httpx

from sluice.connectors import SourceCommercetools
from tasks.sources.base import Source, SourceError, json_object, require

PAGE_LIMIT = 500  # the API's largest page
TIMEOUT = 30.0
LOCALE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")


class CommercetoolsSource(Source):
    source_type = "commercetools"
    config_model = SourceCommercetools

    def validate_config(self) -> None:
        require(all(self.secret.get(k) for k in ("url", "client_id", "client_secret")), "authenticationID",
                "a commercetools source needs an oauth authentication (url, client_id, client_secret)")  # fmt: skip
        require(self.record_type in ("product", "variant"), "recordType", "must be product or variant")

    def check_connection(self) -> None:
        with self._client() as client:
            self._get(client, f"/{self.config.projectKey}", {})

    def get_docs(self, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
        self.state = dict(self.state or {})
        with self._client() as client:
            members = self._store_members(client) if self.config.storeKeys else None
            products = self._products(client, min(chunk_size, PAGE_LIMIT))
            if members is not None:  # a store's products: those of its product selections
                products = (p for p in products if p["id"] in members)
            records = (record for product in products for record in self._records(product, members or {}))
            while chunk := list(islice(records, chunk_size)):
                yield chunk

    # --- HTTP ---------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        """A client on the API host, logged in (client credentials, Basic auth as the API asks)."""
        token_url = self.secret["url"].rstrip("/")
        token_url += "" if token_url.endswith("/oauth/token") else "/oauth/token"
        login = (self.secret["client_id"], self.secret["client_secret"])
        try:
            response = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=login, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach the commercetools auth server at {token_url}: {exc}") from None
        if response.status_code in (400, 401, 403):  # invalid_client (or a malformed id)
            raise SourceError("commercetools refused the credentials")
        if response.is_error or "access_token" not in json_object(response):
            raise SourceError(f"the commercetools auth server at {token_url} answered HTTP {response.status_code}")
        return httpx.Client(base_url=self.config.url.rstrip("/"), timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {response.json()['access_token']}"})  # fmt: skip

    def _get(self, client: httpx.Client, path: str, params: dict[str, Any], missing: str | None = None
             ) -> dict[str, Any]:  # fmt: skip
        try:
            response = client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach commercetools at {self.config.url}: {exc}") from None
        if response.status_code == 401:
            raise SourceError("commercetools refused the credentials")
        if response.status_code == 404:
            raise SourceError(missing or f"commercetools has no project {self.config.projectKey!r}")
        if response.status_code == 403:
            raise SourceError(f"the commercetools API client may not read {path} ({_message(response)}): "
                              f"give it the view_products scope of project {self.config.projectKey!r}")  # fmt: skip
        if response.is_error:
            raise SourceError(f"commercetools answered HTTP {response.status_code} to {path}: {_message(response)}")
        return json_object(response)

    # --- reading ------------------------------------------------------------------------------

    def _products(self, client: httpx.Client, limit: int) -> Iterator[dict[str, Any]]:
        """The published products modified after the state, in (lastModifiedAt, id) order, paged by
        that cursor (offset paging stops at 10,000). A product changed during the run moves behind
        the cursor and is read again, so the newest lastModifiedAt read is where the next run starts."""
        cursor: tuple[str, str] | None = None
        while True:
            if cursor is None:
                since = self.state.get("lastModifiedAt")
                where = [f"lastModifiedAt > {json.dumps(since)}"] if since else []
            else:
                modified, last_id = (json.dumps(value) for value in cursor)
                where = [f"lastModifiedAt > {modified} or (lastModifiedAt = {modified} and id > {last_id})"]
            params = {"where": where, "sort": ["lastModifiedAt asc", "id asc"], "limit": limit,
                      "withTotal": cursor is None, "staged": False}  # fmt: skip
            page = self._get(client, f"/{self.config.projectKey}/product-projections", params)
            results = page.get("results") or []
            if cursor is None:
                self.meter.total = page.get("total")
            self.meter.read += len(results)
            for product in results:
                newest = self.state.get("lastModifiedAt")
                if newest is None or _instant(product["lastModifiedAt"]) > _instant(newest):
                    self.state["lastModifiedAt"] = product["lastModifiedAt"]
                yield product
            if len(results) < limit:
                return
            last = (results[-1]["lastModifiedAt"], results[-1]["id"])
            if cursor is not None and (_instant(last[0]), last[1]) <= (_instant(cursor[0]), cursor[1]):
                raise SourceError(f"commercetools at {self.config.url} ignored the cursor of a product query")
            cursor = last

    def _store_members(self, client: httpx.Client) -> dict[str, list[str]]:
        """product id -> the configured stores whose active product selections hold it."""
        members: dict[str, list[str]] = {}
        project = self.config.projectKey
        for store in self.config.storeKeys or []:
            offset = 0
            while True:
                page = self._get(client, f"/{project}/in-store/key={store}/product-selection-assignments",
                                 {"limit": PAGE_LIMIT, "offset": offset, "withTotal": False},
                                 missing=f"commercetools has no store {store!r} in project {project!r}")  # fmt: skip
                results = page.get("results") or []
                for assignment in results:
                    stores = members.setdefault(assignment["product"]["id"], [])
                    if store not in stores:  # a product in two selections of one store is listed twice
                        stores.append(store)
                if len(results) < PAGE_LIMIT:
                    break
                offset += PAGE_LIMIT
        return members

    # --- records ------------------------------------------------------------------------------

    def _records(self, product: dict[str, Any], members: dict[str, list[str]]) -> Iterator[dict[str, Any]]:
        variants = [v for v in [product.get("masterVariant"), *(product.get("variants") or [])] if v]
        shared = {
            "key": product.get("key"),
            "name": self._localize(product.get("name")),
            "description": self._localize(product.get("description")),
            "slug": self._localize(product.get("slug")),
            "categories": [c["id"] for c in product.get("categories") or []],
            "createdAt": product.get("createdAt"),
            "lastModifiedAt": product.get("lastModifiedAt"),
            "stores": members.get(product["id"]),
        }
        if self.record_type == "variant":
            for variant in variants:
                yield _compact({
                    "objectID": variant.get("sku") or f"{product['id']}-{variant.get('id')}",
                    "productID": product["id"], "variantID": variant.get("id"),
                    "isMasterVariant": variant is variants[0], **shared, **self._variant(variant)})  # fmt: skip
            return
        shaped = [self._variant(v) for v in variants]
        prices: dict[str, dict[str, float]] = {}
        for variant in shaped:
            for currency, amount in variant["prices"].items():
                span = prices.setdefault(currency, {"min": amount, "max": amount})
                span["min"], span["max"] = min(span["min"], amount), max(span["max"], amount)
        master = shaped[0] if shaped else {}
        yield _compact({
            "objectID": product["id"], **shared,
            "sku": master.get("sku"), "skus": [v["sku"] for v in shaped if v.get("sku")],
            "prices": prices,
            "images": list(dict.fromkeys(url for v in shaped for url in v["images"])),
            "attributes": master.get("attributes", {}),
            "inStock": any(v["inStock"] for v in shaped) if shaped else self.config.fallbackIsInStockValue,
            "variants": [{k: v[k] for k in ("id", "sku", "prices", "inStock", "attributes") if k in v} for v in shaped],
        })  # fmt: skip

    def _variant(self, variant: dict[str, Any]) -> dict[str, Any]:
        prices: dict[str, float] = {}  # the lowest price per currency
        for price in variant.get("prices") or []:
            value = price["value"]
            amount = value["centAmount"] / 10 ** value.get("fractionDigits", 2)
            prices[value["currencyCode"]] = min(prices.get(value["currencyCode"], amount), amount)
        return _compact({"id": variant.get("id"), "sku": variant.get("sku")}) | {
            "prices": prices,
            "images": [image["url"] for image in variant.get("images") or []],
            "attributes": {a["name"]: self._localize(a.get("value")) for a in variant.get("attributes") or []},
            "inStock": self._in_stock(variant),
        }

    def _in_stock(self, variant: dict[str, Any]) -> bool:
        """From the inventory ``availability`` (any channel), else the configured fallback."""
        availability = variant.get("availability") or {}
        channels = (availability.get("channels") or {}).values()
        known = [k for k in [availability.get("isOnStock"), *(c.get("isOnStock") for c in channels)] if k is not None]
        return any(known) if known else self.config.fallbackIsInStockValue

    def _localize(self, value: Any) -> Any:
        """A localized string (or one nested in an attribute) with only the configured locales."""
        if isinstance(value, list):
            return [self._localize(v) for v in value]
        if not isinstance(value, dict):
            return value
        if value and self.config.locales is not None and all(LOCALE.match(k) for k in value):
            return {k: v for k, v in value.items() if k in self.config.locales}
        return {k: self._localize(v) for k, v in value.items()}


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _message(response: httpx.Response) -> str:
    return json_object(response).get("message") or response.reason_phrase
