"""The embedded default's writer: one sqlite3 connection on the event loop's thread that never blocks the loop
waiting for another process's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from execsvc.core.errors import Overloaded
from execsvc.db.uow import SqliteWriter


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    return path


async def test_a_lock_held_by_another_process_is_waited_for_without_blocking_the_loop(db_file: Path) -> None:
    other = sqlite3.connect(db_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    writer = SqliteWriter(str(db_file))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(ticker())
    try:
        waiting = asyncio.create_task(writer.connect())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert ticks >= 10  # the loop ran on while the writer waited
        other.execute("INSERT INTO t VALUES (1)")
        other.execute("COMMIT")
        conn = await asyncio.wait_for(waiting, 2)
        conn.execute(text("INSERT INTO t VALUES (2)"))
        conn.commit()
        conn.close()
        assert [r[0] for r in other.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
    finally:
        beat.cancel()
        other.close()
        writer.close()


async def test_a_lock_held_past_the_bound_is_overloaded(db_file: Path) -> None:
    other = sqlite3.connect(db_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = SqliteWriter(str(db_file), busy_seconds=0.1)
    try:
        with pytest.raises(Overloaded):
            await writer.connect()
    finally:
        other.execute("ROLLBACK")
        other.close()
        writer.close()


async def test_the_writer_leaves_the_checkpoint_to_others(db_file: Path) -> None:
    writer = SqliteWriter(str(db_file))
    try:
        conn = await writer.connect()
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        conn.rollback()
        conn.close()
    finally:
        writer.close()
