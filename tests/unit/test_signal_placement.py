"""A signal's order through the real pipeline (fakes of our own ports): placed once, its outcome on the signal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from execsvc.core.markets import MarketRules
from execsvc.core.orders import OrderStatus
from execsvc.core.values import Side
from execsvc.routing.breaker import Breakers
from execsvc.signals.orders import SignalOrder, signal_client_order_id
from execsvc.signals.placement import place_pending_signals, place_signal_order
from execsvc.signals.records import Refusal, SignalRecord, SignalStatus
from execsvc.signals.sizing import FixedNotional, FixedQty, RiskPerTrade
from tests.unit.test_risk_states import ACCOUNT, BTC, World

D = Decimal
RULES = MarketRules(BTC, D("0.01"), D("0.0001"), D("0.0001"), D(10))
SIGNAL = SignalOrder(UUID(int=42), ACCOUNT, BTC, Side.BUY, entry=D(50000), stop_loss=D(49000), source="strategy:s1")


class Outcomes:
    """What the signals store would be told, in order (it keeps the first outcome only)."""

    def __init__(self) -> None:
        self.calls: list[tuple[UUID, SignalStatus, UUID | None, Refusal | None]] = []

    async def settle(
        self,
        signal_id: UUID,
        status: SignalStatus,
        at: datetime,
        *,
        order_id: UUID | None = None,
        refusal: Refusal | None = None,
    ) -> object:
        self.calls.append((signal_id, status, order_id, refusal))
        return None


async def test_a_signal_places_one_market_order_through_the_pipeline_and_records_it() -> None:
    world, outcomes = World(), Outcomes()
    world.broker.script_submit(world.fills_at("50000"))  # type: ignore[arg-type]

    status = await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedQty(D("0.1")), RULES, equity=D(0))

    assert status is SignalStatus.ORDERED
    [order] = world.store.committed.orders.values()
    assert (order.status, order.qty, order.source) == (OrderStatus.FILLED, D("0.1"), "strategy:s1")
    assert order.client_order_id == signal_client_order_id(SIGNAL.signal_id)
    assert outcomes.calls == [(SIGNAL.signal_id, SignalStatus.ORDERED, order.id, None)]


async def test_placing_the_same_signal_again_finds_its_order_instead_of_making_another() -> None:
    world, outcomes = World(), Outcomes()
    world.broker.script_submit(world.fills_at("50000"))  # type: ignore[arg-type]
    await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedQty(D("0.1")), RULES, equity=D(0))

    again = await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedQty(D("0.1")), RULES, equity=D(0))

    assert again is SignalStatus.ORDERED
    assert len(world.store.committed.orders) == 1
    assert outcomes.calls[0][2] == outcomes.calls[1][2]  # the same order both times


async def test_a_risk_denial_is_recorded_on_the_signal_with_the_rejected_order_and_its_rules() -> None:
    world, outcomes = World(), Outcomes()

    status = await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedQty(D(5)), RULES, equity=D(0))

    assert status is SignalStatus.DENIED
    [order] = world.store.committed.orders.values()
    assert order.status is OrderStatus.REJECTED
    [(_, recorded, order_id, refusal)] = outcomes.calls
    assert (recorded, order_id) == (SignalStatus.DENIED, order.id)
    assert refusal is not None
    assert refusal.code == "risk_rejected"
    assert [v["rule"] for v in refusal.violations] == ["sufficient_balance"]  # 5 BTC is 250,000 USDT; it has 100,000
    assert world.broker.called("submit") == []


async def test_a_signal_without_a_tradable_size_places_nothing_and_says_why() -> None:
    world, outcomes = World(), Outcomes()

    status = await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedNotional(D(1)), RULES, equity=D(0))

    assert status is SignalStatus.REFUSED
    assert world.store.committed.orders == {}
    [(_, _, order_id, refusal)] = outcomes.calls
    assert order_id is None
    assert refusal is not None
    assert refusal.code == "below_min_qty"


async def test_a_signal_on_an_unlisted_market_is_refused_with_the_market_rule() -> None:
    world, outcomes = World(), Outcomes()
    eth = SignalOrder(UUID(int=43), ACCOUNT, "ETH/USDT", Side.BUY, entry=D(3000), source="strategy:s1")

    status = await place_signal_order(world.pipeline, outcomes, eth, FixedQty(D(1)), RULES, equity=D(0))

    assert status is SignalStatus.REFUSED
    refusal = outcomes.calls[0][3]
    assert refusal is not None
    assert refusal.code == "invalid_order"
    assert [v["rule"] for v in refusal.violations] == ["symbol_listed"]


async def test_an_open_broker_circuit_leaves_the_signal_pending_to_place_later() -> None:
    breakers = Breakers(failures=1)
    world, outcomes = World(breakers=breakers), Outcomes()
    breakers("fake").failed(world.clock.now())

    status = await place_signal_order(world.pipeline, outcomes, SIGNAL, FixedQty(D("0.1")), RULES, equity=D(0))

    assert status is None
    assert outcomes.calls == []
    assert world.store.committed.orders == {}


class Pending(Outcomes):
    """Pending signals of instances, as the signals store would list them."""

    def __init__(self, *records: SignalRecord) -> None:
        super().__init__()
        self.records = list(records)

    async def pending(self, account_id: str, instance_id: str) -> list[SignalRecord]:
        settled = {signal_id for signal_id, *_ in self.calls}
        return [r for r in self.records if r.instance_id == instance_id and r.id not in settled]


def pending_record(n: int, instance_id: str = "s1") -> SignalRecord:
    at = datetime(2026, 3, 2, 22, n, tzinfo=UTC)
    return SignalRecord(
        id=UUID(int=100 + n),
        account_id=ACCOUNT,
        source=f"strategy:{instance_id}",
        strategy="ema_rsi",
        instance_id=instance_id,
        symbol=BTC,
        timeframe="1m",
        side=Side.BUY,
        strength=0.5,
        confidence=0.7,
        rule="ema_cross_up_rsi_confirmed",
        reasons={},
        entry=D(50000),
        stop_loss=D(49000),
        take_profits=(D(51000),),
        at=at,
        created_at=at,
        updated_at=at,
    )


async def test_an_instances_pending_signals_are_placed_oldest_first_and_only_once() -> None:
    world = World()
    store = Pending(pending_record(1), pending_record(2), pending_record(3, instance_id="other"))
    world.broker.script_submit(world.fills_at("50000"), world.fills_at("50000"))  # type: ignore[arg-type]

    placed = await place_pending_signals(world.pipeline, store, ACCOUNT, "s1", RiskPerTrade(D("0.001")), RULES)
    again = await place_pending_signals(world.pipeline, store, ACCOUNT, "s1", RiskPerTrade(D("0.001")), RULES)

    assert (placed, again) == (2, 0)
    orders = sorted(world.store.committed.orders.values(), key=lambda o: o.created_at)
    assert [o.client_order_id for o in orders] == [
        signal_client_order_id(UUID(int=101)),
        signal_client_order_id(UUID(int=102)),
    ]
    assert {o.source for o in orders} == {"strategy:s1"}
    assert orders[0].qty == D("0.1")  # 0.1 % of 100,000 USDT over a 1,000 stop distance
