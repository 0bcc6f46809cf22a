"""Turn a document's bytes and declared content type into the plain text (and title) to index.

Supported: `text/plain` and other `text/*` (`text/markdown`, `text/csv`…), `application/json`,
`text/html` (visible text only, plus `<title>`) and `application/pdf` (every page, title from
the metadata). A missing or `application/octet-stream` type is sniffed from the bytes. A
declared type the bytes plainly contradict, an unsupported type, undecodable or binary text, a
corrupt or password-protected PDF and a document with nothing to index are refused with an
`ExtractionError` whose `code` the ingestion API exposes as a document error code.

Pure and synchronous: no Prefect, no I/O. Text longer than `max_chars` is cut, not refused.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass

import charset_normalizer
import pypdf
from pypdf.errors import DependencyError, FileNotDecryptedError
from selectolax.lexbor import LexborHTMLParser, LexborNode

DEFAULT_MAX_CHARS = 1_000_000
# Decoded text with more than this share of U+FFFD or control characters is binary, not text.
MAX_GARBAGE_RATIO = 0.30
SNIFF_BYTES = 1024
# Charset detection picks windows-1252 when it is this close to the best guess (see _detect).
DETECT_CP1252_MARGIN = 0.1

PLAIN = "text/plain"
HTML = "text/html"
PDF = "application/pdf"
JSON = "application/json"

# Error codes (ExtractionError.code).
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
CONTENT_TYPE_MISMATCH = "content_type_mismatch"
UNDECODABLE_CONTENT = "undecodable_content"
CORRUPT_CONTENT = "corrupt_content"
ENCRYPTED_CONTENT = "encrypted_content"
EMPTY_CONTENT = "empty_content"

_UNKNOWN_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})
_ALIASES = {
    "application/x-pdf": PDF,
    "application/acrobat": PDF,
    "application/xhtml+xml": HTML,
    "text/x-markdown": "text/markdown",
    "text/json": JSON,
}
# text/* types that are not readable text.
_NOT_PLAIN_TEXT = frozenset({"text/rtf"})

# Leading bytes of common binary formats: named in errors, and never decoded as text. Each
# signature holds bytes that plain text does not start with, so a text file cannot match.
_MAGIC = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "application/x-riff"),  # WebP, WAV, AVI; checked below for a binary size field
    (b"PK\x03\x04", "application/zip"),  # also docx, xlsx, epub
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # legacy .doc/.xls/.ppt
    (b"{\\rtf", "text/rtf"),
    (b"\x7fELF", "application/x-executable"),
    (b"OggS\x00", "audio/ogg"),
    (b"fLaC\x00", "audio/flac"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# WHATWG: these labels decode as windows-1252 (0x80–0x9F are quotes and dashes, not controls).
_WINDOWS_1252_LABELS = frozenset({"ascii", "us-ascii", "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1"})

# WHATWG MIME sniffing: a document that starts with one of these (after whitespace) is HTML.
_HTML_START = re.compile(
    rb"\s*(?:<!doctype\s+html|<html|<head|<body|<title|<script|<style|<iframe|<h1|<div|<font|<table|<a|<b|<br"
    rb"|<p|<!--)[\s>]",
    re.IGNORECASE,
)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([a-zA-Z0-9_:.+-]+)", re.IGNORECASE)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

# HTML: elements whose content is never shown as text, and elements that start a new line.
_INVISIBLE_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "head"})
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main nav ol option p pre section summary table "
    "tbody tfoot thead tr ul br".split()
)
_CELL_TAGS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"(?:display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)
_SPACES = re.compile(r"[^\S\n]+")


class ExtractionError(Exception):
    """No text could be extracted; `code` says why in one word, the message in a sentence."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code

    def __reduce__(self):  # keyword-only attributes survive pickling (Prefect persists task exceptions)
        return (_rebuild_error, (self.__class__, self.message, self.code))


def _rebuild_error(cls: type[ExtractionError], message: str, code: str) -> ExtractionError:
    return cls(message, code=code)


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None
    content_type: str  # normalised: application/pdf, text/html, text/plain, text/markdown…
    truncated: bool = False  # True when the text was cut to max_chars


def extract_text(content: bytes, content_type: str | None, *, max_chars: int = DEFAULT_MAX_CHARS) -> Extracted:
    """Extract the plain text (and title, for HTML and PDF) from a document's bytes.

    Args:
        content: the document's bytes.
        content_type: the declared type, parameters allowed (`text/plain; charset=latin-1`);
            None or `application/octet-stream` to sniff it from the bytes.
        max_chars: the longest text returned; longer text is cut and `truncated` is True.

    Returns:
        `Extracted(text, title, content_type, truncated)`.

    Raises:
        ExtractionError: code `unsupported_content_type`, `content_type_mismatch`,
            `undecodable_content`, `corrupt_content`, `encrypted_content` or `empty_content`.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be > 0")
    if not content:
        raise ExtractionError("the document is empty", code=EMPTY_CONTENT)
    mime, charset = parse_content_type(content_type)
    declared = mime not in _UNKNOWN_TYPES
    kind = _kind(mime) if declared else _sniff(content)
    if kind is None:
        raise ExtractionError(f"unsupported content type {mime!r}", code=UNSUPPORTED_CONTENT_TYPE)

    detected = _magic_type(content)
    if kind == PDF:
        if not _looks_like_pdf(content):
            detected = detected or (HTML if _HTML_START.match(content[:SNIFF_BYTES]) else None)
            found = f"looks like {detected}" if detected else "has no %PDF- header"
            raise ExtractionError(f"declared {mime} but the content {found}", code=CONTENT_TYPE_MISMATCH)
        text, title = _pdf_text(content, max_chars)
    else:
        if detected is not None:  # only when declared: sniffing has already refused binary formats
            raise ExtractionError(f"declared {mime} but the content looks like {detected}", code=CONTENT_TYPE_MISMATCH)
        if kind == HTML:
            text, title = _html_text(content, charset)
        else:
            text, title = _normalise_newlines(decode_text(content, charset)).strip(), None
    if not text:
        raise ExtractionError(f"no text found in the {kind} document", code=EMPTY_CONTENT)
    truncated = len(text) > max_chars
    return Extracted(text=text[:max_chars], title=title, content_type=kind, truncated=truncated)


def parse_content_type(content_type: str | None) -> tuple[str, str | None]:
    """`'Text/HTML; charset="UTF-8"'` → `('text/html', 'utf-8')`; aliases resolved."""
    if not content_type:
        return "", None
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'").strip().lower() or None
    return _ALIASES.get(mime, mime), charset


def decode_text(content: bytes, charset: str | None = None) -> str:
    """Decode text: BOM, else the declared charset, else UTF-8, else detected; refuse binary."""
    encoding = _bom_encoding(content)
    if encoding is not None:
        text = content.decode(encoding, errors="replace").removeprefix("\ufeff")
    else:
        if b"\x00" in content and not (charset or "").startswith(("utf-16", "utf-32")):
            raise ExtractionError("the content has NUL bytes: binary, not text", code=UNDECODABLE_CONTENT)
        encoding = _codec(charset)
        if encoding is not None:
            text = content.decode(encoding, errors="replace")
        else:
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                text = _detect(content)
    _refuse_garbage(text)
    return text


def _kind(mime: str) -> str | None:
    if mime in (PDF, HTML, JSON) or (mime.startswith("application/") and mime.endswith("+json")):
        return JSON if mime.endswith("json") else mime
    if mime.startswith("text/") and mime not in _NOT_PLAIN_TEXT:
        return mime
    return None


def _sniff(content: bytes) -> str | None:
    detected = _magic_type(content)
    if detected == PDF:
        return PDF
    if detected is not None:
        raise ExtractionError(
            f"the content looks like {detected}, which is not supported", code=UNSUPPORTED_CONTENT_TYPE
        )
    head = content[:SNIFF_BYTES]
    encoding = _bom_encoding(head)
    if encoding is not None and encoding != "utf-8":
        head = head.decode(encoding, errors="replace").encode("utf-8")
    head = head.removeprefix(codecs.BOM_UTF8)
    if _HTML_START.match(head) or (head.lstrip().startswith(b"<?xml") and b"<html" in head.lower()):  # XHTML
        return HTML
    return PLAIN


def _magic_type(content: bytes) -> str | None:
    head = content[:SNIFF_BYTES].lstrip(b" \t\r\n")[:16]
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            if mime == "application/x-riff" and not (len(head) >= 8 and _has_binary(head[4:8])):
                continue
            return mime
    if head.startswith(b"ID3") and len(head) >= 5 and head[3] in (2, 3, 4) and head[4] == 0:
        return "audio/mpeg"
    return None


def _has_binary(data: bytes) -> bool:
    return any(b < 0x09 or 0x0D < b < 0x20 for b in data)


def _looks_like_pdf(content: bytes) -> bool:
    # PDF readers accept the header anywhere in the first KiB (some files have junk before it).
    return b"%PDF-" in content[:SNIFF_BYTES]


def _bom_encoding(content: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return encoding
    return None


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    if charset in _WINDOWS_1252_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None  # unknown label: fall back to UTF-8, then detection


def _detect(content: bytes) -> str:
    matches = list(charset_normalizer.from_bytes(content))
    if not matches:
        raise ExtractionError("the content is not text in any known encoding", code=UNDECODABLE_CONTENT)
    best = matches[0]
    # On short Western text the detector often ranks cp1250/cp1257 level with windows-1252
    # ("naïve" → "naďve"). Like browsers, prefer windows-1252, the web's commonest legacy
    # encoding, when it reads (almost) as cleanly as the winner.
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos + DETECT_CP1252_MARGIN:
            return str(match)
    return str(best)


def _refuse_garbage(text: str) -> None:
    if not text:
        return
    if "\x00" in text:
        raise ExtractionError("the content has NUL characters: binary, not text", code=UNDECODABLE_CONTENT)
    garbage = text.count("\ufffd") + len(_CONTROL_CHARS.findall(text))
    if garbage / len(text) > MAX_GARBAGE_RATIO:
        raise ExtractionError(
            f"{garbage / len(text):.0%} of the decoded characters are invalid or control characters: binary, not text",
            code=UNDECODABLE_CONTENT,
        )


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- HTML -----------------------------------------------------------------------------------


def _html_text(content: bytes, charset: str | None) -> tuple[str, str | None]:
    if charset is None and _bom_encoding(content) is None:
        match = _META_CHARSET.search(content[:SNIFF_BYTES])
        if match and _codec(match.group(1).decode("ascii").lower()) is not None:
            charset = match.group(1).decode("ascii").lower()
    tree = LexborHTMLParser(decode_text(content, charset))
    root = tree.body or tree.root
    return (_visible_text(root) if root is not None else ""), _html_title(tree)


def _html_title(tree: LexborHTMLParser) -> str | None:
    for node in tree.css("title"):
        parent = node.parent
        while parent is not None and parent.tag not in ("svg", "math"):  # an icon's <title> is not the page's
            parent = parent.parent
        if parent is None:
            return " ".join(node.text(deep=True).split()) or None
    return None


def _hidden(node: LexborNode) -> bool:
    attributes = node.attributes
    if "hidden" in attributes and (attributes["hidden"] or "").lower() != "until-found":
        return True
    style = attributes.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


def _visible_text(root: LexborNode) -> str:
    """The text a reader sees: inline text runs together, block elements start new lines.

    Skips invisible elements (script, style, head…) and hidden ones (`hidden`, inline
    `display: none`). Walks with an explicit stack, so deep nesting cannot exhaust recursion,
    and never changes the tree.
    """
    parts: list[str] = []
    stack: list[tuple[LexborNode, bool, bool]] = [(root, False, False)]  # (node, leaving, inside <pre>)
    while stack:
        node, leaving, in_pre = stack.pop()
        tag = node.tag
        if leaving:
            parts.append("\n" if tag in _BLOCK_TAGS else " ")
            continue
        if node.is_text_node:
            text = node.text_content or ""
            parts.append(text if in_pre else _collapse(text))
            continue
        if not node.is_element_node or tag in _INVISIBLE_TAGS or _hidden(node):
            continue  # comments, doctype, script, style, hidden…
        if tag in _BLOCK_TAGS:
            parts.append("\n")
        if tag in _BLOCK_TAGS or tag in _CELL_TAGS:
            stack.append((node, True, in_pre))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        in_pre = in_pre or tag in ("pre", "textarea")
        stack.extend((c, False, in_pre) for c in reversed(children))
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _collapse(text: str) -> str:
    """Collapse whitespace but keep one space at an edge that had some: "a <b>b</b>" stays "a b"."""
    core = " ".join(text.split())
    if not core:
        return " " if text else ""
    return (" " if text[0].isspace() else "") + core + (" " if text[-1].isspace() else "")


# --- PDF ------------------------------------------------------------------------------------


def _pdf_text(content: bytes, max_chars: int) -> tuple[str, str | None]:
    try:
        reader = pypdf.PdfReader(io.BytesIO(content), strict=False)
    except Exception as exc:  # pypdf raises many types on malformed input
        raise ExtractionError(f"the PDF cannot be read: {exc}", code=CORRUPT_CONTENT) from exc
    if reader.is_encrypted:
        # Many PDFs are encrypted only to restrict printing or editing, with an empty user
        # password: those open without one. Any other password is refused.
        try:
            opened = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
        except (DependencyError, NotImplementedError) as exc:
            raise ExtractionError(f"the PDF uses unsupported encryption: {exc}", code=ENCRYPTED_CONTENT) from exc
        except Exception as exc:
            raise ExtractionError(f"the PDF's encryption is corrupt: {exc}", code=CORRUPT_CONTENT) from exc
        if not opened:
            raise ExtractionError("the PDF is password-protected", code=ENCRYPTED_CONTENT)
    try:
        pages = reader.pages
        page_count = len(pages)
    except FileNotDecryptedError as exc:
        raise ExtractionError("the PDF is password-protected", code=ENCRYPTED_CONTENT) from exc
    except Exception as exc:
        raise ExtractionError(f"the PDF's page tree cannot be read: {exc}", code=CORRUPT_CONTENT) from exc

    texts: list[str] = []
    size = 0
    failures: list[Exception] = []
    for index in range(page_count):
        try:
            text = pages[index].extract_text() or ""
        except Exception as exc:  # one damaged page loses that page, not the document
            failures.append(exc)
            continue
        text = _normalise_newlines(text).strip()
        if text:
            texts.append(text)
            size += len(text) + 2
            if size > max_chars:
                break  # enough to fill max_chars: the rest would be cut anyway
    if failures and len(failures) == page_count:
        raise ExtractionError(f"no page of the PDF can be read: {failures[0]}", code=CORRUPT_CONTENT) from failures[0]
    return "\n\n".join(texts), _pdf_title(reader)


def _pdf_title(reader: pypdf.PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a damaged Info dictionary costs the title, not the text
        return None
    if not isinstance(title, str):
        return None
    return " ".join(title.replace("\x00", "").split()) or None
