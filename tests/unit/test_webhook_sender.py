"""The delivery worker's HTTP client (``webhooks/sender.py``) against a server on loopback: connections kept alive
per host, destinations checked at connect time, and nothing carried from one delivery to the next."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from execsvc.webhooks.sender import READ_LIMIT, Answer, CheckedResolver, HttpSender
from execsvc.webhooks.urls import InvalidWebhookUrl

HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}
# What the server does with a request: (status line, extra header lines, body), or None to drop the connection.
Reply = tuple[str, str, bytes] | None


@dataclass
class Server:
    """HTTP/1.1 on loopback that counts connections and records each request's head."""

    reply: Callable[[int, int], Reply] = lambda _n, _on_connection: ("200 OK", "", b"")
    connections: int = 0
    heads: list[str] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        on_connection = 0
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length")
                )
                await reader.readexactly(length)
                self.heads.append(head)
                on_connection += 1
                reply = self.reply(len(self.heads), on_connection)
                if reply is None:
                    return
                status, extra, body = reply
                writer.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    yield s
    await s.stop()


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    s = HttpSender(allow_private=True, connections=4)
    yield s
    await s.aclose()


async def test_deliveries_to_one_host_reuse_a_kept_alive_connection(server: Server, sender: HttpSender) -> None:
    port = await server.start()
    for n in range(20):
        answer = await sender.post(f"http://127.0.0.1:{port}/hook/{n % 3}", b'{"n":1}', HEADERS)
        assert answer == Answer(200, None)
    assert server.connections == 1
    assert len(server.heads) == 20


async def test_the_answer_is_read_so_the_connection_stays_usable_and_retry_after_is_kept(
    server: Server, sender: HttpSender
) -> None:
    server.reply = lambda n, _: ("503 Busy", "retry-after: 7\r\n", b"x" * 1000) if n == 1 else ("200 OK", "", b"ok")
    port = await server.start()
    assert await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS) == Answer(503, "7")
    assert await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS) == Answer(200, None)
    assert server.connections == 1


async def test_an_answer_past_the_read_limit_costs_its_connection_not_the_delivery(
    server: Server, sender: HttpSender
) -> None:
    server.reply = lambda n, _: ("200 OK", "", b"x" * READ_LIMIT * 16) if n == 1 else ("200 OK", "", b"")
    port = await server.start()
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 200
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 200
    assert server.connections == 2


async def test_a_kept_alive_connection_closed_by_the_endpoint_is_replaced_once(
    server: Server, sender: HttpSender
) -> None:
    server.reply = lambda _, on_connection: None if on_connection == 2 else ("200 OK", "", b"")
    port = await server.start()
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 200
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 200  # sent again, anew
    assert server.connections == 2
    assert len(server.heads) == 3


async def test_redirects_are_not_followed_and_cookies_not_kept(server: Server, sender: HttpSender) -> None:
    server.reply = lambda _n, _c: ("302 Found", "location: http://127.0.0.1:9/\r\nset-cookie: s=1\r\n", b"")
    port = await server.start()
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 302
    assert (await sender.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS)).status == 302
    assert len(server.heads) == 2
    assert all("cookie" not in head.lower().replace("set-cookie", "") for head in server.heads)
    assert "webhook-id: msg_1" in server.heads[0]


class Answers(AbstractResolver):
    """A resolver that answers every name with the given addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append((host, port))
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=socket.AI_NUMERICHOST)
            for a in self.addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [(("127.0.0.1",), "loopback"), (("93.184.216.34", "10.0.0.7"), "private"), (("::ffff:169.254.169.254",), "link")],
)
async def test_a_name_is_refused_at_connect_time_if_any_address_is_not_public(
    addresses: tuple[str, ...], reason: str
) -> None:
    resolver = Answers(*addresses)
    sender = HttpSender(allow_private=False, connections=4, resolver=resolver)
    try:
        with pytest.raises(InvalidWebhookUrl, match=reason):
            await sender.post("https://hooks.example.com:8443/x", b"{}", HEADERS)
    finally:
        await sender.aclose()
    assert resolver.asked == [("hooks.example.com", 8443)]


async def test_the_connection_goes_to_the_address_that_was_checked(server: Server) -> None:
    port = await server.start()
    sender = HttpSender(allow_private=True, connections=4, resolver=Answers("127.0.0.1"))
    try:
        assert (await sender.post(f"http://hooks.example.com:{port}/x", b"{}", HEADERS)).status == 200
    finally:
        await sender.aclose()
    assert "host: hooks.example.com" in server.heads[0].lower()


async def test_a_name_that_does_not_resolve_is_an_invalid_destination() -> None:
    class Fails(Answers):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            raise OSError("no such host")

    with pytest.raises(InvalidWebhookUrl, match="does not resolve"):
        await CheckedResolver(allow_private=True, inner=Fails()).resolve("nowhere.example", 443)
    with pytest.raises(InvalidWebhookUrl, match="no address"):
        await CheckedResolver(allow_private=True, inner=Answers()).resolve("nowhere.example", 443)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://localhost:9/", "http://127\u30020\u30020\u30021/", "http://[::1]:9/"]
)
async def test_private_ip_literals_and_loopback_names_are_refused_before_any_connection(url: str) -> None:
    resolver = Answers("93.184.216.34")
    sender = HttpSender(allow_private=False, connections=4, resolver=resolver)
    try:
        with pytest.raises(InvalidWebhookUrl, match="only public destinations"):
            await sender.post(url, b"{}", HEADERS)
    finally:
        await sender.aclose()
    assert resolver.asked == []
