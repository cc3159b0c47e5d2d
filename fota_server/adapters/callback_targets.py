"""Where callbacks may go: not to loopback, link-local, private, unspecified, multicast or reserved addresses.

A callback URL is an address the server will POST to on its own, so a URL pointing into the server's own
network (a cloud metadata service at 169.254.169.254, an admin port on 127.0.0.1, a host on 10.0.0.0/8) would
let an API user reach what only the server can reach. Unless the configuration allows private callbacks:

- at registration (``check_callback_url``), a URL whose host is such an address, or a name that resolves to
  one (any of its addresses), is refused; a name that does not resolve now is accepted, since it is checked
  again at every delivery;
- at delivery (``pinned_request``), the name is resolved again, every address is checked, and the request
  goes to the checked address (with the original ``Host`` header and TLS server name), so a name that
  changes its answer between the check and the connection (DNS rebinding) still cannot reach a private host.

IPv4-mapped (``::ffff:a.b.c.d``), 6to4 (``2002::/16``), Teredo and NAT64 (``64:ff9b::/96``) IPv6 addresses
are judged by the IPv4 address they carry. Names are resolved with ``getaddrinfo`` in the event loop's
executor, with a bounded wait.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import httpx

from ..errors import InvalidRequest

__all__ = ["Address", "ForbiddenTarget", "UnresolvedTarget", "PinnedRequest", "Resolver", "forbidden_range",
           "resolve_host", "check_callback_url", "pin", "pinned_request", "RESOLVE_TIMEOUT_S"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[Address]]]
RESOLVE_TIMEOUT_S = 5.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class ForbiddenTarget(InvalidRequest):
    """The callback URL's host is, or resolves to, an address the server does not call."""

    error_code = "InvalidCallbackUrl"


class UnresolvedTarget(Exception):
    """The callback URL's host name does not resolve (now, or within the wait)."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_range(address: Address) -> str | None:
    """What kind of address the server does not call this is ("loopback", "private", ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return forbidden_range(embedded)
    kinds = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
             ("link-local", address.is_link_local), ("multicast", address.is_multicast),
             ("reserved", address.is_reserved), ("private", address.is_private),
             ("not globally routable", not address.is_global))
    return next((kind for kind, applies in kinds if applies), None)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_host(host: str, port: int, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[Address]:
    """Every address ``host`` resolves to (getaddrinfo off the event loop); ``UnresolvedTarget`` if none."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout_s)
    except (OSError, UnicodeError, asyncio.TimeoutError) as exc:
        raise UnresolvedTarget(f"{host} does not resolve ({type(exc).__name__}: {exc})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not addresses:
        raise UnresolvedTarget(f"{host} resolves to no address")
    return addresses


def _refuse_forbidden(host: str, addresses: list[Address]) -> None:
    for address in addresses:
        kind = forbidden_range(address)
        if kind is not None:
            shown = host if str(address) == host.strip("[]") else f"{host} ({address})"
            raise ForbiddenTarget(f"callback url host {shown} is a {kind} address; callbacks go only to public "
                                  "addresses unless the server allows private callbacks")


async def check_callback_url(url: str, *, allow_private: bool, resolve: Resolver = resolve_host) -> None:
    """Registration: raise ``ForbiddenTarget`` if the URL's host is or resolves to a forbidden address.

    A URL that does not parse is left to the listener book's own check; a name that does not resolve is
    accepted (it is resolved and checked again at every delivery)."""
    if allow_private:
        return
    try:
        parsed = httpx.URL(url.strip())
        host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError):
        return
    if not host:
        return
    try:
        addresses = await resolve(host, port)
    except UnresolvedTarget:
        return
    _refuse_forbidden(host, addresses)


@dataclass(frozen=True)
class PinnedRequest:
    """A request to a checked address: the URL with the address as host, and the original Host and TLS name."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def pin(url: str, address: Address) -> PinnedRequest:
    """``url`` sent to ``address``: same path, port and user info; ``Host`` and SNI name the original host."""
    parsed = httpx.URL(url)
    if _literal(parsed.host) is not None:
        return PinnedRequest(url)
    host = parsed.raw_host.decode("ascii")
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return PinnedRequest(str(parsed.copy_with(host=str(address))), {"Host": parsed.netloc.decode("ascii")},
                         extensions)


async def pinned_request(url: str, *, allow_private: bool, resolve: Resolver = resolve_host) -> PinnedRequest:
    """Delivery: resolve the URL's host, refuse it if any address is forbidden, else pin the first address.

    Raises ``ForbiddenTarget`` or ``UnresolvedTarget``. With ``allow_private`` the URL goes out unchanged."""
    if allow_private:
        return PinnedRequest(url)
    parsed = httpx.URL(url)
    addresses = await resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
    _refuse_forbidden(parsed.host, addresses)
    return pin(url, addresses[0])
