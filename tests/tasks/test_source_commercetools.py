"""The commercetools source against the real ``commercetools`` package's testing backend over HTTP
(products created through the official SDK): chunks and cursor paging, locales, product and variant
records, stock, stores, an incremental second run, clear reasons for what goes wrong, and a whole
connector task run into a destination index."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from commercetools.platform import models

from flows.run_connector_task import run_connector_task
from sluice.errors import ConfigurationError
from sluice.settings import get_settings
from tasks.destinations import alias_name
from tasks.sources.base import SourceError
from tasks.sources.commercetools import CommercetoolsSource
from tests.conftest import free_port
from tests.utils.commercetools_server import PROJECT_KEY, commercetools_server
from tests.utils.connector_tasks import TENANT, create_shop, make_platform_task, run_summary, task_cursor

LS = models.LocalizedString


@pytest.fixture
def ct():
    with commercetools_server() as server:
        yield server


def secret(ct, client_secret: str = "s3cret") -> dict:
    return {"url": ct.url, "client_id": "sluice", "client_secret": client_secret}


def source(ct, state: dict | None = None, record_type: str = "product", **config) -> CommercetoolsSource:
    src = CommercetoolsSource({"url": ct.url, "projectKey": PROJECT_KEY, **config}, secret(ct), state=state)
    src.record_type = record_type
    src.validate_config()
    return src


def add(ct, name: str, *skus: str, publish: bool = True, prices: tuple[int, ...] = (1000,)) -> str:
    """A product with one variant per sku (the first is the master), priced in EUR cents."""
    variants = [models.ProductVariantDraft(
        sku=sku, prices=[models.PriceDraft(value=models.Money(cent_amount=prices[i % len(prices)], currency_code="EUR"))],
        images=[models.Image(url=f"https://img.example/{sku}.png", dimensions=models.ImageDimensions(w=1, h=1))],
        attributes=[models.Attribute(name="size", value=f"S{i}")]) for i, sku in enumerate(skus)]  # fmt: skip
    draft = models.ProductDraft(
        product_type=models.ProductTypeResourceIdentifier(key="goods"), key=name.lower().replace(" ", "-"),
        name=LS({"en": name, "de": f"{name} (de)", "fr-FR": f"{name} (fr)"}), slug=LS({"en": name.lower()}),
        description=LS({"en": f"About {name}"}), categories=[models.CategoryResourceIdentifier(id="cat-1")],
        master_variant=variants[0] if variants else None, variants=variants[1:], publish=publish)  # fmt: skip
    return ct.add_product(draft).id


def read(src: CommercetoolsSource, chunk_size: int = 100) -> list[list[dict]]:
    return list(src.get_docs(chunk_size))


def flat(chunks: list[list[dict]]) -> list[dict]:
    return [record for chunk in chunks for record in chunk]


def test_published_products_are_read_in_chunks_by_a_modification_cursor(ct):
    ids = [add(ct, f"Item {i}", f"SKU-{i}") for i in range(5)]
    add(ct, "Draft", "SKU-draft", publish=False)
    src = source(ct)

    chunks = read(src, chunk_size=2)

    assert [len(c) for c in chunks] == [2, 2, 1]
    records = flat(chunks)
    assert [r["objectID"] for r in records] == ids  # oldest change first, the unpublished one left out
    queries = ct.queries("/product-projections")
    assert [q["limit"] for q in queries] == [["2"]] * 3
    assert queries[0]["sort"] == ["lastModifiedAt asc", "id asc"] and "where" not in queries[0]
    modified = records[1]["lastModifiedAt"]
    assert queries[1]["where"] == [
        f'lastModifiedAt > "{modified}" or (lastModifiedAt = "{modified}" and id > "{ids[1]}")'
    ]
    assert src.progress() == 1.0


def test_a_product_changed_during_a_run_is_read_again_before_the_end(ct):
    ids = [add(ct, f"Item {i}", f"SKU-{i}") for i in range(3)]
    src = source(ct)
    chunks = src.get_docs(chunk_size=1)

    first = next(chunks)
    stored = ct.repository.products.model.objects[UUID(ids[0])]  # a change, as the API would record it
    stored["lastModifiedAt"] = datetime.now(UTC).isoformat()
    rest = flat(list(chunks))

    assert [r["objectID"] for r in first + rest] == [*ids, ids[0]]
    assert src.state == {"lastModifiedAt": rest[-1]["lastModifiedAt"]}


def test_a_product_record_maps_names_prices_images_attributes_and_variants(ct):
    product_id = add(ct, "Kettle", "K-1", "K-2", prices=(1950, 2500))

    (record,) = flat(read(source(ct)))

    assert record.pop("createdAt") and record.pop("lastModifiedAt")
    assert record == {
        "objectID": product_id, "key": "kettle",
        "name": {"en": "Kettle", "de": "Kettle (de)", "fr-FR": "Kettle (fr)"},
        "description": {"en": "About Kettle"}, "slug": {"en": "kettle"}, "categories": ["cat-1"],
        "sku": "K-1", "skus": ["K-1", "K-2"], "prices": {"EUR": {"min": 19.5, "max": 25.0}},
        "images": ["https://img.example/K-1.png", "https://img.example/K-2.png"],
        "attributes": {"size": "S0"}, "inStock": True,
        "variants": [{"id": 1, "sku": "K-1", "prices": {"EUR": 19.5}, "inStock": True, "attributes": {"size": "S0"}},
                     {"id": 1, "sku": "K-2", "prices": {"EUR": 25.0}, "inStock": True, "attributes": {"size": "S1"}}],
    }  # fmt: skip


def test_localized_fields_keep_only_the_configured_locales(ct):
    add(ct, "Kettle", "K-1")

    (record,) = flat(read(source(ct, locales=["de", "fr-FR"])))

    assert record["name"] == {"de": "Kettle (de)", "fr-FR": "Kettle (fr)"}
    assert record["description"] == {} and record["slug"] == {}


def test_variant_records_have_their_sku_as_object_id_and_their_own_price(ct):
    product_id = add(ct, "Kettle", "K-1", "K-2", prices=(1950, 2500))
    add(ct, "Mug", "M-1")

    records = flat(read(source(ct, record_type="variant"), chunk_size=2))

    assert sorted(r["objectID"] for r in records) == ["K-1", "K-2", "M-1"]
    k2 = next(r for r in records if r["objectID"] == "K-2")
    assert k2["productID"] == product_id and k2["isMasterVariant"] is False
    assert k2["prices"] == {"EUR": 25.0} and k2["images"] == ["https://img.example/K-2.png"]
    assert k2["name"]["en"] == "Kettle" and k2["attributes"] == {"size": "S1"} and k2["inStock"] is True


def test_in_stock_comes_from_availability_else_from_the_fallback(ct):
    now = datetime.now(UTC)
    variant = models.ProductVariant(id=1, sku="A-1", availability=models.ProductVariantAvailability(
        is_on_stock=False, channels=models.ProductVariantChannelAvailabilityMap(
            {"store-1": models.ProductVariantChannelAvailability(id="inv-1", version=1, is_on_stock=True, available_quantity=3)})))  # fmt: skip
    data = models.ProductData(name=LS({"en": "Stocked"}), categories=[], slug=LS({"en": "stocked"}),
                              master_variant=variant, variants=[models.ProductVariant(id=2, sku="A-2",
                              availability=models.ProductVariantAvailability(is_on_stock=False))],
                              search_keywords=models.SearchKeywords())  # fmt: skip
    ct.add_existing(models.Product(
        id="00000000-0000-4000-8000-000000000001", version=1, created_at=now, last_modified_at=now,
        product_type=models.ProductTypeReference(id="goods"),
        master_data=models.ProductCatalogData(published=True, current=data, staged=data, has_staged_changes=False)))  # fmt: skip
    add(ct, "No inventory", "N-1")

    by_sku = {
        r["objectID"]: r["inStock"] for r in flat(read(source(ct, fallbackIsInStockValue=False, record_type="variant")))
    }

    assert by_sku == {"A-1": True, "A-2": False, "N-1": False}  # a channel with stock counts; no data: fallback


def test_a_second_run_reads_only_products_modified_since_the_first(ct):
    add(ct, "Old 1", "O-1")
    add(ct, "Old 2", "O-2")
    first = source(ct)
    assert len(flat(read(first))) == 2
    assert set(first.state) == {"lastModifiedAt"}

    new_id = add(ct, "New", "N-1")
    second = source(ct, state=first.state)
    records = flat(read(second))

    assert [r["objectID"] for r in records] == [new_id]
    assert second.state["lastModifiedAt"] == records[0]["lastModifiedAt"] > first.state["lastModifiedAt"]
    third = source(ct, state=second.state)
    assert read(third) == [] and third.state == second.state  # nothing new: the state stays


def test_store_keys_limit_the_products_to_the_stores_selections(ct):
    a, b, _ = add(ct, "A", "A-1"), add(ct, "B", "B-1"), add(ct, "Elsewhere", "E-1")
    ct.assignments.update({"eu": [a, b, a], "us": [b]})

    records = flat(read(source(ct, storeKeys=["eu", "us"])))

    assert {r["objectID"]: r["stores"] for r in records} == {a: ["eu"], b: ["eu", "us"]}
    with pytest.raises(SourceError, match="no store 'mars'"):
        read(source(ct, storeKeys=["mars"]))


def test_check_connection_logs_in_and_reads_the_project(ct):
    source(ct).check_connection()
    with pytest.raises(SourceError, match="no project 'elsewhere'"):
        CommercetoolsSource({"url": ct.url, "projectKey": "elsewhere"}, secret(ct)).check_connection()


def test_bad_credentials_are_refused(ct):
    src = CommercetoolsSource({"url": ct.url, "projectKey": PROJECT_KEY}, secret(ct, "wrong"))

    with pytest.raises(SourceError, match="^commercetools refused the credentials$"):
        src.check_connection()
    with pytest.raises(SourceError, match="^commercetools refused the credentials$"):
        read(src)


def test_an_unreachable_server_fails_with_a_reason(ct):
    dead = f"http://localhost:{free_port()}"
    with pytest.raises(SourceError, match="cannot reach the commercetools auth server"):
        read(CommercetoolsSource({"url": ct.url, "projectKey": PROJECT_KEY}, secret(ct) | {"url": dead}))
    with pytest.raises(SourceError, match="cannot reach commercetools at"):
        read(CommercetoolsSource({"url": dead, "projectKey": PROJECT_KEY}, secret(ct)))


def test_an_oauth_authentication_is_required():
    with pytest.raises(ConfigurationError, match="authenticationID"):
        CommercetoolsSource({"url": "https://api.example", "projectKey": "p"}, {"key": "k"}).validate_config()


@pytest.mark.usefixtures("prefect_api")
def test_a_connector_task_syncs_the_products_and_then_only_the_changed_ones(ct, flow_engine, sluice_env, monkeypatch):
    sluice_env(CONNECTOR_CHUNK_SIZE="2")
    # Not in the registry yet: registered here, as the registry line will.
    url = get_settings().database_url
    create_shop(url)
    ids = [add(ct, f"Item {i}", f"SKU-{i}") for i in range(3)]
    task_id = make_platform_task(url, auth_type="oauth", auth_input=secret(ct), source_type="commercetools",
                                 source_input={"url": ct.url, "projectKey": PROJECT_KEY, "locales": ["en"]},
                                 index="Catalog", action="save")  # fmt: skip

    first = run_connector_task(task_id=task_id, return_state=True)
    new_id = add(ct, "Item 3", "SKU-3")
    second = run_connector_task(task_id=task_id, return_state=True)

    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    assert run_summary(url, first)["rows"] == 3 and run_summary(url, second)["rows"] == 1
    alias = alias_name(TENANT, "Catalog")
    assert flow_engine.count(alias) == 4
    record = flow_engine.get(alias, ids[1])
    assert record["objectID"] == ids[1] and record["sku"] == "SKU-1"
    assert record["name"] == {"en": "Item 1"} and record["prices"] == {"EUR": {"min": 10.0, "max": 10.0}}
    assert task_cursor(url, task_id) == {"lastModifiedAt": flow_engine.get(alias, new_id)["lastModifiedAt"]}
