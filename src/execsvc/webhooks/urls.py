"""Webhook destination safety: a webhook URL must not let a client make the service call into its own network (SSRF).

``check_url`` runs when a URL is registered, and before each delivery, and looks only at the text;
``check_addresses`` judges what the host resolves to: the delivery worker's HTTP client (``sender.CheckedResolver``)
applies it whenever it opens a connection, to the addresses it then connects to. ``check_destination`` does both
for a URL at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

import httpx

from execsvc.core.errors import ExecsvcError

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidWebhookUrl(ExecsvcError):
    """The webhook URL is malformed or points somewhere the service must not send requests."""

    code = "invalid_webhook_url"


def check_url(url: str, allow_private: bool) -> str:
    """The URL with surrounding whitespace stripped, if it is a well-formed http(s) URL to an allowed host.

    Only the text is checked: a DNS name is accepted here even if it resolves to an internal address, which is why
    ``check_destination`` must run before each delivery. ``allow_private`` lets loopback, private and other
    non-public IP literals and ``localhost`` through (for self-hosted setups and tests).
    """
    url = url.strip()
    _, host = _split(url)
    if not allow_private:
        reason = host_refusal(host)
        if reason is not None:
            raise InvalidWebhookUrl(f"webhook URL host {host!r} is {reason}; only public destinations are allowed")
    return url


async def check_destination(url: str, allow_private: bool) -> None:
    """Refuse the delivery unless the URL is valid and every address its host resolves to right now is allowed.

    Every address counts, not just the first, because the HTTP client may try any of them. On its own this does not
    close DNS rebinding (a resolver can answer differently when the client connects); the delivery worker's client
    therefore resolves through ``sender.CheckedResolver`` and connects only to addresses just checked.
    """
    parts, host = _split(check_url(url, allow_private))
    if ip_literal(host) is not None:
        return  # nothing to resolve: check_url judged the address itself
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidWebhookUrl(f"webhook URL host {host!r} does not resolve: {exc}") from exc
    check_addresses(host, [str(sockaddr[0]) for *_, sockaddr in infos], allow_private)


def check_addresses(host: str, addresses: Sequence[str], allow_private: bool) -> None:
    """Refuse ``host`` unless it resolved to at least one address and, private ones not being allowed, every one of
    them is a public destination."""
    if not addresses:
        raise InvalidWebhookUrl(f"webhook URL host {host!r} resolves to no address")
    if allow_private:
        return
    for text in addresses:
        address = ipaddress.ip_address(text)
        reason = address_refusal(address)
        if reason is not None:
            raise InvalidWebhookUrl(
                f"webhook URL host {host!r} resolves to {address}, {reason}; only public destinations are allowed"
            )


def host_refusal(host: str) -> str | None:
    """Why a URL's host (as ``urlsplit`` gives it) is not a public destination, or None if nothing shows it is not.

    IP literals are read the way the resolver reads them, including legacy IPv4 forms (``127.1``, ``0x7f.0.0.1``,
    ``2130706433``) and non-ASCII dots and digits that IDNA maps to ASCII, so they cannot slip past as "names".
    """
    name = _ascii_host(host).removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "a loopback name"
    address = ip_literal(name)
    return None if address is None else address_refusal(address)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` denotes if it is an IP literal in any form ``getaddrinfo`` accepts, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def address_refusal(address: IPAddress) -> str | None:
    """Why a request to ``address`` could reach something non-public, or None if it is a globally routable unicast.

    IPv6 addresses that carry an IPv4 address (mapped, NAT64, 6to4) are judged by the IPv4 address, since that is
    where the packets end up.
    """
    target = embedded_ipv4(address) or address
    checks = (
        (target.is_unspecified, "an unspecified address"),
        (target.is_loopback, "a loopback address"),
        (target.is_link_local, "a link-local address"),
        (target.is_multicast, "a multicast address"),
        (target.is_private, "a private address"),
        (target.is_reserved, "a reserved address"),
        (not target.is_global, "not a globally routable address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address is a wrapper for, if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _ascii_host(host: str) -> str:
    """``host`` as the HTTP client will connect to it: non-ASCII names go through the same IDNA rules httpx applies
    (IDNA 2008, which also maps lookalike dots), so the name checked and resolved is the name connected to."""
    if host.isascii():
        return host.lower()
    try:
        return httpx.URL(f"http://{host}/").raw_host.decode("ascii").lower()
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise InvalidWebhookUrl(f"webhook URL host {host!r} is not a valid domain name") from exc


def _split(url: str) -> tuple[SplitResult, str]:
    """The parsed URL and its host as the resolver will see it, or the first rule the URL text breaks."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        raise InvalidWebhookUrl("webhook URL must not contain whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidWebhookUrl(f"webhook URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        found = f"{scheme!r}" if scheme else "no scheme"
        raise InvalidWebhookUrl(f"webhook URL must use http or https, not {found}")
    if "@" in parts.netloc:
        raise InvalidWebhookUrl("webhook URL must not contain a user name or password")
    if not parts.hostname:
        raise InvalidWebhookUrl("webhook URL has no host")
    host = _ascii_host(parts.hostname)
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl(f"webhook URL has an invalid port: {exc}") from exc
    if port is not None and not 1 <= port <= 65535:
        raise InvalidWebhookUrl("webhook URL port must be between 1 and 65535")
    try:
        httpx.URL(url)  # what the client will send to must parse there too
    except httpx.InvalidURL as exc:
        raise InvalidWebhookUrl(f"webhook URL is malformed: {exc}") from exc
    return parts, host
