"""An update's WebSocket frame, built once and written as it is to every connection that takes it.

A server's frames are not masked (RFC 6455 5.1), so a text message is the same bytes on every connection: its
header, then its UTF-8 text. With permessage-deflate (RFC 7692) a connection may still be sent a message that is not
compressed (RSV1 clear, 6.1), and a message compressed on its own, referring to no earlier one, inflates on any peer
whatever its window holds; the server must only not have promised to refer back to its earlier messages itself
(``server_no_context_takeover``, which ``streams/server_protocol.py`` negotiates). So compression too is done once
per message and window size, not once per connection.
"""

from __future__ import annotations

import struct
import zlib

FIN_TEXT = 0x81  # the final (and only) frame of a text message
RSV1 = 0x40  # the message is compressed (permessage-deflate)
MIN_WINDOW_BITS = 9  # zlib makes no raw deflate stream with a smaller window
_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; RFC 7692 7.2.1 leaves it off the wire


def text_frame(payload: bytes, compressed: bool = False) -> bytes:
    """One unmasked, unfragmented text frame carrying ``payload`` (already deflated when ``compressed``)."""
    head = FIN_TEXT | RSV1 if compressed else FIN_TEXT
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", head, size)
    elif size < 65536:
        header = struct.pack("!BBH", head, 126, size)
    else:
        header = struct.pack("!BBQ", head, 127, size)
    return header + payload


def deflate_message(text: bytes, window_bits: int) -> bytes:
    """``text`` compressed as a message of its own for a peer that allows the server ``window_bits``."""
    encoder = zlib.compressobj(6, zlib.DEFLATED, -window_bits, 8)
    data = encoder.compress(text) + encoder.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(_SYNC_FLUSH_TAIL)
    return data[:-4]


def message_frame(text: bytes, window_bits: int = 0) -> bytes:
    """The frame of a text message: compressed for a window of ``window_bits`` (0: not compressed)."""
    if window_bits < MIN_WINDOW_BITS:
        return text_frame(text)
    return text_frame(deflate_message(text, window_bits), compressed=True)
