"""A webhook receiver on loopback for tests: records every request and answers from a script.

A minimal HTTP/1.1 server on asyncio (one request per connection is enough for the worker's client, which may
keep connections alive; the server reads requests in a loop). ``script`` holds, per request, an answer: a status
code, a (status, headers) pair, or ``HANG`` to never answer. With the script empty it answers ``default``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

HANG = "hang"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    default: int = 200
    script: deque[Any] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.AbstractServer | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait_for(self, count: int, within: float = 15.0) -> list[Received]:
        """Wait until ``count`` requests have arrived."""

        async def enough() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.received) >= count)

        await asyncio.wait_for(enough(), within)
        return list(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = self.script.popleft() if self.script else self.default
                async with self.arrived:
                    self.received.append(Received(path, headers, body))
                    self.arrived.notify_all()
                if answer == HANG:
                    await asyncio.sleep(3600)
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                extra_lines = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{extra_lines}\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
