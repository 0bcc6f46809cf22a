"""Text extraction on real documents: PDFs made with fpdf2 (and encrypted with pypdf), HTML
pages from tests/tasks/fixtures, text in several encodings, and binary files."""

from __future__ import annotations

import gzip
import io
import pickle
import random
import time
import zipfile

import pytest

from tasks.extract import (
    CONTENT_TYPE_MISMATCH,
    CORRUPT_CONTENT,
    EMPTY_CONTENT,
    ENCRYPTED_CONTENT,
    UNDECODABLE_CONTENT,
    UNSUPPORTED_CONTENT_TYPE,
    Extracted,
    ExtractionError,
    extract_text,
    parse_content_type,
)
from tests.tasks.fixtures.documents import encrypt_pdf, make_pdf, read_fixture

PAGES = [
    "First page: the Danube reaches the Black Sea.",
    "Second page: the Rhine flows north to the sea.",
    "Third page: the Loire is the longest river in France.",
]

# A real 1x1 PNG.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture(scope="module")
def report_pdf() -> bytes:
    return make_pdf(PAGES, title="Rivers of Europe")


def _error(content: bytes, content_type: str | None, **kwargs) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract_text(content, content_type, **kwargs)
    return caught.value


def _zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


# --- PDF --------------------------------------------------------------------------------------


def test_extract_pdf_every_page_in_order_with_title(report_pdf: bytes):
    result = extract_text(report_pdf, "application/pdf")

    assert result.content_type == "application/pdf"
    assert result.title == "Rivers of Europe"
    assert result.truncated is False
    positions = [result.text.index(page) for page in PAGES]
    assert positions == sorted(positions)
    assert result.text == "\n\n".join(PAGES)


def test_extract_pdf_without_title_has_none():
    result = extract_text(make_pdf(["Only a page."]), "application/pdf")

    assert result.title is None
    assert result.text == "Only a page."


@pytest.mark.parametrize("content_type", [None, "", "application/octet-stream", "binary/octet-stream"])
def test_extract_pdf_sniffed_when_type_unknown(report_pdf: bytes, content_type: str | None):
    result = extract_text(report_pdf, content_type)

    assert result.content_type == "application/pdf"
    assert result.title == "Rivers of Europe"


def test_extract_pdf_alias_content_type_normalised(report_pdf: bytes):
    assert extract_text(report_pdf, "Application/X-PDF").content_type == "application/pdf"


def test_extract_pdf_declared_as_html_is_mismatch(report_pdf: bytes):
    error = _error(report_pdf, "text/html; charset=utf-8")

    assert error.code == CONTENT_TYPE_MISMATCH
    assert "application/pdf" in str(error)


def test_extract_pdf_declared_as_text_is_mismatch(report_pdf: bytes):
    assert _error(report_pdf, "text/plain").code == CONTENT_TYPE_MISMATCH


def test_extract_html_declared_as_pdf_is_mismatch():
    error = _error(read_fixture("article.html"), "application/pdf")

    assert error.code == CONTENT_TYPE_MISMATCH
    assert "text/html" in str(error)


def test_extract_pdf_with_user_password_is_refused(report_pdf: bytes):
    locked = encrypt_pdf(report_pdf, user_password="s3cret", owner_password="owner")

    error = _error(locked, "application/pdf")

    assert error.code == ENCRYPTED_CONTENT


def test_extract_pdf_with_rc4_user_password_is_refused(report_pdf: bytes):
    locked = encrypt_pdf(report_pdf, user_password="s3cret", owner_password="owner", algorithm="RC4-128")

    assert _error(locked, "application/pdf").code == ENCRYPTED_CONTENT


def test_extract_pdf_with_owner_password_only_is_read(report_pdf: bytes):
    # Encrypted to restrict editing, but opens without a password, as in any PDF viewer.
    restricted = encrypt_pdf(report_pdf, user_password="", owner_password="owner", algorithm="AES-128")
    assert b"/Encrypt" in restricted

    result = extract_text(restricted, "application/pdf")

    assert result.text == "\n\n".join(PAGES)
    assert result.title == "Rivers of Europe"


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_extract_pdf_truncated_file_is_corrupt(report_pdf: bytes, cut: float):
    damaged = report_pdf[: int(len(report_pdf) * cut)]

    assert _error(damaged, "application/pdf").code == CORRUPT_CONTENT


def test_extract_pdf_header_then_garbage_is_corrupt():
    assert _error(b"%PDF-1.7\n" + b"this is not a PDF body\n" * 20, "application/pdf").code == CORRUPT_CONTENT


def test_extract_pdf_blank_pages_is_empty():
    error = _error(make_pdf(["", ""], title="Scanned letter"), "application/pdf")

    assert error.code == EMPTY_CONTENT


def test_extract_pdf_longer_than_max_chars_is_truncated():
    pages = [f"Page {n}: " + "lorem ipsum dolor sit amet " * 20 for n in range(40)]
    data = make_pdf(pages)

    started = time.monotonic()
    result = extract_text(data, "application/pdf", max_chars=1000)
    elapsed = time.monotonic() - started
    full = extract_text(data, "application/pdf")

    assert result.truncated is True
    assert len(result.text) == 1000
    assert full.text.startswith(result.text)
    assert full.truncated is False
    assert "Page 39:" in full.text
    assert elapsed < 2.0


# --- HTML -------------------------------------------------------------------------------------


def test_extract_html_visible_text_and_title():
    result = extract_text(read_fixture("article.html"), "text/html; charset=utf-8")

    assert result.content_type == "text/html"
    assert result.title == "Rivers of Europe & their Deltas"
    assert "MUST-NOT-APPEAR" not in result.text
    assert "dataLayer" not in result.text and "font-family" not in result.text
    lines = result.text.split("\n")
    assert lines[:2] == ["Home | Rivers", "The Danube Delta"]
    assert (
        "The Danube reaches the Black Sea through a delta of three main branches, shared by Romania and Ukraine."
        in lines
    )
    assert "Over 300 species of birds live there; it is a UNESCO World Heritage Site—since 1991." in lines
    assert "Chilia 58%" in lines
    assert lines[-3:] == ["Pelicans", "Cormorants", "© 2026 Rivers Atlas"]


def test_extract_html_inline_tags_do_not_split_words():
    html = b"<html><body><p>Un<b>break</b>able and <i>spaced</i> <em>words</em>.</p></body></html>"

    assert extract_text(html, "text/html").text == "Unbreakable and spaced words."


def test_extract_html_pre_keeps_line_breaks():
    html = b"<pre>line one\nline two</pre><p>after</p>"

    assert extract_text(html, "text/html").text == "line one\nline two\nafter"


def test_extract_html_charset_from_meta():
    result = extract_text(read_fixture("legacy-latin1.html"), "text/html")

    assert result.title == "Café crème – Menü"
    assert result.text == "Menü du café\nCrème brûlée, naïve “quotes”, ½ portion."


def test_extract_html_charset_from_content_type_wins_over_meta():
    html = '<meta charset="iso-8859-1"><title>Grüße</title><p>Straße</p>'.encode()

    result = extract_text(html, "text/html; charset=UTF-8")

    assert result.title == "Grüße"
    assert result.text == "Straße"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
def test_extract_html_sniffed_when_type_unknown(content_type: str | None):
    result = extract_text(read_fixture("article.html"), content_type)

    assert result.content_type == "text/html"
    assert result.title == "Rivers of Europe & their Deltas"
    assert "MUST-NOT-APPEAR" not in result.text


def test_extract_xhtml_content_type_normalised():
    assert extract_text(b"<p>hi</p>", "application/xhtml+xml").content_type == "text/html"


def test_extract_html_without_visible_text_is_empty():
    html = b"<html><head><title>Loading</title><script>render()</script></head><body><div id=app></div></body></html>"

    assert _error(html, "text/html").code == EMPTY_CONTENT


def test_extract_html_deep_nesting_does_not_overflow():
    html = b"<div>" * 5_000 + b"deep" + b"</div>" * 5_000  # 5x Python's recursion limit

    assert extract_text(html, "text/html").text == "deep"


def test_extract_html_title_inside_svg_is_not_page_title():
    html = b"<body><svg><title>icon</title></svg><p>text</p></body>"

    result = extract_text(html, "text/html")

    assert result.title is None
    assert result.text == "text"


# --- plain text -------------------------------------------------------------------------------


def test_extract_text_utf8_without_charset():
    result = extract_text("Grüße aus Köln\r\nzweite Zeile\n".encode(), "text/plain")

    assert result == Extracted(text="Grüße aus Köln\nzweite Zeile", title=None, content_type="text/plain")


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("ISO-8859-1", "Crème brûlée, naïve “quotes” – ½"),  # latin-1 labels decode as windows-1252
        ("windows-1251", "Съешь же ещё этих мягких французских булок"),
        ("shift_jis", "日本語のテキストです"),
        ('"koi8-r"', "Привет, мир"),
    ],
)
def test_extract_text_declared_charset(charset: str, text: str):
    encoding = "cp1252" if charset == "ISO-8859-1" else charset.strip('"')
    content = text.encode(encoding)

    result = extract_text(content, f"text/plain; charset={charset}")

    assert result.text == text


def test_extract_text_non_utf8_without_charset_is_detected():
    text = "Съешь же ещё этих мягких французских булок, да выпей же чаю. Широкая электрификация южных губерний."

    assert extract_text(text.encode("cp1251"), "text/plain").text == text


def test_extract_text_western_legacy_without_charset_prefers_windows_1252():
    text = "Le café est très chaud, naïve façon de parler — déjà vu."

    assert extract_text(text.encode("cp1252"), "text/plain").text == text


def test_extract_text_unknown_charset_label_falls_back_to_utf8():
    assert extract_text("naïve".encode(), "text/plain; charset=no-such-charset").text == "naïve"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_extract_text_bom_decides_encoding(encoding: str):
    result = extract_text("BOM text: café".encode(encoding), "text/plain; charset=iso-8859-1")

    assert result.text == "BOM text: café"


def test_extract_text_utf16_without_bom_with_charset():
    assert extract_text("wide text".encode("utf-16-le"), "text/plain; charset=utf-16le").text == "wide text"


def test_extract_text_sniffed_when_type_unknown():
    result = extract_text(b"just some notes\n", None)

    assert result.content_type == "text/plain"
    assert result.text == "just some notes"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/markdown; charset=utf-8", "text/markdown"),
        ("text/x-markdown", "text/markdown"),
        ("application/json", "application/json"),
        ("application/ld+json", "application/json"),
        ("text/csv", "text/csv"),
    ],
)
def test_extract_text_like_types_as_plain_text(content_type: str, expected: str):
    content = b'# Title\n\n{"river": "Danube"}\n'

    result = extract_text(content, content_type)

    assert result.content_type == expected
    assert result.text == '# Title\n\n{"river": "Danube"}'


def test_extract_text_longer_than_max_chars_is_truncated():
    result = extract_text(b"abcdefghij" * 10, "text/plain", max_chars=25)

    assert result.truncated is True
    assert result.text == ("abcdefghij" * 3)[:25]


def test_extract_text_exactly_max_chars_is_not_truncated():
    result = extract_text(b"x" * 25, "text/plain", max_chars=25)

    assert (result.truncated, len(result.text)) == (False, 25)


# --- refused content --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "text/html", None])
def test_extract_binary_garbage_with_nul_is_undecodable(content_type: str | None):
    garbage = random.Random(7).randbytes(4096)
    assert b"\x00" in garbage

    assert _error(garbage, content_type).code == UNDECODABLE_CONTENT


def test_extract_binary_garbage_without_nul_is_undecodable():
    rng = random.Random(11)
    garbage = bytes(rng.randrange(1, 256) for _ in range(4096))

    assert _error(garbage, "text/plain").code == UNDECODABLE_CONTENT


def test_extract_text_mostly_control_characters_is_undecodable():
    content = bytes(range(1, 9)) * 50 + b"a few words"

    assert _error(content, "text/plain; charset=utf-8").code == UNDECODABLE_CONTENT


def test_extract_text_wrong_charset_mostly_replacement_is_undecodable():
    # Declared UTF-8, but every byte is an invalid UTF-8 lead byte.
    assert _error(bytes([0xC0, 0xF8, 0xC1, 0xF9]) * 100, "text/plain; charset=utf-8").code == UNDECODABLE_CONTENT


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (PNG, "text/plain"),
        (PNG, "text/html"),
        (gzip.compress(b"hello world"), "text/plain"),
        (_zip_bytes(), "application/json"),
    ],
)
def test_extract_binary_declared_as_text_is_mismatch(content: bytes, content_type: str):
    assert _error(content, content_type).code == CONTENT_TYPE_MISMATCH


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (PNG, "image/png"),
        (_zip_bytes(), "application/zip"),
        (b"{\\rtf1\\ansi hello}", "text/rtf"),
        (b"some text", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (PNG, None),
        (_zip_bytes(), "application/octet-stream"),
    ],
)
def test_extract_unsupported_type_is_refused(content: bytes, content_type: str | None):
    assert _error(content, content_type).code == UNSUPPORTED_CONTENT_TYPE


def test_extract_text_starting_like_a_magic_number_is_still_text():
    content = b"ID3 tags and OggS pages are described below.\nRIFF chunks too."

    assert extract_text(content, "text/plain").text.startswith("ID3 tags")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"", "text/plain"), (b"", None), (b"  \n\t \r\n", "text/plain"), (b"", "application/pdf")],
)
def test_extract_empty_content_is_refused(content: bytes, content_type: str | None):
    assert _error(content, content_type).code == EMPTY_CONTENT


def test_extract_error_survives_pickling():
    error = _error(PNG, "image/png")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is ExtractionError
    assert (copy.code, str(copy)) == (UNSUPPORTED_CONTENT_TYPE, str(error))


# --- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Text/HTML; Charset="UTF-8"', ("text/html", "utf-8")),
        ("text/plain;charset=iso-8859-1;format=flowed", ("text/plain", "iso-8859-1")),
        ("application/x-pdf", ("application/pdf", None)),
        ("  application/json  ", ("application/json", None)),
        (None, ("", None)),
    ],
)
def test_parse_content_type_normalises(header: str | None, expected: tuple[str, str | None]):
    assert parse_content_type(header) == expected
