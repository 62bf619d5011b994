"""uvicorn's WebSocket protocol, offering the stream endpoint one more thing: writing a prebuilt frame to the socket.

ASGI sends a message through the server, which frames (and, with permessage-deflate, compresses) it for that one
connection: for an update going to hundreds of connections that is hundreds of times the same work, and the
framework's send path on top. This protocol puts a ``FrameSocket`` in the connection's scope (the ASGI extension
``FRAMES``); the stream endpoint writes each update's frame, built once (``streams/frames.py``), to every socket
that can take it now, and sends through ASGI as before otherwise (and on any other server). Everything else,
control messages and closing included, stays uvicorn's.

With compression on, it negotiates ``server_no_context_takeover``: the server compresses each message on its own,
so a message compressed once can go to every connection (compression is a little weaker for it).

``execsvc serve`` selects it with ``uvicorn.run(..., ws=FrameProtocol)``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from execsvc.streams.frames import MIN_WINDOW_BITS

FRAMES = "execsvc.websocket.frames"  # the scope's extension: a FrameSocket
WINDOW_BITS = 12  # uvicorn's: a 4 kB window each way
MEM_LEVEL = 5  # uvicorn's


class FrameSocket:
    """Writes a connection's prebuilt frames to its socket, when the socket can take them now.

    The fan-out writes ``soon``: the frames one turn of the event loop gives a connection (an append's updates
    arrive together) go out in one send. Anything else written or sent on the connection must ``flush`` first."""

    __slots__ = ("_pending", "_protocol")

    def __init__(self, protocol: FrameProtocol) -> None:
        self._protocol = protocol
        self._pending: list[bytes] = []

    @property
    def window_bits(self) -> int:
        """The window of the messages this connection is sent compressed (0: it is sent them as they are).

        Known once the connection is accepted; a connection whose peer may rely on the server's earlier messages
        (no ``server_no_context_takeover``) is sent them as they are, which is always allowed."""
        for extension in self._protocol.conn.extensions:
            if isinstance(extension, PerMessageDeflate) and extension.local_no_context_takeover:
                bits = extension.local_max_window_bits or 15
                return bits if bits >= MIN_WINDOW_BITS else 0
        return 0

    def write(self, frame: bytes, soon: bool = False) -> bool:
        """Write the frame now (``soon``: at the end of this turn of the event loop, with the others written
        then), unless the connection is closing or its socket is not draining (False: send it later, through ASGI,
        which waits for the socket). Only called once the app has accepted the connection."""
        p = self._protocol
        if p.close_sent or p.paused:
            return False
        transport = p.transport
        if transport.is_closing():  # closed by the peer, lost, or failed by the keepalive
            return False
        pending = self._pending
        if soon:
            if not pending:
                p.loop.call_soon(self.flush)
            pending.append(frame)
        elif pending:
            pending.append(frame)
            self.flush()
        else:
            transport.write(frame)
        return True

    def flush(self) -> None:
        """Send the frames written ``soon`` (dropped if the connection began closing meanwhile)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        p = self._protocol
        if p.close_sent or p.transport.is_closing():
            return
        p.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down: reconnect and subscribe with since_seq = the last seq you saw"


class FrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a ``FrameSocket`` in every connection's scope."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            factory = ServerPerMessageDeflateFactory(
                server_no_context_takeover=True,
                server_max_window_bits=WINDOW_BITS,
                client_max_window_bits=WINDOW_BITS,
                compress_settings={"memLevel": MEM_LEVEL},
            )
            self.conn = ServerProtocol(
                extensions=[factory], max_size=config.ws_max_size, logger=logging.getLogger("uvicorn.error")
            )

    paused = False  # the transport's buffer is over its high-water mark (``writable`` is clear)

    def pause_writing(self) -> None:
        self.paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        super().resume_writing()

    def shutdown(self) -> None:
        """The server is stopping (SIGTERM): close with 1001 (going away) and a reason that says what to do, where
        uvicorn sends 1012 without a word. Every update has a sequence number: a client that reconnects (to another
        instance, or to this one once it is back) and subscribes with ``since_seq`` misses nothing."""
        if self.close_sent or not self.handshake_complete:
            super().shutdown()
            return
        if self.conn.state is not State.OPEN:  # the client's close is in: the connection is ending anyway
            self.stop_keepalive()
            self.transport.close()
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        self.conn.send_close(GOING_AWAY, SHUTDOWN_REASON)
        self.close_sent = True
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # None: the upgrade was refused
        if scope is not None:
            scope["extensions"][FRAMES] = FrameSocket(self)
