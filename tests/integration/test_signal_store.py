"""The signal repository on SQLite and PostgreSQL: one signal per instance and bar, outcomes set once, keyset pages
and filters, and the outbox rows written with each write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import select

from execsvc.db import tables as t
from execsvc.db.admin import ensure_account
from execsvc.db.engine import make_engine
from execsvc.db.signals import SIGNAL_CREATED, SIGNAL_UPDATED, SignalRepository
from execsvc.signals.records import Refusal, SignalRecord, SignalStatus
from tests.support.signals import T0, stored_signal


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SignalRepository]:
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        for account in ("acct-a", "acct-b"):
            await ensure_account(conn, account, "paper", "USDT", {}, T0)
    yield SignalRepository(engine)
    await engine.dispose()


def signal(
    minute: int = 0, *, instance_id: str | None = "inst-1", account_id: str = "acct-a", symbol: str = "BTC/USDT"
) -> SignalRecord:
    return stored_signal(minute, instance_id, account_id=account_id, symbol=symbol)


async def outbox(store: SignalRepository) -> list[tuple[str, str, dict[str, object]]]:
    o = t.outbox.c
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(o.topic, o.account_id, o.payload).order_by(o.id))).all()
    return [(r.topic, r.account_id, json.loads(r.payload)) for r in rows]


async def test_a_signal_is_stored_with_exact_prices_and_scores_and_announced(store: SignalRepository) -> None:
    made = signal()
    stored, new = await store.add(made)
    assert new
    assert stored == made
    got = await store.get("acct-a", made.id)
    assert got == made
    assert got is not None
    assert got.strength == 0.1 + 0.2
    assert got.confidence == 2 / 3
    assert got.take_profits == (Decimal("65200.1"), Decimal("65300.1"), Decimal("65400.1"))
    assert dict(got.reasons) == {"ema_fast": 65010.5, "ema_slow": 64990.25, "regime": "trend"}
    events = await outbox(store)
    assert [(topic, account) for topic, account, _ in events] == [(SIGNAL_CREATED, "acct-a")]
    data = events[0][2]
    assert data["id"] == str(made.id)
    assert data["source"] == "strategy:inst-1"
    assert data["take_profits"] == ["65200.1", "65300.1", "65400.1"]
    assert data["status"] == "pending"
    assert data["refusal"] is None
    assert await store.get("acct-b", made.id) is None  # another account's signal is not found


async def test_the_same_bar_of_one_instance_makes_one_signal_and_returns_the_first(store: SignalRepository) -> None:
    first, _ = await store.add(signal(3))
    again, new = await store.add(replace(signal(3), rule="another_rule"))  # another id, the same (instance, at)
    assert not new
    assert again == first
    same_id, new = await store.add(replace(first, at=T0))
    assert not new
    assert same_id == first
    other_instance, new = await store.add(signal(3, instance_id="inst-2"))
    assert new
    # Inbound signals have no instance: NULLs never collide.
    assert (await store.add(signal(3, instance_id=None)))[1]
    assert (await store.add(signal(3, instance_id=None)))[1]
    assert [topic for topic, _, _ in await outbox(store)] == [SIGNAL_CREATED] * 4
    page = await store.page("acct-a", limit=10)
    assert len(page.items) == 4
    assert other_instance in page.items


async def test_an_outcome_is_set_once_and_announced(store: SignalRepository) -> None:
    ordered, refused, denied = signal(1), signal(2), signal(3)
    for s in (ordered, refused, denied):
        await store.add(s)
    later = T0 + timedelta(hours=1)
    order_id = uuid4()
    done = await store.ordered(ordered.id, order_id, later)
    assert done is not None
    assert (done.status, done.order_id, done.refusal, done.updated_at) == (SignalStatus.ORDERED, order_id, None, later)
    sizing = Refusal("below_min_qty", "the sized qty 0.00001 is below the market's minimum 0.0001")
    no = await store.refused(refused.id, sizing, later)
    assert no is not None
    assert (no.status, no.order_id, no.refusal) == (SignalStatus.REFUSED, None, sizing)
    violation = {"rule": "max_position", "limit": "1", "value": "1.5", "message": "position would exceed 1"}
    denial = Refusal("risk_rejected", "position would exceed 1", (violation,))
    rejected_order = uuid4()
    den = await store.denied(denied.id, denial, later, order_id=rejected_order)
    assert den is not None
    assert (den.status, den.order_id, den.refusal) == (SignalStatus.DENIED, rejected_order, denial)
    assert await store.get("acct-a", denied.id) == den
    # Set once: a second outcome leaves the first, and announces nothing.
    assert await store.refused(ordered.id, sizing, later + timedelta(hours=1)) == done
    assert await store.ordered(uuid4(), order_id, later) is None
    events = await outbox(store)
    assert [topic for topic, _, _ in events] == [SIGNAL_CREATED] * 3 + [SIGNAL_UPDATED] * 3
    assert events[-1][2]["refusal"] == {
        "code": "risk_rejected",
        "reason": "position would exceed 1",
        "violations": [violation],
    }
    assert events[-1][2]["status"] == "denied"
    assert events[-3][2]["order_id"] == str(order_id)
    with pytest.raises(ValueError, match="order_id"):
        await store.settle(refused.id, SignalStatus.ORDERED, later)
    with pytest.raises(ValueError, match="refusal"):
        await store.settle(refused.id, SignalStatus.DENIED, later)
    with pytest.raises(ValueError, match="outcome"):
        await store.settle(refused.id, SignalStatus.PENDING, later)


async def test_pages_go_newest_first_without_overlap_and_filter(store: SignalRepository) -> None:
    made = [
        signal(i, instance_id="inst-1" if i % 2 else "inst-2", symbol="ETH/USDT" if i % 3 == 0 else "BTC/USDT")
        for i in range(25)
    ]
    for s in made:
        await store.add(s)
    await store.add(signal(0, account_id="acct-b"))
    # Two stored in the same instant: the id breaks the tie, and no page loses or repeats one.
    twins = [replace(signal(30, instance_id=f"twin-{i}"), created_at=T0 + timedelta(hours=2)) for i in range(3)]
    for s in twins:
        await store.add(s)
    seen: list[SignalRecord] = []
    before = None
    while True:
        page = await store.page("acct-a", limit=4, before=before)
        seen.extend(page.items)
        if page.last is None:
            break
        before = page.last
    expected = sorted([*made, *twins], key=lambda s: (s.created_at, s.id), reverse=True)
    assert [s.id for s in seen] == [s.id for s in expected]
    eth = await store.page("acct-a", symbol="ETH/USDT", limit=100)
    assert {s.id for s in eth.items} == {s.id for s in made if s.symbol == "ETH/USDT"}
    inst = await store.page("acct-a", instance_id="inst-1", limit=100)
    assert {s.id for s in inst.items} == {s.id for s in made if s.instance_id == "inst-1"}
    await store.ordered(made[5].id, uuid4(), T0 + timedelta(hours=3))
    ordered = await store.page("acct-a", status="ordered", limit=100)
    assert [s.id for s in ordered.items] == [made[5].id]
    assert len((await store.page("acct-b", limit=100)).items) == 1
