"""Fetch a document's bytes from a URL a client gave us, safely.

A client-supplied URL is an SSRF vector: without care it can make Sluice read cloud metadata
(169.254.169.254), an admin port on localhost, or any host on the private network. `fetch_url`
therefore:

- accepts only http and https;
- resolves the host itself and refuses every address that is not publicly routable (loopback,
  RFC 1918 private, CGNAT, link-local, multicast, reserved, unspecified, IPv6 ULA, and IPv4
  hidden in IPv6 forms) unless the caller allows private addresses or lists the network;
- connects to the very address it checked (the request goes to the IP; the Host header and the
  TLS SNI / certificate check keep the real host name), so a DNS answer that changes between
  the check and the connection (DNS rebinding) cannot move the request elsewhere;
- follows redirects itself, at most `MAX_REDIRECTS` hops, checking every hop the same way;
- ignores proxy settings from the environment (a proxy would make the pinning meaningless);
- streams the body and stops as soon as it passes `max_bytes` (decoded bytes, so a gzip bomb
  stops too), refusing up front when Content-Length already says too much;
- keeps the whole call, DNS included, within `timeout` seconds.

Every error is a `FetchError` with a short machine-readable `code` (the ingestion API exposes
it as a document error code).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing
from dataclasses import dataclass

import httpx

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT = 20.0
MAX_REDIRECTS = 5
USER_AGENT = "Sluice/0.1 (document ingestion)"

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Error codes (FetchError.code).
URL_INVALID = "url_invalid"
URL_REFUSED = "url_refused"
URL_UNREACHABLE = "url_unreachable"
URL_TIMEOUT = "url_timeout"
URL_HTTP_ERROR = "url_http_error"
URL_TOO_MANY_REDIRECTS = "url_too_many_redirects"
CONTENT_TOO_LARGE = "content_too_large"

# A DNS name as httpx gives it (IDNA-encoded): never sent to the resolver with spaces or controls.
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
# NAT64 well-known prefix (RFC 6052): the last 32 bits are the IPv4 address really reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """The URL could not be fetched; `code` says why in one word, the message in a sentence."""

    default_code = URL_UNREACHABLE

    def __init__(self, message: str, *, code: str | None = None, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.url = url
        self.status = status

    def __reduce__(self):  # keyword-only attributes survive pickling (Prefect persists task exceptions)
        return (self.__class__, (self.message,), self.__dict__)


class ContentTooLarge(FetchError):
    """The body is (or says it is) larger than the limit."""

    default_code = CONTENT_TOO_LARGE


@dataclass(frozen=True)
class Fetched:
    content: bytes
    content_type: str | None  # the Content-Type header as sent, parameters included (charset)
    final_url: str  # after redirects


def is_public_address(ip: IPAddress) -> bool:
    """True when `ip` is publicly routable; False for every address an SSRF would aim at."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 reached through an IPv6 form is judged as that IPv4 address (Python 3.11 calls
        # ::ffff:127.0.0.1 neither loopback nor private, and 2002:7f00:1:: "global").
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def fetch_url(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    allow_private: bool = False,
    allowed_networks: Iterable[str | IPNetwork] = (),
    verify: ssl.SSLContext | bool = True,
) -> Fetched:
    """Download `url` and return its bytes, refusing non-public addresses and oversized bodies.

    Args:
        url: an http or https URL.
        max_bytes: the largest body accepted (after content decoding).
        timeout: seconds for the whole call: DNS, every redirect hop and the body.
        allow_private: accept any address (loopback and private networks included).
        allowed_networks: networks accepted even though they are not public, e.g. an internal
            document server's "10.1.2.0/24"; everything else non-public stays refused.
        verify: TLS verification (`True`, or an `ssl.SSLContext` trusting a private CA).

    Returns:
        `Fetched(content, content_type, final_url)`.

    Raises:
        ContentTooLarge: code `content_too_large`.
        FetchError: code `url_invalid`, `url_refused`, `url_unreachable`, `url_timeout`,
            `url_http_error` (with `status`) or `url_too_many_redirects`.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    if timeout <= 0:
        raise ValueError("timeout must be > 0")
    networks = tuple(ipaddress.ip_network(n) if isinstance(n, str) else n for n in allowed_networks)
    deadline = time.monotonic() + timeout
    current = start = _parse(url)

    with httpx.Client(
        follow_redirects=False,
        trust_env=False,  # no proxies or .netrc from the environment
        verify=_default_tls() if verify is True else verify,
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
    ) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            addresses = _checked_addresses(current, deadline, allow_private=allow_private, networks=networks)
            response = _open(client, current, addresses, deadline)
            with closing(response):
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(
                            f"HTTP {response.status_code} redirect without a Location header from {_shown(current)}",
                            code=URL_HTTP_ERROR,
                            url=_shown(current),
                            status=response.status_code,
                        )
                    try:
                        target = current.join(location)
                    except httpx.InvalidURL as exc:
                        raise FetchError(
                            f"redirect from {_shown(current)} to an invalid URL: {location!r}",
                            code=URL_INVALID,
                            url=_shown(current),
                        ) from exc
                    current = _parse(str(target), redirected_from=current)
                    continue
                if response.status_code >= 300:
                    raise FetchError(
                        f"HTTP {response.status_code} {response.reason_phrase} from {_shown(current)}".rstrip(),
                        code=URL_HTTP_ERROR,
                        url=_shown(current),
                        status=response.status_code,
                    )
                content = _read_body(response, current, max_bytes=max_bytes, deadline=deadline)
                return Fetched(
                    content=content, content_type=response.headers.get("Content-Type"), final_url=_shown(current)
                )
    shown = _shown(start)
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {shown}", code=URL_TOO_MANY_REDIRECTS, url=shown)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """httpx's verifying TLS context, made once per process: making one loads the CA bundle, ~20–40 ms
    of CPU that would otherwise be spent on every URL (a collection's finetune fetches thousands)."""
    return httpx.create_ssl_context()


def _parse(url: str, *, redirected_from: httpx.URL | None = None) -> httpx.URL:
    via = f" (redirected from {_shown(redirected_from)})" if redirected_from is not None else ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"invalid URL {url!r}{via}: {exc}", code=URL_INVALID, url=url) from exc
    shown = _shown(parsed)
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError(
            f"refused URL {shown!r}{via}: only http and https are fetched, not {parsed.scheme or 'a relative URL'!r}",
            code=URL_REFUSED,
            url=shown,
        )
    if not parsed.host:
        raise FetchError(f"invalid URL {shown!r}{via}: no host", code=URL_INVALID, url=shown)
    raw_host = parsed.raw_host.decode("ascii", errors="replace")
    if not (_HOST_NAME.fullmatch(raw_host) or _is_ip_literal(raw_host)):
        raise FetchError(f"invalid URL {shown!r}{via}: bad host name {parsed.host!r}", code=URL_INVALID, url=shown)
    return parsed


def _shown(url: httpx.URL) -> str:
    """The URL for messages and error attributes: without user:password, which clients may embed."""
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _checked_addresses(
    url: httpx.URL, deadline: float, *, allow_private: bool, networks: tuple[IPNetwork, ...]
) -> list[str]:
    """Resolve the URL's host and return its addresses, or refuse if any of them is not allowed.

    Refusing when *any* answer is non-public (not just the one we would use) stops a DNS name
    that mixes a public and a private address from being usable at all.
    """
    shown = _shown(url)
    host = url.raw_host.decode("ascii")  # IDNA-encoded
    port = url.port or (443 if url.scheme == "https" else 80)
    infos = _resolve(host, port, deadline, url=shown)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not is_public_address(ip) and not any(ip.version == n.version and ip in n for n in networks):
                raise FetchError(
                    f"refused URL {shown}: {host if host == str(ip) else f'{host} resolves to {ip}, which'}"
                    " is not a public address",
                    code=URL_REFUSED,
                    url=shown,
                )
    return addresses


def _resolve(host: str, port: int, deadline: float, *, url: str) -> list[tuple]:
    # getaddrinfo has no timeout of its own: run it in a thread and stop waiting at the deadline
    # (the thread ends by itself when the system resolver gives up).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-dns")
    future = executor.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=max(deadline - time.monotonic(), 0.001))
    except FutureTimeout as exc:
        raise FetchError(f"timed out resolving {host} for {url}", code=URL_TIMEOUT, url=url) from exc
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"could not resolve {host} for {url}: {exc}", code=URL_UNREACHABLE, url=url) from exc
    finally:
        executor.shutdown(wait=False)


def _open(client: httpx.Client, url: httpx.URL, addresses: list[str], deadline: float) -> httpx.Response:
    """Send GET `url` to one of the checked `addresses` (in order, next on connection refused)."""
    shown = _shown(url)
    host_header = url.netloc.decode("ascii")  # host[:port], IDNA-encoded, without user info
    last_error: httpx.ConnectError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            request = client.build_request(
                "GET",
                url.copy_with(host=address),
                headers={"Host": host_header},
                timeout=httpx.Timeout(remaining),
                # The TLS handshake and certificate check use the real name, not the pinned IP.
                extensions={"sni_hostname": url.raw_host.decode("ascii")},
            )
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
        except httpx.TimeoutException as exc:
            raise FetchError(f"timed out connecting to {shown}", code=URL_TIMEOUT, url=shown) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"cannot connect to {address} for {shown}: {exc}", code=URL_INVALID, url=shown) from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"could not fetch {shown}: {_describe(exc)}", code=URL_UNREACHABLE, url=shown) from exc
    if last_error is None:
        raise FetchError(f"timed out connecting to {shown}", code=URL_TIMEOUT, url=shown)
    raise FetchError(
        f"could not connect to {shown}: {_describe(last_error)}", code=URL_UNREACHABLE, url=shown
    ) from last_error


def _read_body(response: httpx.Response, url: httpx.URL, *, max_bytes: int, deadline: float) -> bytes:
    shown = _shown(url)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise ContentTooLarge(
            f"{shown} is {int(declared)} bytes (Content-Length), over the limit of {max_bytes}", url=shown
        )
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ContentTooLarge(f"{shown} is larger than the limit of {max_bytes} bytes", url=shown)
            if time.monotonic() > deadline:
                # A server that trickles bytes never trips httpx's per-read timeout.
                raise FetchError(f"timed out reading {shown}", code=URL_TIMEOUT, url=shown)
    except httpx.TimeoutException as exc:
        raise FetchError(f"timed out reading {shown}", code=URL_TIMEOUT, url=shown) from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"could not read {shown}: {_describe(exc)}", code=URL_UNREACHABLE, url=shown) from exc
    return bytes(body)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
