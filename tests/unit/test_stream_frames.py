"""An update's frame is built once and is a valid WebSocket frame for every connection: as it is, or compressed on
its own, which a permessage-deflate peer inflates whatever it inflated before."""

from __future__ import annotations

import json
import zlib

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from execsvc.streams.frames import deflate_message, message_frame, text_frame
from execsvc.streams.hub import JsonObject, Update


def parse(data: bytes, extensions: list[PerMessageDeflate] | None = None) -> Frame:
    """The frame as a client reads it (websockets' own parser, unmasked as a server sends)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, extensions=extensions)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_a_text_frame_of_any_length_reads_back(size: int) -> None:
    payload = b"x" * size
    frame = parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.rsv1, bytes(frame.data)) == (Opcode.TEXT, True, False, payload)


def test_an_update_is_framed_once_and_carries_its_text() -> None:
    update = Update("orders", 7, "order.filled", JsonObject('{"id":"o-1","qty":"0.01"}'))
    assert update.frame() is update.frame()
    frame = parse(update.frame())
    assert json.loads(bytes(frame.data)) == {
        "channel": "orders",
        "seq": 7,
        "event": "order.filled",
        "data": {"id": "o-1", "qty": "0.01"},
    }


def test_a_message_compressed_on_its_own_inflates_after_other_messages() -> None:
    """A peer that keeps its window (the client side of context takeover) inflates it as well as a fresh one."""
    peer = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=12,
        local_max_window_bits=12,
    )
    server = zlib.compressobj(6, zlib.DEFLATED, -12)  # what went before, compressed by the server's own compressor
    earlier = b'{"type":"subscribed","channel":"orders","seq":1}' * 3
    earlier_data = (server.compress(earlier) + server.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert bytes(parse(text_frame(earlier_data, compressed=True), [peer]).data) == earlier
    messages = [json.dumps({"channel": "orders", "seq": n, "data": {"id": f"o-{n}"}}).encode() for n in range(3)]
    for message in messages:
        assert message_frame(message, 12)[0] & 0x40  # RSV1: compressed on the wire
        frame = parse(message_frame(message, 12), [peer])
        assert (frame.rsv1, bytes(frame.data)) == (False, message)
    assert len(deflate_message(messages[0] * 4, 12)) < len(messages[0] * 4)


def test_a_window_too_small_for_zlib_is_sent_as_it_is() -> None:
    assert parse(message_frame(b"{}", 8)).rsv1 is False
