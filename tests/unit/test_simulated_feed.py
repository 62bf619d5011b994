"""The seeded simulated feed: replayable, tick-aligned, positive, float-free price paths."""

from __future__ import annotations

from decimal import Decimal

from execsvc.core.clock import FakeClock
from execsvc.core.money import is_multiple
from execsvc.marketdata.book import MarketConfig
from execsvc.marketdata.simulated import SimulatedFeed

D = Decimal
MARKETS = [
    MarketConfig("BTC/USDT", D("0.01"), D("0.00001"), D("0.00001"), D(5), D(65000)),
    MarketConfig("SOL/USDT", D("0.001"), D("0.01"), D("0.01"), D(1), D(150)),
    # Starts a few ticks above the floor, so a long walk at high volatility hits the one-tick minimum.
    MarketConfig("DUST/USDT", D(1), D(1), D(1), D(1), D(3)),
]


def path(seed: int, steps: int = 300, volatility_bps: int = 5) -> list[dict[str, Decimal]]:
    clock = FakeClock()
    feed = SimulatedFeed(MARKETS, clock, seed=seed, volatility_bps=volatility_bps)
    out = []
    for _ in range(steps):
        clock.advance(1)
        out.append({symbol: quote.price for symbol, quote in feed.step().items()})
    return out


def test_same_seed_gives_the_same_path() -> None:
    assert path(7) == path(7)


def test_different_seeds_give_different_paths() -> None:
    first, second = path(7), path(8)
    assert first != second
    assert [p["BTC/USDT"] for p in first] != [p["BTC/USDT"] for p in second]


def test_symbols_walk_independently_of_each_other() -> None:
    btc = [p["BTC/USDT"] / D(65000) for p in path(7)]
    sol = [p["SOL/USDT"] / D(150) for p in path(7)]
    assert btc != sol


def test_the_feed_starts_at_the_configured_prices() -> None:
    feed = SimulatedFeed(MARKETS, FakeClock(), seed=1)
    for market in MARKETS:
        quote = feed.mark(market.symbol)
        assert quote is not None
        assert quote.price == market.start_price


def test_prices_are_positive_multiples_of_the_tick() -> None:
    ticks = {m.symbol: m.tick_size for m in MARKETS}
    steps = path(3, steps=500, volatility_bps=5000)
    for step in steps:
        for symbol, price in step.items():
            assert price > 0
            assert price >= ticks[symbol]
            assert is_multiple(price, ticks[symbol]), (symbol, price)
    assert min(step["DUST/USDT"] for step in steps) == ticks["DUST/USDT"]  # the floor was reached and held


def test_prices_are_decimals_never_floats() -> None:
    for step in path(11, steps=100):
        for price in step.values():
            assert type(price) is Decimal


def test_the_path_actually_moves() -> None:
    assert len({p["BTC/USDT"] for p in path(5)}) > 10


def test_each_step_stamps_the_marks_with_the_clock() -> None:
    clock = FakeClock()
    feed = SimulatedFeed(MARKETS, clock, seed=1)
    clock.advance(30)
    quotes = feed.step()
    assert set(quotes) == {m.symbol for m in MARKETS}
    assert all(q.at == clock.now() for q in quotes.values())
    assert feed.mark("BTC/USDT") == quotes["BTC/USDT"]
