"""A synthetic shop catalogue: row ``i`` is a pure function of ``(seed, i)``, so the CSV is
deterministic and any row's expected record can be rebuilt for the spot checks without the file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = ("sku", "name", "brand", "category", "color", "price", "stock", "in_stock", "updated_at", "description")
# The task's CSV mapping; every other column stays a string.
MAPPING = {"price": "float", "stock": "integer", "in_stock": "boolean"}
UNIQUE_ID = "sku"

ADJECTIVES = ("Compact", "Classic", "Modern", "Rustic", "Vintage", "Slim", "Deluxe", "Everyday", "Nordic", "Bold")
MATERIALS = ("Walnut", "Oak", "Steel", "Ceramic", "Linen", "Glass", "Bamboo", "Copper", "Wool", "Leather")
PRODUCTS = ("Desk Lamp", "Teapot", "Side Table", "Throw Pillow", "Wall Clock", "Mug Set", "Bookshelf",
            "Cutting Board", "Planter", "Rug", "Backpack", "Candle Holder", "Shelf Bracket", "Towel")  # fmt: skip
BRANDS = ("Hearthline", "Oakmoor", "Northwick", "Lumio", "Calder & Co", "Brightfold", "Tallow", "Kestrel")
CATEGORIES = ("Home/Lighting", "Kitchen/Tableware", "Furniture/Tables", "Home/Textiles", "Home/Decor",
              "Furniture/Storage", "Garden/Planters", "Bags/Everyday")  # fmt: skip
COLORS = ("black", "white", "sage", "navy", "ochre", "grey", "terracotta", "natural")
PHRASES = ("built to last", "easy to clean", "made in small batches", "a customer favourite",
           "ships in 2 days", "gift-ready packaging")  # fmt: skip

MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: well-spread bits from a counter."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def row(i: int, seed: int = 0) -> dict[str, str]:
    """Row ``i`` as the CSV holds it (every cell a string)."""
    a, b = _mix(seed * 0x1_0000_0000 + 2 * i), _mix(seed * 0x1_0000_0000 + 2 * i + 1)
    adjective, material = ADJECTIVES[a % 10], MATERIALS[(a >> 4) % 10]
    product, color = PRODUCTS[(a >> 8) % len(PRODUCTS)], COLORS[(a >> 12) % len(COLORS)]
    stock = 0 if (b % 10) == 0 else (b >> 4) % 500  # about 1 in 10 sold out
    day, second = (b >> 16) % 365, (b >> 25) % 86_400
    month, dom = divmod(day, 28)  # simple and always valid: 13 months of 28 days folded onto 12
    return {
        "sku": f"SKU-{i:08d}",
        "name": f"{adjective} {material} {product}",
        "brand": BRANDS[(a >> 16) % len(BRANDS)],
        "category": CATEGORIES[(a >> 20) % len(CATEGORIES)],
        "color": color,
        "price": f"{(a >> 24) % 50_000 / 100 + 1:.2f}",
        "stock": str(stock),
        "in_stock": "true" if stock else "false",
        "updated_at": f"2024-{month % 12 + 1:02d}-{dom + 1:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:"
        f"{second % 60:02d}Z",
        "description": f"{adjective} {product.lower()} in {color} {material.lower()}, {PHRASES[(b >> 42) % 6]}.",
    }


def expected_record(i: int, seed: int = 0) -> dict[str, Any]:
    """The record both loads must store for row ``i``: mapped columns typed, ``objectID`` = sku."""
    record: dict[str, Any] = row(i, seed)
    record["price"] = float(record["price"])
    record["stock"] = int(record["stock"])
    record["in_stock"] = record["in_stock"] == "true"
    record["objectID"] = record[UNIQUE_ID]
    return record


def write_csv(path: Path, rows: int, seed: int = 0) -> int:
    """Write ``rows`` rows (and a header) to ``path``; returns the file's size in bytes."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(row(i, seed).values() for i in range(rows))
    return path.stat().st_size
