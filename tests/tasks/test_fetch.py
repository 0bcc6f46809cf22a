"""fetch_url against real HTTP(S) servers on 127.0.0.1: content, redirects, SSRF refusals, size
limits, HTTP errors and timeouts. This machine has no other network, so every URL here points
at the loopback range, and every refusal is checked to happen before any connection."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import pickle
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.fetch import (
    CONTENT_TOO_LARGE,
    MAX_REDIRECTS,
    URL_HTTP_ERROR,
    URL_INVALID,
    URL_REFUSED,
    URL_TIMEOUT,
    URL_TOO_MANY_REDIRECTS,
    URL_UNREACHABLE,
    ContentTooLarge,
    Fetched,
    FetchError,
    fetch_url,
    is_public_address,
)
from tests.tasks.fixtures.documents import make_pdf, read_fixture

TEXT = "Hello from Sluice — plain text.\n".encode()
HUGE_TOTAL = 256 * 1024 * 1024
CHUNK = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pdf: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pdf = pdf
        self.port = self.server_address[1]
        self.requests: list[tuple[str, str | None]] = []
        self.huge_sent = 0
        self.huge_done = threading.Event()
        self.stop = threading.Event()

    def handle_error(self, request, client_address):  # clients that hang up on purpose are expected
        pass

    def paths(self) -> list[str]:
        return [path for path, _host in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Host")))
        parts = urlsplit(self.path)
        route = parts.path
        if route == "/text":
            self._send(200, TEXT, "text/plain; charset=utf-8")
        elif route == "/article.html":
            self._send(200, read_fixture("article.html"), "text/html; charset=utf-8")
        elif route == "/report.pdf":
            self._send(200, self.server.pdf, "application/pdf")
        elif route == "/no-type":
            self._send(200, b"untyped body", None)
        elif route == "/echo-host":
            self._send(200, (self.headers.get("Host") or "").encode(), "text/plain")
        elif route.startswith("/redirect/"):
            hops = int(route.rsplit("/", 1)[1])
            self._redirect(f"/redirect/{hops - 1}" if hops > 0 else "/text")
        elif route == "/redirect-to":
            self._redirect(parse_qs(parts.query)["location"][0])
        elif route == "/redirect-no-location":
            self._send(302, b"", None)
        elif route == "/loop":
            self._redirect("/loop")
        elif route == "/missing":
            self._send(404, b"not here", "text/plain")
        elif route == "/boom":
            self._send(500, b"server error", "text/plain")
        elif route == "/huge":
            self._huge()
        elif route == "/big-length":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(10 * 1024**3))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
            self.wfile.flush()
            self.server.stop.wait(5)
        elif route == "/gzip-bomb":
            body = gzip.compress(b"\0" * (32 * 1024 * 1024))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif route == "/slow":
            self.server.stop.wait(1.5)
            self._send(200, b"finally", "text/plain")
        elif route == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    if self.server.stop.wait(0.1):
                        break
            except OSError:
                pass
        else:
            self._send(404, b"no such route", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str | None):
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _huge(self):
        # No Content-Length: the client only learns the size by reading.
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk = b"z" * CHUNK
        try:
            while self.server.huge_sent < HUGE_TOTAL:
                self.wfile.write(chunk)
                self.server.huge_sent += len(chunk)
        except OSError:
            pass
        finally:
            self.server.huge_done.set()


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return make_pdf(["Page one of the report.", "Page two of the report."], title="Served report")


@pytest.fixture
def server(pdf: bytes) -> Iterator[_Server]:
    yield from _serve(_Server(pdf))


@pytest.fixture
def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A certificate for `hostname` only (no IP address), and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[str, str, bytes]:
    cert_pem, key_pem = _self_signed("localhost")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    return str(folder / "cert.pem"), str(folder / "key.pem"), cert_pem


@pytest.fixture
def tls_server(pdf: bytes, tls_files: tuple[str, str, bytes]) -> Iterator[_Server]:
    cert_file, key_file, _ = tls_files
    server = _Server(pdf)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture
def client_tls(tls_files: tuple[str, str, bytes]) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls_files[2].decode())


def _fetch_error(url: str, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_url(url, **kwargs)
    return caught.value


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- content ----------------------------------------------------------------------------------


def test_fetch_text_returns_bytes_type_and_url(base: str):
    result = fetch_url(f"{base}/text", allow_private=True)

    assert result == Fetched(content=TEXT, content_type="text/plain; charset=utf-8", final_url=f"{base}/text")


def test_fetch_html_page(base: str):
    result = fetch_url(f"{base}/article.html", allow_private=True)

    assert result.content == read_fixture("article.html")
    assert result.content_type == "text/html; charset=utf-8"


def test_fetch_pdf(base: str, pdf: bytes):
    result = fetch_url(f"{base}/report.pdf", allow_private=True)

    assert result.content == pdf
    assert result.content.startswith(b"%PDF-")
    assert result.content_type == "application/pdf"


def test_fetch_without_content_type_gives_none(base: str):
    result = fetch_url(f"{base}/no-type", allow_private=True)

    assert (result.content, result.content_type) == (b"untyped body", None)


def test_fetch_by_name_connects_to_checked_address_with_real_host_header(server: _Server):
    # The request goes to the resolved IP, but the server still sees the name it was asked for.
    result = fetch_url(f"http://localhost:{server.port}/echo-host", allow_private=True)

    assert result.content == f"localhost:{server.port}".encode()
    assert result.final_url == f"http://localhost:{server.port}/echo-host"


def test_fetch_allowed_network_admits_private_address(base: str):
    result = fetch_url(f"{base}/text", allowed_networks=["127.0.0.0/8"])

    assert result.content == TEXT


def test_fetch_body_exactly_max_bytes_is_accepted(base: str):
    assert fetch_url(f"{base}/text", allow_private=True, max_bytes=len(TEXT)).content == TEXT


# --- redirects --------------------------------------------------------------------------------


def test_fetch_redirect_chain_is_followed(base: str, server: _Server):
    result = fetch_url(f"{base}/redirect/3", allow_private=True)

    assert result.content == TEXT
    assert result.final_url == f"{base}/text"
    assert server.paths() == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0", "/text"]


def test_fetch_redirects_up_to_the_limit(base: str):
    # /redirect/N answers with N + 1 redirects before the content.
    assert fetch_url(f"{base}/redirect/{MAX_REDIRECTS - 1}", allow_private=True).content == TEXT


def test_fetch_too_many_redirects_is_refused(base: str, server: _Server):
    error = _fetch_error(f"{base}/redirect/{MAX_REDIRECTS}", allow_private=True)

    assert error.code == URL_TOO_MANY_REDIRECTS
    assert "/text" not in server.paths()


def test_fetch_redirect_loop_stops(base: str, server: _Server):
    assert _fetch_error(f"{base}/loop", allow_private=True).code == URL_TOO_MANY_REDIRECTS
    assert len(server.paths()) == MAX_REDIRECTS + 1


def test_fetch_redirect_to_absolute_url_by_name(base: str, server: _Server):
    target = f"http://localhost:{server.port}/echo-host"

    result = fetch_url(f"{base}/redirect-to?location={quote(target, safe='')}", allow_private=True)

    assert result.final_url == target
    assert result.content == f"localhost:{server.port}".encode()


def test_fetch_redirect_without_location_is_http_error(base: str):
    error = _fetch_error(f"{base}/redirect-no-location", allow_private=True)

    assert (error.code, error.status) == (URL_HTTP_ERROR, 302)


# --- SSRF refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "127.1"])
def test_fetch_loopback_refused_without_connecting(server: _Server, host: str):
    error = _fetch_error(f"http://{host}:{server.port}/text")

    assert error.code == URL_REFUSED
    assert "127.0.0.1" in str(error)
    assert server.requests == []


def test_fetch_ipv6_loopback_refused():
    error = _fetch_error("http://[::1]:9/text")

    assert error.code == URL_REFUSED
    assert "::1" in str(error)


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/text",  # loopback, outside the allowed 127.0.0.1/32
        "http://0.0.0.0:{port}/text",  # "this host": reaches local services on Linux
        "http://[::1]:{port}/text",
        "http://[::ffff:127.0.0.2]:{port}/text",
    ],
)
def test_fetch_redirect_to_refused_address_is_refused(base: str, server: _Server, location: str):
    target = location.format(port=server.port)

    error = _fetch_error(f"{base}/redirect-to?location={quote(target, safe='')}", allowed_networks=["127.0.0.1/32"])

    assert error.code == URL_REFUSED
    assert "not a public address" in str(error)
    assert server.paths() == [f"/redirect-to?location={quote(target, safe='')}"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/pub", "gopher://127.0.0.1:70/"])
def test_fetch_redirect_to_other_scheme_is_refused(base: str, location: str):
    error = _fetch_error(f"{base}/redirect-to?location={quote(location, safe='')}", allow_private=True)

    assert error.code == URL_REFUSED
    assert "only http and https" in str(error)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "/relative/path"])
def test_fetch_other_scheme_is_refused(url: str):
    assert _fetch_error(url, allow_private=True).code == URL_REFUSED


@pytest.mark.parametrize("url", ["http://", "https:///path", "http://exa mple.com/", "http://[::1/"])
def test_fetch_malformed_url_is_invalid(url: str):
    assert _fetch_error(url, allow_private=True).code == URL_INVALID


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "ff0e::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 wrapping 169.254.169.254
        "2001:db8::1",
    ],
)
def test_is_public_address_refuses_non_public(address: str):
    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_is_public_address_accepts_public(address: str):
    assert is_public_address(ipaddress.ip_address(address)) is True


# --- size limits ------------------------------------------------------------------------------


def test_fetch_streamed_body_over_limit_stops_early(base: str, server: _Server):
    error = _fetch_error(f"{base}/huge", allow_private=True, max_bytes=256 * 1024)

    assert isinstance(error, ContentTooLarge)
    assert error.code == CONTENT_TOO_LARGE
    assert server.huge_done.wait(2)
    assert server.huge_sent < HUGE_TOTAL // 4  # the client hung up long before the end


def test_fetch_big_content_length_refused_before_reading(base: str):
    started = time.monotonic()
    error = _fetch_error(f"{base}/big-length", allow_private=True, max_bytes=1024 * 1024, timeout=3)

    assert isinstance(error, ContentTooLarge)
    assert "10737418240" in str(error)
    assert time.monotonic() - started < 2.0  # did not wait (3 s) for a body that never comes


def test_fetch_content_length_one_over_limit_is_too_large(base: str):
    assert _fetch_error(f"{base}/text", allow_private=True, max_bytes=len(TEXT) - 1).code == CONTENT_TOO_LARGE


def test_fetch_decompressed_body_counts_against_limit(base: str):
    error = _fetch_error(f"{base}/gzip-bomb", allow_private=True, max_bytes=1024 * 1024)

    assert error.code == CONTENT_TOO_LARGE


# --- HTTP errors, unreachable hosts, timeouts -------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/boom", 500)])
def test_fetch_http_error_names_status(base: str, path: str, status: int):
    error = _fetch_error(f"{base}{path}", allow_private=True)

    assert (error.code, error.status) == (URL_HTTP_ERROR, status)
    assert str(status) in str(error)


def test_fetch_closed_port_is_unreachable():
    error = _fetch_error(f"http://127.0.0.1:{_closed_port()}/text", allow_private=True)

    assert error.code == URL_UNREACHABLE


def test_fetch_slow_response_times_out(base: str):
    started = time.monotonic()
    error = _fetch_error(f"{base}/slow", allow_private=True, timeout=0.3)

    assert error.code == URL_TIMEOUT
    assert time.monotonic() - started < 1.2  # the server answers after 1.5 s


def test_fetch_trickling_body_times_out_overall(base: str):
    # Each byte arrives well within a read timeout; only the overall deadline stops it.
    started = time.monotonic()
    error = _fetch_error(f"{base}/trickle", allow_private=True, timeout=0.5)

    assert error.code == URL_TIMEOUT
    assert time.monotonic() - started < 2.0  # the trickle lasts 5 s


# --- TLS --------------------------------------------------------------------------------------


def test_fetch_https_pinned_address_verifies_real_host_name(tls_server: _Server, client_tls: ssl.SSLContext):
    # The certificate names only "localhost": connecting to the pinned 127.0.0.1 must still send
    # SNI and check the certificate for "localhost".
    result = fetch_url(f"https://localhost:{tls_server.port}/text", allow_private=True, verify=client_tls)

    assert result.content == TEXT
    assert tls_server.requests == [("/text", f"localhost:{tls_server.port}")]


def test_fetch_https_certificate_for_other_name_is_unreachable(tls_server: _Server, client_tls: ssl.SSLContext):
    error = _fetch_error(f"https://127.0.0.1:{tls_server.port}/text", allow_private=True, verify=client_tls)

    assert error.code == URL_UNREACHABLE
    assert "certificate" in str(error).lower()
    assert tls_server.requests == []


def test_fetch_https_untrusted_certificate_is_unreachable(tls_server: _Server):
    error = _fetch_error(f"https://localhost:{tls_server.port}/text", allow_private=True)

    assert error.code == URL_UNREACHABLE
    assert tls_server.requests == []


# --- errors -----------------------------------------------------------------------------------


def test_fetch_credentials_in_url_are_sent_but_never_shown(server: _Server):
    url = f"http://reader:s3cret@127.0.0.1:{server.port}"

    ok = fetch_url(f"{url}/text", allow_private=True)
    error = _fetch_error(f"{url}/missing", allow_private=True)
    refused = _fetch_error(f"{url}/text")

    assert ok.content == TEXT
    assert ok.final_url == f"http://127.0.0.1:{server.port}/text"
    for shown in (str(error), error.url, str(refused), refused.url):
        assert "s3cret" not in shown


def test_fetch_errors_survive_pickling(base: str):
    errors = [
        _fetch_error(f"{base}/missing", allow_private=True),
        _fetch_error(f"{base}/text", allow_private=True, max_bytes=1),
    ]

    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.code, copy.status, copy.url, str(copy)) == (error.code, error.status, error.url, str(error))


def test_fetch_bad_limits_raise_value_error():
    with pytest.raises(ValueError):
        fetch_url("http://127.0.0.1:9/", timeout=0)
    with pytest.raises(ValueError):
        fetch_url("http://127.0.0.1:9/", max_bytes=-1)
