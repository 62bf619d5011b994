"""The strategy interface (``execsvc.strategies``): bars, signal records, the base's state, cooldown and checks.

The bar series built here (seeded random walks and hand-built shapes, all on a 0.01 tick, one bar a minute) are
shared with the other ``test_strategies_*`` modules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from execsvc.core.errors import ExecsvcError
from execsvc.core.markets import MarketRules
from execsvc.core.values import Side
from execsvc.strategies import (
    KINDS,
    STATE_LAST_EPISODE,
    STATE_LAST_SIGNAL_AT,
    STATE_LAST_SIGNAL_SIDE,
    Bar,
    Signal,
    Strategy,
    build_strategy,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
TICK = Decimal("0.01")
SYMBOL = "BTC/USDT"


# -- bar series ---------------------------------------------------------------------------------------------------


def _price(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def bars_from_closes(closes: Sequence[float], spread: float = 0.05, start: datetime = START) -> list[Bar]:
    """One-minute bars with these closes: each opens at the previous close, high/low ``spread`` beyond the body."""
    bars = []
    previous = closes[0]
    for index, close in enumerate(closes):
        high = max(previous, close) + spread
        low = min(previous, close) - spread
        open_time = start + timedelta(minutes=index)
        bars.append(
            Bar(
                SYMBOL,
                "1m",
                open_time,
                open_time + timedelta(minutes=1),
                _price(previous),
                _price(high),
                _price(low),
                _price(close),
                Decimal(1),
            )
        )
        previous = close
    return bars


def random_walk_bars(count: int, seed: int, volatility: float = 0.004) -> list[Bar]:
    """A seeded geometric random walk from 100 with random wicks."""
    rng = random.Random(seed)
    bars = []
    close = 100.0
    for index in range(count):
        open_ = close
        close = round(open_ * math.exp(rng.gauss(0.0, volatility)), 2)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, volatility / 3))), 2)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, volatility / 3))), 2)
        open_time = START + timedelta(minutes=index)
        bars.append(
            Bar(
                SYMBOL,
                "1m",
                open_time,
                open_time + timedelta(minutes=1),
                _price(open_),
                _price(high),
                _price(low),
                _price(close),
                Decimal(round(rng.lognormvariate(1.0, 0.5), 4)),
            )
        )
    return bars


def regime_walk_closes(count: int, seed: int) -> list[float]:
    """A random walk whose drift changes every 150 bars: trends of both signs and trendless stretches."""
    rng = random.Random(seed)
    price = 100.0
    closes = []
    drift = 0.0
    for index in range(count):
        if index % 150 == 0:
            drift = rng.choice([-0.002, 0.0, 0.0, 0.002, 0.004, -0.004])
        price *= math.exp(drift * 0.5 + rng.gauss(0.0, 0.003))
        closes.append(round(price, 2))
    return closes


def choppy_closes(count: int, seed: int, phi: float = 0.5, sd: float = 0.15) -> list[float]:
    """A mean-reverting range around 100 (an AR(1) process): the smoothed ADX stays mostly below 18."""
    rng = random.Random(seed)
    level = 0.0
    closes = []
    for _ in range(count):
        level = phi * level + rng.gauss(0.0, sd)
        closes.append(round(100.0 + level, 2))
    return closes


def v_closes(
    down: int = 60, up: int = 60, step: float = 0.2, wiggle: float = 0.3, up_step: float | None = None
) -> list[float]:
    """A clean downtrend then a clean uptrend from 100, alternately ``wiggle`` above and below the line."""
    closes = []
    price = 100.0
    for index in range(down + up):
        price += -step if index < down else (up_step if up_step is not None else step)
        closes.append(round(price + (wiggle if index % 2 else -wiggle), 2))
    return closes


def run(strategy: Strategy[Any], bars: Sequence[Bar], state: dict[str, Any] | None = None) -> list[Signal]:
    """Feed every bar through ``on_bar`` and collect the signals."""
    state = {} if state is None else state
    signals: list[Signal] = []
    for bar in bars:
        signals.extend(strategy.on_bar(bar, state))
    return signals


def make_bar(price: str = "100", **changes: Any) -> Bar:
    """One valid bar opening, closing, high and low at ``price``, with any field replaced."""
    fields: dict[str, Any] = {
        "symbol": SYMBOL,
        "timeframe": "1m",
        "open_time": START,
        "close_time": START + timedelta(minutes=1),
        "open": Decimal(price),
        "high": Decimal(price),
        "low": Decimal(price),
        "close": Decimal(price),
        "volume": Decimal(1),
    }
    fields.update(changes)
    return Bar(**fields)


# -- Bar ----------------------------------------------------------------------------------------------------------


def test_bar_accepts_a_consistent_utc_candle() -> None:
    bar = make_bar("100.5", high=Decimal("101"), low=Decimal("99.5"), open=Decimal("100"))
    assert bar.close == Decimal("100.5")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"open_time": datetime(2026, 1, 1)}, "UTC"),
        ({"close_time": datetime(2026, 1, 1, 0, 1, tzinfo=timezone(timedelta(hours=1)))}, "UTC"),
        ({"close_time": START}, "not after"),
        ({"high": Decimal("99")}, "out of order"),
        ({"low": Decimal("101")}, "out of order"),
        ({"open": Decimal("0"), "low": Decimal("0")}, "positive"),
        ({"volume": Decimal("-1")}, "volume"),
        ({"close": Decimal("NaN")}, "finite"),
    ],
)
def test_bar_refuses_inconsistent_candles(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_bar("100", **changes)


# -- Signal -------------------------------------------------------------------------------------------------------


def make_signal(**changes: Any) -> Signal:
    fields: dict[str, Any] = {
        "strategy": "ema_rsi",
        "symbol": SYMBOL,
        "timeframe": "1m",
        "side": Side.BUY,
        "strength": 0.5,
        "confidence": 0.75,
        "rule": "ema_cross_up_rsi_confirmed",
        "reasons": {"rsi": 55.5, "regime": "trend"},
        "entry": Decimal("100.00"),
        "stop_loss": Decimal("98.50"),
        "take_profits": (Decimal("102.00"), Decimal("103.00"), Decimal("104.00")),
        "at": START,
    }
    fields.update(changes)
    return Signal(**fields)


def test_signal_serialises_to_json_ready_values() -> None:
    signal = make_signal()
    payload = signal.to_json()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["entry"] == "100"
    assert payload["stop_loss"] == "98.5"
    assert payload["take_profits"] == ["102", "103", "104"]
    assert payload["side"] == "buy"
    assert payload["at"] == "2026-01-01T00:00:00+00:00"
    assert payload["instance_id"] is None
    assert payload["reasons"] == {"rsi": 55.5, "regime": "trend"}


def test_runner_adds_the_instance_id_with_replace() -> None:
    signal = dataclasses.replace(make_signal(), instance_id="inst-1")
    assert signal.instance_id == "inst-1"
    assert signal.to_json()["instance_id"] == "inst-1"


def test_signal_reasons_are_read_only() -> None:
    reasons = {"rsi": 55.5}
    signal = make_signal(reasons=reasons)
    reasons["rsi"] = 1.0  # the caller's dict is copied
    assert signal.reasons["rsi"] == 55.5
    with pytest.raises(TypeError):
        signal.reasons["rsi"] = 2.0  # type: ignore[index]


@pytest.mark.parametrize(
    "changes",
    [
        {"strength": 1.01},
        {"confidence": -0.1},
        {"stop_loss": Decimal("100.00")},
        {"stop_loss": Decimal("101.00")},
        {"take_profits": (Decimal("100.00"), Decimal("103"), Decimal("104"))},
        {"side": Side.SELL},
    ],
)
def test_signal_refuses_scores_out_of_range_and_levels_on_the_wrong_side(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be within|side of entry|beyond entry"):
        make_signal(**changes)


# -- the base: checks, state, cooldown, warm-up ---------------------------------------------------------------------


def test_a_strategy_on_a_market_refuses_bars_of_another_symbol() -> None:
    rules = MarketRules("ETH/USDT", TICK, Decimal("0.0001"), Decimal("0.0001"), Decimal(5))
    strategy = build_strategy("ema_rsi", {}, rules)
    assert strategy.tick_size == TICK
    with pytest.raises(ValueError, match="BTC/USDT"):
        strategy.on_bar(make_bar(), {})


def test_bars_must_come_in_time_order() -> None:
    strategy = build_strategy("ema_rsi", {}, TICK)
    strategy.on_bar(make_bar(), {})
    with pytest.raises(ValueError, match="not after"):
        strategy.on_bar(make_bar(), {})
    with pytest.raises(ValueError, match="not after"):
        strategy.warm_up([make_bar()])


@pytest.mark.parametrize("tick", [Decimal(0), Decimal(-1), Decimal("NaN")])
def test_tick_size_must_be_positive(tick: Decimal) -> None:
    with pytest.raises(ValueError, match="tick_size"):
        build_strategy("ema_rsi", {}, tick)


def test_no_signal_until_the_indicators_have_values() -> None:
    strategy = build_strategy("macd_bb", {}, TICK)
    bars = random_walk_bars(33, seed=1)  # the MACD's first value is on bar index 33
    state: dict[str, Any] = {}
    assert run(strategy, bars, state) == []
    assert state == {}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_state_is_json_and_changes_only_when_a_signal_is_emitted(kind: str) -> None:
    strategy = build_strategy(kind, {}, TICK)
    state: dict[str, Any] = {}
    emitted = 0
    for bar in random_walk_bars(1500, seed=3):
        before = dict(state)
        signals = strategy.on_bar(bar, state)
        if signals:
            emitted += 1
            (signal,) = signals
            assert state[STATE_LAST_SIGNAL_AT] == bar.close_time.isoformat() == signal.at.isoformat()
            assert state[STATE_LAST_SIGNAL_SIDE] == signal.side.value
            assert state[STATE_LAST_EPISODE].startswith(signal.rule + "@")
        else:
            assert state == before
        assert json.loads(json.dumps(state)) == state
    assert emitted > 5


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_signals_carry_the_bar_and_kind_they_came_from(kind: str) -> None:
    bars = random_walk_bars(1500, seed=4)
    by_time = {bar.close_time: bar for bar in bars}
    signals = run(build_strategy(kind, {}, TICK), bars)
    assert signals
    for signal in signals:
        bar = by_time[signal.at]
        assert (signal.strategy, signal.symbol, signal.timeframe) == (kind, bar.symbol, bar.timeframe)
        assert signal.entry == bar.close  # the closes are on the tick already
        assert 0.0 <= signal.strength <= 1.0
        assert 0.0 <= signal.confidence <= 1.0
        assert signal.reasons["atr"] > 0
        assert json.loads(json.dumps(signal.to_json())) == signal.to_json()


def test_warm_up_emits_nothing_and_on_bar_carries_on_from_where_it_stopped() -> None:
    bars = bars_from_closes(v_closes())
    (signal,) = run(build_strategy("ema_rsi", {}, TICK), bars)
    cross = bars.index(next(bar for bar in bars if bar.close_time == signal.at))
    warmed = build_strategy("ema_rsi", {}, TICK)
    warmed.warm_up(bars[:cross])
    assert run(warmed, bars[cross:]) == [signal]
    # Warming up through the cross itself is history: no signal for it, ever.
    past = build_strategy("ema_rsi", {}, TICK)
    past.warm_up(bars[: cross + 1])
    assert run(past, bars[cross + 1 :]) == []


def test_cooldown_drops_signals_closer_than_it_to_the_last_one() -> None:
    bars = random_walk_bars(3000, seed=5)
    free = run(build_strategy("ema_rsi", {}, TICK), bars)
    cooldown = timedelta(minutes=20)
    cooled = run(build_strategy("ema_rsi", {"cooldown_seconds": 1200}, TICK), bars)
    # ema_rsi signals only on a cross bar, so with a cooldown it keeps exactly the greedy selection of the others.
    expected: list[Signal] = []
    for signal in free:
        if not expected or signal.at - expected[-1].at >= cooldown:
            expected.append(signal)
    assert cooled == expected
    assert len(expected) < len(free)


def test_cooldown_counts_from_the_persisted_last_signal_time() -> None:
    bars = bars_from_closes(v_closes())
    (signal,) = run(build_strategy("ema_rsi", {}, TICK), bars)
    # The same bars, but the state says the instance signalled one minute before: inside a 3-minute cooldown...
    state = {STATE_LAST_SIGNAL_AT: (signal.at - timedelta(minutes=1)).isoformat()}
    assert run(build_strategy("ema_rsi", {"cooldown_seconds": 180}, TICK), bars, state) == []
    # ...exactly 3 minutes before is outside it.
    state = {STATE_LAST_SIGNAL_AT: (signal.at - timedelta(minutes=3)).isoformat()}
    assert run(build_strategy("ema_rsi", {"cooldown_seconds": 180}, TICK), bars, state) == [signal]


def test_an_episode_that_already_signalled_does_not_signal_again() -> None:
    bars = bars_from_closes(v_closes())
    strategy = build_strategy("ema_rsi", {}, TICK)
    (signal,) = run(strategy, bars)
    # Replaying the same bars with the state it left (a runner that reprocesses a bar after a crash) adds nothing.
    state = {STATE_LAST_EPISODE: f"{signal.rule}@{signal.at.isoformat()}"}
    assert run(build_strategy("ema_rsi", {}, TICK), bars, state) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_same_bars_give_the_same_signals(kind: str) -> None:
    bars = random_walk_bars(3000, seed=6)
    first = run(build_strategy(kind, {}, TICK), bars)
    second = run(build_strategy(kind, {}, TICK), list(bars))
    assert first
    assert first == second
    assert [s.to_json() for s in first] == [s.to_json() for s in second]


def test_strategy_errors_are_domain_errors_with_codes() -> None:
    from execsvc.strategies import InvalidStrategyParams, UnknownStrategy

    assert issubclass(InvalidStrategyParams, ExecsvcError)
    assert issubclass(UnknownStrategy, ExecsvcError)
    assert InvalidStrategyParams.code == "invalid_strategy_params"
    assert UnknownStrategy.code == "unknown_strategy"
