"""Fixtures of the venue tests: the fake Binance, and the service started (and restarted) against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from execsvc.bootstrap import Container
from tests.conftest import Harness, start_harness
from tests.support.fake_exchange import FakeBinance
from tests.support.venue import FAST, KEY, MARKETS, SECRET, Start


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    venue = FakeBinance(markets=MARKETS, fee_bps=Decimal(10))
    await venue.start()
    venue.add_account(KEY, SECRET, {"USDT": Decimal(100000)})
    yield venue
    await venue.stop()


@pytest.fixture
async def start(db_url: str, fake: FakeBinance) -> AsyncIterator[Start]:
    """Start the service (again and again, on the same database); everything started is stopped at the end, before
    the fake venue (whose WebSocket connections the service holds) stops."""
    running: list[tuple[Harness, Container]] = []

    async def launch(**overrides: Any) -> Harness:
        h, container = await start_harness(db_url, **{**FAST, **overrides})
        running.append((h, container))
        return h

    yield launch
    for h, container in running:
        await h.client.aclose()
        await container.stop()
