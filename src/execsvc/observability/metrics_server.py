"""``/metrics`` on a listener of its own (``EXECSVC_METRICS_PORT``), apart from the API's port: bound to a private
address, it keeps the metrics (position values among them) off the network the API is exposed to.

A minimal HTTP/1.1 responder on asyncio, in the service's own event loop: ``GET /metrics`` (and ``HEAD``) answers
the exposition, with the scrape token when one is set; anything else is 404. One request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

_MAX_HEAD = 16 * 1024
_READ_TIMEOUT = 10.0


class MetricsServer:
    """Serves ``render()`` at ``/metrics`` on ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[], Awaitable[bytes]],
        authorized: Callable[[str | None], bool],
        content_type: str,
    ) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._authorized = authorized
        self._type = content_type
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (raises OSError when the port is taken)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the one chosen, when asked for port 0
        log.info("metrics_listening", url=f"http://{self.host}:{self.port}/metrics")

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            if len(head) > _MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = [*lines[0].split(" "), "", ""]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if method not in ("GET", "HEAD") or path.split("?", 1)[0] != "/metrics":
                await self._answer(writer, 404, b"not found\n", "text/plain")
            elif not self._authorized(headers.get("authorization")):
                await self._answer(writer, 401, b"the scrape token is needed\n", "text/plain", bearer=True)
            else:
                body = await self._render()
                await self._answer(writer, 200, b"" if method == "HEAD" else body, self._type, length=len(body))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        *,
        bearer: bool = False,
        length: int | None = None,
    ) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
        head = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body) if length is None else length}",
            "Connection: close",
        ]
        if bearer:
            head.append('WWW-Authenticate: Bearer realm="execsvc-metrics"')
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
