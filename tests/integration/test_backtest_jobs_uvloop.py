"""The job runner reads its child's outcome under uvloop too (``execsvc serve`` runs on it): uvloop's ``add_reader``
leaves the pipe non-blocking, and a result that reaches the pipe in more than one piece used to fail the read with
BlockingIOError, leaving the job running for ever."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from execsvc.backtest.jobs import BacktestJobs
from execsvc.core.clock import SystemClock

RESULT = {"equity": ["1.0"] * 100_000}  # about a megabyte pickled: many times a pipe's buffer


def _writes_in_two_pieces(send: Connection) -> None:
    """What ``send.send`` writes, the second half a moment after the first (as a child busy between writes)."""
    time.sleep(0.3)  # the runner is waiting on the pipe (add_reader) before anything arrives
    body = pickle.dumps(("done", RESULT, {"trades": 0}))
    frame = struct.pack("!i", len(body)) + body
    fd = send.fileno()
    half = len(frame) // 2
    view = memoryview(frame)
    for piece in (view[:half], view[half:]):
        while piece:
            piece = piece[os.write(fd, piece) :]
        time.sleep(0.3)


@dataclass
class _Job:
    id: uuid.UUID


class _Store:
    async def progress(self, job_id: uuid.UUID, holder: str, done: int, total: int, at: datetime) -> str:
        return "running"


def test_a_result_written_in_pieces_is_read_under_uvloop() -> None:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_writes_in_two_pieces, args=(send,))
    child.start()
    send.close()
    jobs = BacktestJobs(_Store(), None, SystemClock(), "test")  # type: ignore[arg-type]

    async def follow() -> tuple[Any, ...]:
        return await jobs._follow(_Job(uuid.uuid4()), receive)  # the reading loop itself is the subject

    try:
        outcome = uvloop.run(follow())
    finally:
        receive.close()
        child.join(10)
    assert outcome[0] == "done"
    assert outcome[1] == RESULT
