"""Sending one delivery over HTTP: keep-alive connections pooled per host, and the SSRF checks where they count.

``HttpSender`` posts with aiohttp: HTTP/1.1 connections stay open between deliveries (one pool per host and port),
which spares a TCP (and TLS) handshake per delivery and costs about a seventh of the CPU of the same request through
httpx (see bench/RESULTS.md). The destination is checked twice: the URL's text before every request
(``urls.check_url``, remembered per URL), and the addresses its host resolves to whenever a connection is made
(``CheckedResolver``): the connection goes to an address just checked, so a name that resolves to a public address
for the check and to an internal one for the connection (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from execsvc.webhooks.urls import InvalidWebhookUrl, check_addresses, check_url, host_refusal

# What an endpoint may answer and still keep its connection: a longer answer is cut off with the connection.
READ_LIMIT = 64 * 1024
# Idle connections are closed after this long: below the 5 s of common servers (uvicorn, Node.js), so a request is
# rarely sent on a connection the endpoint is just closing.
KEEPALIVE_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answered: its status and its ``Retry-After`` header, if any."""

    status: int
    retry_after: str | None = None


class Sender(Protocol):
    """Posts a signed delivery and reports the answer; raises ``InvalidWebhookUrl`` for a refused destination and
    anything else for a failed request."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer: ...
    async def aclose(self) -> None: ...


class CheckedResolver(AbstractResolver):
    """Resolves a webhook host for the HTTP client and refuses it unless every address is allowed."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        try:
            found = await self._inner.resolve(host, port, family)
        except (OSError, UnicodeError) as exc:
            raise InvalidWebhookUrl(f"webhook URL host {host!r} does not resolve: {exc}") from exc
        check_addresses(host, [r["host"] for r in found], self.allow_private)
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


@functools.lru_cache(maxsize=4096)
def target(url: str, allow_private: bool) -> URL:
    """The URL to post to, if its text is allowed; its host is judged once more as the client will read it."""
    checked = check_url(url, allow_private)
    try:
        parsed = URL(checked)
    except (ValueError, TypeError) as exc:
        raise InvalidWebhookUrl(f"webhook URL is malformed: {exc}") from exc
    if not allow_private:
        reason = host_refusal(parsed.raw_host or "")
        if reason is not None:
            raise InvalidWebhookUrl(
                f"webhook URL host {parsed.raw_host!r} is {reason}; only public destinations are allowed"
            )
    return parsed


class HttpSender:
    """Posts deliveries on a session made on first use (it needs the running loop), up to ``connections`` at once."""

    def __init__(self, allow_private: bool, connections: int, resolver: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.connections = connections
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            limit_per_host=0,
            resolver=CheckedResolver(self.allow_private, self._resolver),
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # an endpoint's cookies must not ride along to the next delivery
            timeout=aiohttp.ClientTimeout(total=None),  # the worker bounds the whole attempt
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            trust_env=False,
        )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """One POST; redirects are not followed (a 3xx is a failed attempt) and cookies are not kept."""
        to = target(url, self.allow_private)
        session = self._session or self._open()
        try:
            return await _post(session, to, body, headers)
        except aiohttp.ClientConnectorError:
            raise  # no connection was made: a failed attempt
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # Most likely a kept-alive connection the endpoint closed as we sent on it: once more, on another. (If
            # the endpoint did take the delivery, it gets it twice, with the same webhook-id, which is allowed.)
            return await _post(session, to, body, headers)

    async def aclose(self) -> None:
        """Close every connection."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _post(session: aiohttp.ClientSession, to: URL, body: bytes, headers: Mapping[str, str]) -> Answer:
    async with session.post(to, data=body, headers=headers, allow_redirects=False) as response:
        answer = Answer(response.status, response.headers.get("Retry-After"))
        # Only the status counts, but an answer read to its end leaves the connection ready for the next request.
        left = READ_LIMIT
        while left > 0:
            chunk = await response.content.read(left)
            if not chunk:
                return answer
            left -= len(chunk)
        response.close()
        return answer
