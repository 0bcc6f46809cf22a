"""Synthetic documents: deterministic, distinct, a few hundred bytes of plain English each.

The load generator and the baseline process both call :func:`documents` with the same seed, so
they write exactly the same documents (ids, titles, texts).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

# Common words of business and technical writing; sentences drawn from them read like text and
# give the FTS5 tokenizer a realistic vocabulary (a few hundred terms, Zipf-ish by repetition).
WORDS = """
the the the the of of of and and and to to to a a a in in in is is for for on on that that with
with as as by by this this are be from at or an it its was were has have will not can more new
report market customer product service data system team project company year quarter growth
revenue cost price sales support model search index document query result user account policy
security access network server cloud storage release version update change issue request review
design process plan schedule budget risk quality performance latency throughput capacity region
country city office meeting decision board member manager engineer analyst partner vendor supply
contract agreement invoice payment order delivery shipment warehouse inventory demand forecast
energy water climate health research study trial patient hospital school student course teacher
library archive record history museum article paper journal author editor reader page chapter
section figure table chart summary abstract method finding evidence source reference citation
early late strong weak higher lower larger smaller faster slower stable recent previous annual
monthly weekly daily public private local global national regional internal external final
initial primary secondary critical minor major open closed pending active available required
increase reduce improve extend replace measure compare explain describe propose approve reject
publish announce expect include remain continue deliver support migrate deploy monitor index
rank filter match retrieve store compress encrypt verify audit train evaluate predict estimate
""".split()

SEED = 20261122


@dataclass(frozen=True)
class Doc:
    number: int
    document_id: str  # 40 hex characters: the sha1 the API expects
    title: str
    text: str


def document_id(seed: int, number: int) -> str:
    return hashlib.sha1(f"sluice-bench-documents-{seed}-{number}".encode()).hexdigest()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
    if len(words) > 10 and rng.random() < 0.4:
        words[rng.randint(3, len(words) - 4)] += ","
    return " ".join(words).capitalize() + "."


def make_doc(seed: int, number: int) -> Doc:
    """Document ``number`` of the run: 3-6 sentences (about 250-600 bytes) and a short title."""
    rng = random.Random(seed * 1_000_003 + number)
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize()
    text = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
    return Doc(number, document_id(seed, number), title, f"{text} Reference {seed}-{number}.")


def documents(count: int, seed: int = SEED, start: int = 0) -> Iterator[Doc]:
    for number in range(start, start + count):
        yield make_doc(seed, number)


def batch_body(docs: list[Doc]) -> bytes:
    """The JSON body of one POST .../document-batches (inline plain text)."""
    return orjson.dumps(
        {
            "documents": [
                {
                    "document_id": d.document_id,
                    "title": d.title,
                    "document_content": {"content_type": "text/plain", "from_": {"plain_text_string": d.text}},
                }
                for d in docs
            ]
        }
    )
