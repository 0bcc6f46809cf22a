"""The BigCommerce source against a local server speaking BigCommerce's v3 catalog API: pages and
chunks, product and variant records, custom fields, metafields, channels and currencies, an
incremental second run, rate limits, clear reasons for what goes wrong, and a whole connector task
run into a destination index."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.run_connector_task import run_connector_task
from sluice.errors import ConfigurationError
from sluice.settings import get_settings
from tasks.destinations import alias_name
from tasks.sources.base import SourceError
from tasks.sources.bigcommerce import BigCommerceSource
from tests.conftest import free_port
from tests.utils.bigcommerce_server import bigcommerce_server, product, variant
from tests.utils.connector_tasks import TENANT, create_shop, make_platform_task, run_summary, task_cursor


@pytest.fixture
def bc(sluice_env):
    with bigcommerce_server() as store:
        sluice_env(BIGCOMMERCE_API_URL=store.url)
        yield store


def source(bc, state: dict | None = None, record_type: str = "product", key: str | None = None, **config
           ) -> BigCommerceSource:  # fmt: skip
    src = BigCommerceSource({"storeHash": bc.store_hash, **config}, {"key": key or bc.token}, state=state)
    src.record_type = record_type
    src.validate_config()
    return src


def flat(chunks: list[list[dict]]) -> list[dict]:
    return [record for chunk in chunks for record in chunk]


def shirt(id: int = 1, **kwargs) -> dict:
    """A product with two tracked variants (sizes), the second out of stock."""
    return product(id, "Blue shirt", 20.0, inventory_tracking="variant", inventory_level=4, images=2, brand_id=7,
                   custom_fields={"Material": "cotton", "Care": "wash cold"}, variants=[
                       variant(id * 10 + 1, id, f"SHIRT-{id}-S", inventory_level=4, options={"Size": "S"}),
                       variant(id * 10 + 2, id, f"SHIRT-{id}-L", price=22.0, options={"Size": "L"})], **kwargs)  # fmt: skip


def test_products_are_read_page_by_page_in_chunks(bc):
    bc.products += [product(i, f"Item {i}", 1.0 + i) for i in range(7, 0, -1)]
    src = source(bc)
    fractions = []

    chunks = []
    for chunk in src.get_docs(chunk_size=3):
        chunks.append(chunk)
        fractions.append(src.progress())

    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r["objectID"] for r in flat(chunks)] == [str(i) for i in range(1, 8)]
    queries = bc.queries("/catalog/products")
    assert [q.get("id:greater") for q in queries] == [None, ["3"], ["6"]]  # paged by id, not by page number
    assert {q["limit"][0] for q in queries} == {"3"} and {q["sort"][0] for q in queries} == {"id"}
    assert queries[0]["include"] == ["variants,images,custom_fields"] and "channel_id:in" not in queries[0]
    assert fractions == [pytest.approx(3 / 7), pytest.approx(6 / 7), 1.0]


def test_a_product_deleted_during_a_run_hides_no_other(bc):
    bc.products += [product(i, f"Item {i}", 1.0) for i in range(1, 6)]
    chunks = BigCommerceSource({"storeHash": bc.store_hash}, {"key": bc.token}).get_docs(chunk_size=2)

    first = next(chunks)
    del bc.products[0]

    assert [r["objectID"] for r in first + flat(list(chunks))] == ["1", "2", "3", "4", "5"]


def test_a_product_record_keeps_its_fields_variants_and_custom_fields(bc):
    bc.products.append(shirt(sale_price=18.0))

    (record,) = flat(source(bc).get_docs(100))

    assert record == {
        "objectID": "1", "name": "Blue shirt", "description": "<p>Blue shirt</p>", "sku": "P-1", "price": 18.0,
        "categories": [23], "brand_id": 7, "url": "/blue-shirt/", "inStock": True, "inventory_level": 4,
        "images": ["https://cdn.example/1/0.standard.jpg", "https://cdn.example/1/1.standard.jpg"],
        "date_modified": "2024-01-01T00:00:00+00:00",
        "customFields": {"Material": "cotton", "Care": "wash cold"},
        "variants": [
            {"id": 11, "sku": "SHIRT-1-S", "price": 18.0, "inStock": True, "inventory_level": 4, "options": {"Size": "S"}},
            {"id": 12, "sku": "SHIRT-1-L", "price": 22.0, "inStock": False, "inventory_level": 0, "options": {"Size": "L"}},
        ],
    }  # fmt: skip


def test_variant_records_have_the_variant_id_as_object_id(bc):
    bc.products += [shirt(1), product(2, "Mug", 5.0)]

    records = flat(source(bc, record_type="variant").get_docs(2))

    assert [r["objectID"] for r in records] == ["11", "12", "20"]
    large = records[1]
    assert large["productID"] == 1 and large["variantID"] == 12 and large["sku"] == "SHIRT-1-L"
    assert large["price"] == 22.0 and large["inStock"] is False and large["options"] == {"Size": "L"}
    assert large["name"] == "Blue shirt" and large["customFields"]["Material"] == "cotton"
    assert records[2]["inStock"] is True  # no inventory tracking: in stock while available


def test_in_stock_follows_availability_and_tracked_inventory(bc):
    bc.products += [product(1, "Tracked, none left", 1.0, inventory_tracking="product", inventory_level=0),
                    product(2, "Tracked, in stock", 1.0, inventory_tracking="product", inventory_level=3),
                    product(3, "Disabled", 1.0, availability="disabled")]  # fmt: skip

    assert [r["inStock"] for r in flat(source(bc).get_docs(10))] == [False, True, False]


def test_only_the_named_custom_fields_are_kept(bc):
    bc.products += [shirt(1), product(2, "Poster", 3.0, custom_fields={"Care": "dry"})]
    bc.products[0]["custom_fields"].append({"id": 9, "name": "Material", "value": "linen"})

    records = flat(source(bc, customFields=["Material"]).get_docs(10))

    assert [r["customFields"] for r in records] == [{"Material": ["cotton", "linen"]}, {}]


def test_only_the_named_metafields_are_read_for_products_and_variants(bc):
    bc.products.append(shirt(1))
    bc.add_metafield(1, "specs", "weight", "200g")
    bc.add_metafield(1, "specs", "secret", "x")  # a key of another namespace wanted: not this pair
    bc.add_metafield(1, "seo", "weight", "y")
    bc.add_metafield(1, "seo", "title", "Shirt!")
    bc.add_metafield(1, "fit", "chest", "96cm", variant_id=11)
    config = {"productMetafields": [{"namespace": "specs", "key": "weight"}, {"namespace": "seo", "key": "title"}],
              "variantMetafields": [{"namespace": "fit", "key": "chest"}]}  # fmt: skip

    (record,) = flat(source(bc, **config).get_docs(10))
    variants = flat(source(bc, record_type="variant", **config).get_docs(10))

    assert record["metafields"] == {"specs": {"weight": "200g"}, "seo": {"title": "Shirt!"}}
    assert [v["metafields"] for v in record["variants"]] == [{"fit": {"chest": "96cm"}}, {}]
    assert variants[0]["metafields"] == {
        "specs": {"weight": "200g"},
        "seo": {"title": "Shirt!"},
        "fit": {"chest": "96cm"},
    }
    assert bc.queries("/products/1/metafields")[0]["namespace:in"] == ["seo,specs"]
    assert bc.queries("/variants/12/metafields")  # every variant is asked


def test_a_channel_keeps_its_products_and_prices_them_in_its_currencies(bc):
    bc.products += [shirt(1), product(2, "Mug", 5.0), product(3, "Lamp", 30.0)]
    bc.channels = {2: [1, 3]}
    bc.rates = {"USD": 1.0, "EUR": 0.5}

    records = flat(source(bc, channel={"id": 2, "currencies": ["usd", "EUR"]}).get_docs(10))

    assert [r["objectID"] for r in records] == ["1", "3"]
    assert records[0]["prices"] == {"USD": 20.0, "EUR": 10.0}
    assert [v["prices"] for v in records[0]["variants"]] == [{"USD": 20.0, "EUR": 10.0}, {"USD": 22.0, "EUR": 11.0}]
    assert bc.queries("/catalog/products")[0]["channel_id:in"] == ["2"]


def test_a_second_run_reads_only_products_modified_since_the_first(bc):
    bc.products += [product(1, "Old", 1.0, modified="2024-01-01T10:00:00+00:00"),
                    product(2, "Newest", 1.0, modified="2024-02-01T10:00:00+00:00")]  # fmt: skip
    first = source(bc)
    assert len(flat(first.get_docs(10))) == 2
    assert first.state == {"dateModified": "2024-02-01T10:00:00+00:00"}

    bc.products.append(product(3, "Added", 1.0, modified="2024-03-01T10:00:00+00:00"))
    second = source(bc, state=first.state)
    records = flat(second.get_docs(10))

    assert bc.queries("/catalog/products")[-1]["date_modified:min"] == ["2024-02-01T10:00:00+00:00"]
    assert [r["objectID"] for r in records] == ["2", "3"]  # :min is inclusive: the newest of last time comes again
    assert second.state == {"dateModified": "2024-03-01T10:00:00+00:00"}


def test_the_state_never_passes_the_start_of_the_run(bc):
    bc.products += [product(i, f"Item {i}", 1.0) for i in range(1, 4)]
    src = source(bc)
    chunks = src.get_docs(chunk_size=1)

    next(chunks)
    changed = datetime.now(UTC).isoformat(timespec="seconds")
    bc.products[2]["date_modified"] = changed  # a change during the run, read on its later page
    list(chunks)

    # The next run starts no later than the run did, so a change to a page already read comes again.
    assert src.state["dateModified"] < changed


def test_rate_limited_requests_wait_and_retry(bc):
    bc.products.append(product(1, "Item", 1.0))
    bc.throttle = 2

    assert [r["objectID"] for r in flat(source(bc).get_docs(10))] == ["1"]
    assert len(bc.queries("/catalog/products")) == 3


def test_a_bad_api_key_is_refused(bc):
    src = source(bc, key="stolen")

    with pytest.raises(SourceError, match="^BigCommerce refused the API key$"):
        src.check_connection()
    with pytest.raises(SourceError, match="^BigCommerce refused the API key$"):
        list(src.get_docs(10))


def test_an_unknown_store_and_an_unreachable_api_fail_with_a_reason(bc, sluice_env):
    with pytest.raises(SourceError, match="no store 'nope'"):
        BigCommerceSource({"storeHash": "nope"}, {"key": bc.token}).check_connection()
    source(bc).check_connection()

    sluice_env(BIGCOMMERCE_API_URL=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceError, match="cannot reach BigCommerce"):
        list(source(bc).get_docs(10))


def test_an_api_key_authentication_is_required():
    with pytest.raises(ConfigurationError, match="authenticationID"):
        BigCommerceSource({"storeHash": "abc"}, {"username": "u"}).validate_config()


@pytest.mark.usefixtures("prefect_api")
def test_a_connector_task_syncs_the_catalog_and_then_only_the_changed_products(bc, flow_engine, sluice_env,
                                                                                monkeypatch):  # fmt: skip
    sluice_env(CONNECTOR_CHUNK_SIZE="2")
    # Not in the registry yet: registered here, as the registry line will.
    url = get_settings().database_url
    create_shop(url)
    bc.products += [shirt(1), product(2, "Mug", 5.0), product(3, "Lamp", 30.0, modified="2024-02-01T00:00:00+00:00")]
    bc.add_metafield(1, "specs", "weight", "200g")
    task_id = make_platform_task(url, auth_type="apiKey", auth_input={"key": bc.token}, source_type="bigcommerce",
                                 source_input={"storeHash": bc.store_hash, "customFields": ["Material"],
                                               "productMetafields": [{"namespace": "specs", "key": "weight"}]},
                                 index="Catalog", action="save", record_type="variant")  # fmt: skip

    first = run_connector_task(task_id=task_id, return_state=True)
    bc.products.append(product(4, "Vase", 12.0, modified="2024-03-01T00:00:00+00:00"))
    second = run_connector_task(task_id=task_id, return_state=True)

    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    # One record per variant (the destination's recordType); the second run reads from the saved
    # state on (inclusive: the newest product of the first run comes again).
    assert run_summary(url, first)["rows"] == 4 and run_summary(url, second)["rows"] == 2
    assert task_cursor(url, task_id) == {"dateModified": "2024-03-01T00:00:00+00:00"}
    alias = alias_name(TENANT, "Catalog")
    assert flow_engine.count(alias) == 5
    large = flow_engine.get(alias, "12")
    assert (
        large["sku"] == "SHIRT-1-L"
        and large["name"] == "Blue shirt"
        and large["customFields"] == {"Material": "cotton"}
    )
    assert large["metafields"] == {"specs": {"weight": "200g"}} and large["options"] == {"Size": "L"}
