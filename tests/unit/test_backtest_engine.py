"""The backtest engine: determinism, the fill rules of a signal bar by bar (entries at the next open, stops before
take-profits, gaps, break-even), risk limits denying as live, the equity curve, the trade list, several symbols on
one account, and the configurations it refuses.

Most tests queue hand-made signals (``Backtest.queue``) on a few hand-made bars, far too few for the strategy to
signal by itself, and check every price against arithmetic done by hand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import pytest

from execsvc.backtest.data import generate_bars
from execsvc.backtest.engine import Backtest, BacktestConfig, BacktestError, run_backtest
from execsvc.core.commands import SubmitOrder
from execsvc.core.ledger import Position
from execsvc.core.markets import MarketRules
from execsvc.core.values import OrderType, Side, Symbol
from execsvc.exits.service import plan_id_for
from execsvc.pipeline.submit import submit_order
from execsvc.signals.sizing import EquityFraction, FixedQty
from execsvc.strategies.bars import Bar
from execsvc.strategies.runner import signal_id
from execsvc.strategies.signals import Signal

D = Decimal
BTC = "BTC/USDT"
ETH = "ETH/USDT"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
# The service's default limits that would get in the way of hand-made scenarios (as in test_backtest_crosscheck).
LIMITS_OFF: dict[str, Any] = {
    "limits": dict.fromkeys(
        ("loss_streak_limit", "daily_loss_limit", "max_position_notional", "max_order_notional", "max_gross_exposure")
    )
}
START = D(10_000)


def bar(i: int, o: str, h: str, low: str, c: str, symbol: str = BTC) -> Bar:
    """Bar ``i`` of a contiguous hourly series from T0."""
    return Bar(symbol, "1h", T0 + i * HOUR, T0 + (i + 1) * HOUR, D(o), D(h), D(low), D(c), D(1))


def signal(side: Side, hour: int, entry: str = "100", symbol: str = BTC) -> Signal:
    """A hand-made signal as if made at the close ``T0 + hour`` (distinct hours give distinct signal ids), its stop 5
    and its take-profits 10, 20 and 30 from the entry (a buy at 100: stop 95, take-profits 110 / 120 / 130)."""
    price, sign = D(entry), side.sign
    return Signal(
        strategy="ema_cross",
        symbol=symbol,
        timeframe="1h",
        side=side,
        strength=0.5,
        confidence=0.5,
        rule="hand_made",
        reasons={"test": "yes"},
        entry=price,
        stop_loss=price - 5 * sign,
        take_profits=(price + 10 * sign, price + 20 * sign, price + 30 * sign),
        at=T0 + hour * HOUR,
    )


def config(**changes: Any) -> BacktestConfig:
    """One BTC/USDT market (0.01 tick, 0.001 step), 10,000 USDT, 1 BTC per signal, no fees, no slippage."""
    base = BacktestConfig(
        strategy="ema_cross",
        symbols=(BTC,),
        timeframe="1h",
        balances={"USDT": START},
        sizing=FixedQty(D(1)),
        fee_bps=D(0),
        slippage_bps=D(0),
        limits=LIMITS_OFF,
        markets={BTC: MarketRules(BTC, D("0.01"), D("0.001"), D("0.001"), D(1))},
    )
    return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class Ran:
    result: dict[str, Any]
    backtest: Backtest


def run(
    cfg: BacktestConfig, bars: Sequence[Bar] | Mapping[str, Sequence[Bar]], signals: Mapping[int, Sequence[Signal]]
) -> Ran:
    """Run ``bars`` (BTC/USDT's, or by symbol) with ``signals[k]`` queued once bar ``k - 1`` of a single symbol has
    closed, so they are placed at bar ``k``'s open (``signals[0]`` before the run: at the first bar's open)."""
    backtest = Backtest(cfg, bars if isinstance(bars, Mapping) else {BTC: bars})
    for s in signals.get(0, ()):
        backtest.queue(s)

    def progress(done: int, total: int) -> None:  # called after each bar (fewer than 200 bars: every bar)
        for s in signals.get(done, ()) if done < total else ():
            backtest.queue(s)

    result = asyncio.run(backtest.run(progress)).result
    return Ran(result, backtest)


def fills(result: Mapping[str, Any]) -> list[tuple[str, D, D, D, str]]:
    """(side, qty, price, fee, time) of every fill, in order."""
    return [(f["side"], D(f["qty"]), D(f["price"]), D(f["fee"]), f["created_at"]) for f in result["fills"]]


def only(items: Sequence[Any]) -> Any:
    (item,) = items
    return item


def at(hours: float) -> str:
    """The result's form of the time ``T0 + hours``."""
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


# -- 1. determinism ---------------------------------------------------------------------------------------------


def _generated_config(**changes: Any) -> BacktestConfig:
    return replace(
        BacktestConfig(strategy="ema_cross", symbols=(BTC,), timeframe="1h", params={"fast_period": 5}), **changes
    )


def _uuid_ms(value: str) -> int:
    return uuid.UUID(value).int >> 80


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_the_same_backtest_run_twice_gives_byte_identical_results_whatever_the_wall_clock() -> None:
    bars = generate_bars(BTC, "1h", T0, 300, seed=5)
    cfg = _generated_config()

    first = run_backtest(cfg, {BTC: bars}).result

    def slow(done: int, total: int) -> None:  # the second run takes a different wall-clock course
        if done % 50 == 0:
            time.sleep(0.005)

    second = run_backtest(cfg, {BTC: bars}, slow).result

    assert len(first["trades"]) >= 3  # enough happened for the check to mean something
    assert len(first["orders"]) >= 6
    assert json.dumps(first) == json.dumps(second)
    # Every time-based id carries the simulated time it was made at, not the wall clock's.
    for order in first["orders"]:
        assert _uuid_ms(order["id"]) == _ms(order["created_at"])
    for fill in first["fills"]:
        assert _uuid_ms(fill["id"]) == _ms(fill["created_at"])
        assert fill["trade_id"] == f"sim-{fill['order_id']}-{fill['qty']}"
    # The others are derived from those or from the signal's bar (uuid5): no source of their own.
    for plan in first["exit_plans"]:
        assert plan["id"] == str(plan_id_for(uuid.UUID(plan["entry_order_id"])))
    for made in first["signals"]:
        assert made["id"] == str(signal_id(made["instance_id"], datetime.fromisoformat(made["at"])))
    lowest, highest = _ms(at(0)), _ms(at(300))
    ids = [o["id"] for o in first["orders"]] + [f["id"] for f in first["fills"]]
    assert all(lowest <= _uuid_ms(i) <= highest for i in ids)


# -- 2. the fill rules of a signal --------------------------------------------------------------------------------


def test_a_buy_queued_after_a_bar_closes_fills_at_the_next_bars_open() -> None:
    bars = [
        bar(0, "100", "101", "99", "100.5"),
        bar(1, "100.73", "101", "100", "100.9"),
        bar(2, "101", "102", "100", "101"),
    ]
    mine = signal(Side.BUY, 1, entry="100.5")

    result = run(config(), bars, {1: [mine]}).result

    assert [s["rule"] for s in result["signals"]] == ["hand_made"]  # too few bars for ema_cross to signal itself
    (made,) = result["signals"]
    assert made["outcome"] == "ordered"
    order = only(result["orders"])
    assert made["order_id"] == order["id"]
    assert (order["side"], order["type"], order["status"]) == ("buy", "market", "filled")
    # bar 1's open, not the signal's entry (bar 0's close 100.5)
    assert fills(result) == [("buy", D(1), D("100.73"), D(0), at(1))]


def test_a_bar_touching_both_stop_and_take_profit_while_long_hits_the_stop_first_at_its_level() -> None:
    # bar 1 opens at 105: its high 110.5 (TP1 110) is nearer than its low 94 (stop 95), but long, the low comes first
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "105", "110.5", "94", "100")]

    result = run(config(), bars, {0: [signal(Side.BUY, 0)]}).result

    # the path in three legs of 1/3 h each: 105 -> 94, 94 -> 110.5, 110.5 -> 100; the first leg passes the stop 95
    # and ends at 94: two points, 1/9 h apart, so the stop fires at 1/9 h into the bar
    assert fills(result) == [
        ("buy", D(1), D(100), D(0), at(0)),
        ("sell", D(1), D(95), D(0), at(1 + 1 / 9)),  # at the stop level, not the low 94
    ]
    trade = only(result["trades"])
    assert (trade["exit_reason"], trade["exit_price"], trade["pnl"]) == ("stop_loss", "95", "-5")  # (95-100)*1
    plan = only(result["exit_plans"])
    assert plan["state"] == "closed"
    assert plan["stop_loss"]["state"] == "done"
    assert [tp["state"] for tp in plan["take_profits"]] == ["disarmed"] * 3
    assert only(plan["orders"])["reason"] == "stop-loss at 95"


def test_a_bar_opening_below_the_stop_exits_at_the_open_worse_than_the_stop() -> None:
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "93", "96", "92", "94")]

    result = run(config(), bars, {0: [signal(Side.BUY, 0)]}).result

    assert fills(result)[1] == ("sell", D(1), D(93), D(0), at(1))  # the open 93, 2 below the stop 95
    trade = only(result["trades"])
    assert (trade["exit_reason"], trade["pnl"]) == ("stop_loss", "-7")  # (93-100)*1


def test_take_profit_one_exits_its_share_at_its_level_and_moves_the_stop_to_break_even() -> None:
    bars = [
        bar(0, "100", "101", "99", "100"),
        bar(1, "101", "111", "100.5", "108"),  # long: 101 -> 100.5 -> 110 (TP1) -> 111 -> 110 -> close 108
        bar(2, "105", "106", "99", "101"),  # 105 -> 100 (the stop, moved to the entry) -> 99 -> ...
    ]

    ran = run(config(), bars, {0: [signal(Side.BUY, 0)]})
    result = ran.result

    # 1 BTC over 3 take-profits on the 0.001 step: 0.333, 0.333 and the rest 0.334
    assert fills(result) == [
        ("buy", D(1), D(100), D(0), at(0)),
        # legs of 1/3 h: 101 -> 100.5, then 100.5 -> 111 passing TP1 110 (1/9 h into that leg), then 111 -> 108
        ("sell", D("0.333"), D(110), D(0), at(1 + 1 / 3 + 1 / 9)),
        # bar 2, long: 105 -> 99 passes the stop, now 100, 1/9 h into the bar
        ("sell", D("0.667"), D(100), D(0), at(2 + 1 / 9)),
    ]
    plan = only(result["exit_plans"])
    assert plan["break_even"] is True
    assert plan["stop_loss"]["price"] == "100"  # moved from 95 to the entry price
    assert [tp["state"] for tp in plan["take_profits"]] == ["done", "disarmed", "disarmed"]
    trade = only(result["trades"])
    # exit price (0.333*110 + 0.667*100) / 1 = 36.63 + 66.7 = 103.33; pnl 0.333*(110-100) + 0.667*0 = 3.33
    assert (trade["qty"], trade["exit_price"], trade["pnl"], trade["exit_reason"]) == (
        "1",
        "103.33",
        "3.33",
        "stop_loss",
    )
    assert ran.backtest.store.balances["backtest"] == {"USDT": D("10003.33"), "BTC": D(0)}


def test_a_stop_moved_to_break_even_inside_a_bar_fills_at_its_level_when_the_same_bar_falls_through_it() -> None:
    # bar 1, long: 101 -> 96 (above the stop 95) -> 110 (TP1: the stop moves to 100) -> 111 -> close 97. The price
    # passes 100 on its way from 111 to 97: the moved stop fires there, at its level, like any stop inside a bar.
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "101", "111", "96", "97"), bar(2, "97", "98", "96", "97")]

    result = run(config(), bars, {0: [signal(Side.BUY, 0)]}).result

    sells = [(side, qty, price) for side, qty, price, _, _ in fills(result)[1:]]
    assert sells == [("sell", D("0.333"), D(110)), ("sell", D("0.667"), D(100))]
    trade = only(result["trades"])
    assert trade["pnl"] == "3.33"  # 0.333*10 + 0.667*0


def test_a_sell_signal_without_the_base_asset_is_denied_by_the_risk_engine() -> None:
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "100", "101", "99", "100")]

    result = run(config(), bars, {0: [signal(Side.SELL, 0)]}).result

    made = only(result["signals"])
    assert made["outcome"] == "denied"
    assert made["violations"] == [
        {
            "rule": "sufficient_balance",
            "limit": "0",
            "value": "1",
            "message": "the order needs 1 BTC but 0 BTC is available",
        }
    ]
    order = only(result["orders"])
    assert (order["status"], order["reject_code"]) == ("rejected", "risk_rejected")
    assert result["fills"] == []
    assert result["trades"] == []
    assert result["exit_plans"] == []  # no plan for a denied entry


def test_a_sell_signal_with_the_base_asset_held_sells_at_the_open() -> None:
    bars = [bar(0, "100.2", "101", "99", "100"), bar(1, "100", "101", "99", "100")]
    cfg = config(balances={"USDT": START, "BTC": D(2)})

    ran = run(cfg, bars, {0: [signal(Side.SELL, 0)]})

    assert only(ran.result["signals"])["outcome"] == "ordered"
    assert fills(ran.result) == [("sell", D(1), D("100.2"), D(0), at(0))]
    assert ran.backtest.store.balances["backtest"] == {"USDT": D("10100.2"), "BTC": D(1)}  # 10000 + 100.2; 2 - 1
    assert only(ran.result["exit_plans"])["side"] == "sell"


def _two_buys_then_a_sell(on_opposite: str) -> Ran:
    bars = [
        bar(0, "100", "101", "99", "100"),
        bar(1, "100", "101", "99", "100"),
        bar(2, "102", "103", "101", "102"),
        bar(3, "102", "103", "101", "102"),
    ]
    signals = {0: [signal(Side.BUY, -1)], 1: [signal(Side.BUY, 0)], 2: [signal(Side.SELL, 1)]}
    return run(config(exits=False, on_opposite=on_opposite), bars, signals)


def test_on_opposite_close_closes_the_whole_position_with_a_reduce_only_sell_and_enters_nothing() -> None:
    ran = _two_buys_then_a_sell("close")

    assert fills(ran.result)[2] == ("sell", D(2), D(102), D(0), at(2))  # the 2 held, not the sized 1
    closing = ran.result["orders"][2]
    assert (closing["side"], closing["qty"], closing["reduce_only"]) == ("sell", "2", True)
    made = ran.result["signals"][2]
    assert (made["outcome"], made["order_id"], made["detail"]) == ("ordered", closing["id"], "closed the position")
    assert ran.backtest.store.positions[("backtest", BTC)].qty == 0
    trade = only(ran.result["trades"])
    assert (trade["exit_reason"], trade["pnl"]) == ("signal", "4")  # 2 * (102 - 100)


def test_on_opposite_enter_sells_the_sized_quantity() -> None:
    ran = _two_buys_then_a_sell("enter")

    assert fills(ran.result)[2] == ("sell", D(1), D(102), D(0), at(2))  # FixedQty 1, not the 2 held
    assert ran.result["orders"][2]["reduce_only"] is False
    assert ran.backtest.store.positions[("backtest", BTC)].qty == 1


def test_slippage_and_fees_apply_to_both_legs_and_the_trade_pnl_is_net_of_both_fees() -> None:
    bars = [bar(0, "100.37", "101", "99", "100"), bar(1, "100", "101", "94", "96")]
    cfg = config(fee_bps=D(10), slippage_bps=D(10))

    result = run(cfg, bars, {0: [signal(Side.BUY, 0)]}).result

    # entry: 100.37 * 1.001 = 100.47037 -> up to the tick 100.48; fee 1 * 100.48 * 0.001 = 0.10048
    # stop:  95 * 0.999 = 94.905 -> down to the tick 94.90; fee 1 * 94.90 * 0.001 = 0.0949
    assert fills(result) == [
        ("buy", D(1), D("100.48"), D("0.10048"), at(0)),
        ("sell", D(1), D("94.90"), D("0.0949"), at(1 + 1 / 9)),  # 100 -> 94 passes the stop 1/9 h into the bar
    ]
    trade = only(result["trades"])
    # (94.90 - 100.48) * 1 = -5.58; fees 0.10048 + 0.0949 = 0.19538; pnl -5.58 - 0.19538 = -5.77538
    assert (trade["entry_price"], trade["exit_price"]) == ("100.48", "94.9")
    assert (trade["fees"], trade["pnl"]) == ("0.19538", "-5.77538")
    assert result["metrics"]["fees_paid"] == {"USDT": "0.19538"}


# -- 3. risk limits deny exactly as live --------------------------------------------------------------------------


def _limit_run(limits: Mapping[str, Any]) -> dict[str, Any]:
    bars = [bar(0, "100.37", "101", "99", "100"), bar(1, "100", "101", "99", "100")]
    cfg = config(sizing=FixedQty(D("0.5")), exits=False, limits=limits)
    return run(cfg, bars, {0: [signal(Side.BUY, 0)]}).result


def test_a_position_limit_accepts_an_order_exactly_at_it_and_denies_one_a_cent_above() -> None:
    free = _limit_run(LIMITS_OFF)
    order = only(free["orders"])
    q, p = D(order["qty"]), D(order["avg_fill_price"])
    assert (q, p) == (D("0.5"), D("100.37"))
    limit = q * p  # 0.5 * 100.37 = 50.185, the position's value at the mark (the open)

    at_limit = _limit_run({"limits": {**LIMITS_OFF["limits"], "max_position_notional": str(limit)}})
    assert only(at_limit["signals"])["outcome"] == "ordered"
    assert only(at_limit["orders"])["status"] == "filled"

    below = limit - D("0.01")  # 50.175
    denied = _limit_run({"limits": {**LIMITS_OFF["limits"], "max_position_notional": str(below)}})
    made = only(denied["signals"])
    assert made["outcome"] == "denied"
    violation = only(made["violations"])
    assert (violation["rule"], violation["limit"], violation["value"]) == ("position_notional", "50.175", "50.185")
    stored = only(denied["orders"])
    assert made["order_id"] == stored["id"]
    assert (stored["status"], stored["reject_code"], stored["filled_qty"]) == ("rejected", "risk_rejected", "0")
    assert stored["risk"]["approved"] is False
    assert denied["fills"] == []
    assert denied["backtest"]["limits"]["limits"]["max_position_notional"] == "50.175"


# -- 4. the equity curve ------------------------------------------------------------------------------------------


def _spaced(bars: Sequence[Bar]) -> list[Bar]:
    """The bars an hour apart (each 1h long, the next opening an hour after it closed): a fill at a bar's close and
    one at the next bar's open then have different times, so each fill belongs to one equity point."""
    return [replace(b, open_time=T0 + 2 * i * HOUR, close_time=T0 + (2 * i + 1) * HOUR) for i, b in enumerate(bars)]


def _replayed_equity(
    result: Mapping[str, Any], start: Mapping[str, D], closes: Mapping[str, Mapping[datetime, D]]
) -> list[tuple[str, D]]:
    """Each close's equity recomputed from the fills: the quote balance plus every base held at its close."""
    balances = dict(start)
    pending = sorted(result["fills"], key=lambda f: (f["created_at"], f["id"]))
    points: list[tuple[str, D]] = []
    with localcontext(prec=80):
        for point in result["equity"]:
            while pending and pending[0]["created_at"] <= point[0]:
                f = pending.pop(0)
                symbol = Symbol.parse(f["symbol"])
                sign = 1 if f["side"] == "buy" else -1
                qty, price = D(f["qty"]), D(f["price"])
                balances[symbol.base] = balances.get(symbol.base, D(0)) + sign * qty
                balances[symbol.quote] = balances.get(symbol.quote, D(0)) - sign * qty * price - D(f["fee"])
            when = datetime.fromisoformat(point[0].replace("Z", "+00:00"))
            equity = balances["USDT"]
            for name, series in closes.items():
                equity += balances.get(Symbol.parse(name).base, D(0)) * series[when]
            points.append((point[0], equity))
    assert not pending
    return points


def test_the_equity_curve_is_the_quote_balance_plus_the_base_held_at_every_close() -> None:
    bars = _spaced(generate_bars(BTC, "1h", T0, 300, seed=5))
    cfg = _generated_config()

    result = run_backtest(cfg, {BTC: bars}).result

    # the starting point (the balances at the first open), then one point per close
    assert result["equity"][0] == [at(0), "10000", "30000"]  # the first open, 30000.00
    curve = result["equity"][1:]
    assert len(curve) == len(bars)
    assert [p[0] for p in curve] == [at(2 * i + 1) for i in range(len(bars))]
    assert [D(p[2]) for p in curve] == [b.close for b in bars]
    assert len(result["trades"]) >= 3
    closes = {BTC: {b.close_time: b.close for b in bars}}
    replayed = _replayed_equity({**result, "equity": curve}, {"USDT": START}, closes)
    assert [(p[0], D(p[1])) for p in curve] == replayed
    assert result["metrics"]["start_equity"] == "10000"  # the starting balance: no trade before the first close
    assert result["metrics"]["end_equity"] == result["equity"][-1][1]


def test_start_equity_is_the_starting_balance_even_when_the_first_bar_trades() -> None:
    # A replayed signal placed at the first open: the first bar's fee and move are part of the run's return.
    bars = [bar(0, "100", "101", "97", "98"), bar(1, "98", "99", "97", "98")]

    result = run(config(fee_bps=D(10)), bars, {0: [signal(Side.BUY, 0)]}).result

    # the starting point, then the first close: 10000 - 100 - 0.1 fee + 1 * 98 = 9997.9
    assert [p[1] for p in result["equity"][:2]] == ["10000", "9997.9"]
    assert result["metrics"]["start_equity"] == "10000"
    assert result["metrics"]["total_return"] == "-0.00021000"  # 9997.9 / 10000 - 1


# -- 5. trades ------------------------------------------------------------------------------------------------------


def test_trades_run_flat_to_flat_at_average_fill_prices_net_of_fees_and_an_open_one_ends_with_the_data() -> None:
    bars = [
        bar(0, "100", "101", "99", "100"),
        bar(1, "104", "105", "103", "104"),
        bar(2, "110", "111", "109", "110"),
        bar(3, "106", "107", "105", "106"),
        bar(4, "108", "109", "107", "108"),
        bar(5, "109", "110", "108", "109.5"),
    ]
    signals = {
        0: [signal(Side.BUY, 0)],
        1: [signal(Side.BUY, 1, entry="104")],
        2: [signal(Side.SELL, 2, entry="110")],
        3: [signal(Side.SELL, 3, entry="106")],
        4: [signal(Side.BUY, 4, entry="108")],
    }
    # stops and targets would need other levels for these entries: the signals' order alone is tested here
    ran = run(config(exits=False, fee_bps=D(10)), bars, signals)
    result = ran.result

    first, second = result["trades"]
    # buys 1 @ 100 and 1 @ 104 (average 102), sells 1 @ 110 and 1 @ 106 (average 108)
    # realized (110 - 102) + (106 - 102) = 12; fees 0.1 + 0.104 + 0.11 + 0.106 = 0.42; pnl 11.58
    assert first == {
        "number": 1,
        "symbol": BTC,
        "side": "long",
        "qty": "2",
        "entry_time": at(0),
        "entry_price": "102",
        "exit_time": at(3),
        "exit_price": "108",
        "pnl": "11.58",
        "return": "0.05676471",  # 11.58 / (100 + 104) = 0.0567647058...
        "fees": "0.42",
        "exit_reason": "signal",
    }
    assert ran.backtest.store.positions[("backtest", BTC)].realized_pnl == D(12)
    # still open: 1 @ 108, valued at the last close 109.5: 1.5 - fee 0.108 = 1.392
    assert second == {
        "number": 2,
        "symbol": BTC,
        "side": "long",
        "qty": "1",
        "entry_time": at(4),
        "entry_price": "108",
        "exit_time": None,
        "exit_price": None,
        "pnl": "1.392",
        "return": "0.01288889",  # 1.392 / 108
        "fees": "0.108",
        "exit_reason": "end",
    }
    # 10000 - 100.1 - 104.104 + 109.89 + 105.894 - 108.108 = 9903.472 USDT, plus 1 BTC at 109.5
    assert result["metrics"]["end_equity"] == "10012.972"  # = 10000 + 11.58 + 1.392
    assert result["metrics"]["trades"] == 1  # closed trades only


# -- 6. several symbols ---------------------------------------------------------------------------------------------


def test_a_signal_on_the_second_symbol_fills_at_its_open_like_one_on_the_first() -> None:
    btc = [bar(0, "100", "101", "99", "100"), bar(1, "100", "101", "99", "100")]
    eth = [bar(0, "20", "21", "19", "20", ETH), bar(1, "20", "21", "19", "20", ETH)]
    cfg = config(symbols=(BTC, ETH), markets={}, exits=False)  # the default rules: 0.01 tick, 0.00001 step

    ran = run(cfg, {BTC: btc, ETH: eth}, {0: [signal(Side.BUY, 0), signal(Side.BUY, 0, entry="20", symbol=ETH)]})

    assert [(s["symbol"], s["outcome"], s["detail"]) for s in ran.result["signals"]] == [
        (BTC, "ordered", None),
        (ETH, "ordered", None),
    ]
    assert [(f["symbol"], f["price"], f["created_at"]) for f in ran.result["fills"]] == [
        (BTC, "100", at(0)),
        (ETH, "20", at(0)),  # ETH's first open, at ETH's first open time
    ]
    assert ran.backtest.store.balances["backtest"] == {"USDT": D(9880), "BTC": D(1), "ETH": D(1)}  # 10000-100-20


def test_two_symbols_share_one_account_and_the_equity_values_both() -> None:
    btc = _spaced(generate_bars(BTC, "1h", T0, 300, seed=5))
    eth = _spaced(generate_bars(ETH, "1h", T0, 300, seed=9, start_price=D(2000)))
    cfg = _generated_config(symbols=(BTC, ETH), sizing=EquityFraction(D("0.45")))

    result = run_backtest(cfg, {BTC: btc, ETH: eth}).result
    again = run_backtest(cfg, {BTC: btc, ETH: eth}).result

    assert json.dumps(result) == json.dumps(again)
    assert {f["symbol"] for f in result["fills"]} == {BTC, ETH}
    assert not [s for s in result["signals"] if "old" in (s["detail"] or "")]  # no mark was stale at an open
    assert len(result["equity"]) == 1 + 300  # the start, then one point per close time, both symbols' bars in it
    curve = result["equity"][1:]
    closes = {BTC: {b.close_time: b.close for b in btc}, ETH: {b.close_time: b.close for b in eth}}
    replayed = _replayed_equity({**result, "equity": curve}, {"USDT": START}, closes)
    assert [(p[0], D(p[1])) for p in curve] == replayed
    # one balance: at some close both were held at once, bought from the same USDT
    both = [
        p
        for p in result["equity"]
        if any(t["symbol"] == BTC and _holds(t, p[0]) for t in result["trades"])
        and any(t["symbol"] == ETH and _holds(t, p[0]) for t in result["trades"])
    ]
    assert both
    assert result["metrics"]["end_equity"] == result["equity"][-1][1]


def _holds(trade: Mapping[str, Any], when: str) -> bool:
    return bool(trade["entry_time"] <= when and (trade["exit_time"] is None or when < trade["exit_time"]))


# -- 7. configurations refused ------------------------------------------------------------------------------------


def test_a_backtest_without_symbols_is_refused() -> None:
    with pytest.raises(BacktestError, match="at least one symbol"):
        Backtest(config(symbols=()), {})


def test_a_backtest_missing_the_bars_of_a_symbol_is_refused_naming_it() -> None:
    bars = [bar(0, "100", "101", "99", "100")]
    with pytest.raises(BacktestError, match=r"no bars for ETH/USDT"):
        Backtest(config(symbols=(BTC, ETH)), {BTC: bars})
    with pytest.raises(BacktestError, match=r"no bars for ETH/USDT"):
        Backtest(config(symbols=(BTC, ETH)), {BTC: bars, ETH: []})


def test_a_backtest_over_two_quote_assets_is_refused() -> None:
    bars = [bar(0, "100", "101", "99", "100")]
    eth_btc = [bar(0, "0.05", "0.06", "0.04", "0.05", symbol="ETH/BTC")]
    with pytest.raises(BacktestError, match="same quote asset"):
        Backtest(config(symbols=(BTC, "ETH/BTC")), {BTC: bars, "ETH/BTC": eth_btc})


# -- 8. the short side of a bar's path, and a sell plan held while long --------------------------------------------


def test_a_bar_touching_both_stop_and_take_profit_while_short_hits_the_stop_first_at_its_level() -> None:
    # A sell at 100 with 2 BTC held (spot): the plan's stop is 105, its take-profits 90 / 80 / 70. Bar 1 opens at 95,
    # its low 89.5 (TP1 90) nearer than its high 106 (stop 105), but short, the high comes first.
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "95", "106", "89.5", "95")]
    cfg = config(balances={"USDT": START, "BTC": D(2)})

    result = run(cfg, bars, {0: [signal(Side.SELL, 0)]}).result

    # legs of 1/3 h: 95 -> 106 passes the stop 105 (two points, 1/9 h apart), then 106 -> 89.5, then -> 95
    assert fills(result) == [
        ("sell", D(1), D(100), D(0), at(0)),
        ("buy", D(1), D(105), D(0), at(1 + 1 / 9)),  # at the stop level, not the high 106
    ]
    trade = only(result["trades"])
    assert (trade["side"], trade["exit_reason"], trade["pnl"]) == ("short", "stop_loss", "-5")  # (100-105)*1
    plan = only(result["exit_plans"])
    assert (plan["side"], plan["state"]) == ("sell", "closed")
    assert [tp["state"] for tp in plan["take_profits"]] == ["disarmed"] * 3


def test_a_sell_entrys_plan_while_the_position_stays_long_closes_at_its_first_level_without_an_exit() -> None:
    # On a spot account a sell signal against a long position sells part of it (on_opposite "enter"): the position
    # stays long and the sell's plan (stop 105, take-profits 90 / 80 / 70) has no short position to exit. The path
    # is keyed on the net position (long: the low first, towards the take-profit 90), but which level comes first
    # does not matter here: an exit plan only exits what is held on its own side, so the exit service closes the
    # plan at its first level with no order, as it does live. Either way no stop or take-profit trades.
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "95", "106", "89.5", "95")]
    backtest = Backtest(config(balances={"USDT": START, "BTC": D(2)}), {BTC: bars})
    backtest.store.positions[("backtest", BTC)] = Position(D(2), D(100))  # 2 BTC bought before the data starts
    backtest.queue(signal(Side.SELL, 0))

    result = asyncio.run(backtest.run()).result

    assert [(side, qty, price) for side, qty, price, _, _ in fills(result)] == [("sell", D(1), D(100))]
    assert backtest.store.positions[("backtest", BTC)].qty == 1
    plan = only(result["exit_plans"])
    assert (plan["side"], plan["state"], plan["exited"], plan["orders"]) == ("sell", "closed", "0", [])
    assert plan["close_reason"] == "the position in BTC/USDT was closed outside the plan"
    assert plan["updated_at"] == at(1 + 1 / 9)  # the first level the path met: TP1 90, 1/9 h into the bar


# -- 9. a gap in the data ---------------------------------------------------------------------------------------------


def test_a_missing_bar_is_a_gap_signals_and_stops_wait_for_the_next_bar_and_the_curve_skips_it() -> None:
    # Hourly bars 0, 1, 3, 4: bar 2 (02:00-03:00) is missing, and bar 3 opens far below bar 1's close.
    bars = [
        bar(0, "100", "101", "99", "100"),
        bar(1, "100", "101", "99", "100"),
        bar(3, "93", "94", "92", "93.5"),
        bar(4, "94", "95", "93", "94"),
    ]
    held = signal(Side.BUY, 0)  # placed at bar 0's open: stop 95
    late = signal(Side.BUY, 2, entry="96")  # made at 02:00 (as if at bar 1's close): stop 91

    result = run(config(), bars, {0: [held], 2: [late]}).result

    # Nothing happens in the gap: the signal made before it and the stop it jumped over meet bar 3's open (03:00),
    # the price after the gap; the stop exits at that open, worse than its level.
    assert fills(result) == [
        ("buy", D(1), D(100), D(0), at(0)),
        ("sell", D(1), D(93), D(0), at(3)),  # the held position's stop 95, gapped through
        ("buy", D(1), D(93), D(0), at(3)),  # the late signal, at the open after the gap (its entry was 96)
    ]
    assert [s["outcome"] for s in result["signals"]] == ["ordered", "ordered"]
    assert result["trades"][0]["exit_reason"] == "stop_loss"
    # one point per bar that exists: the start, then each close; no point is made up for the missing bar
    assert [p[0] for p in result["equity"]] == [at(0), at(1), at(2), at(4), at(5)]
    assert result["backtest"]["bars"] == 4


# -- 10. signals explain themselves -------------------------------------------------------------------------------


def test_every_signal_of_a_run_carries_the_reasons_its_strategy_gave() -> None:
    result = run_backtest(_generated_config(), {BTC: generate_bars(BTC, "1h", T0, 300, seed=5)}).result

    assert len(result["signals"]) >= 3
    for made in result["signals"]:
        assert made["rule"]
        assert isinstance(made["reasons"], dict)
        assert made["reasons"], made  # the indicator values behind the rule, never an empty explanation
        assert all(isinstance(name, str) and value is not None for name, value in made["reasons"].items())


# -- stop orders on the bar path ----------------------------------------------------------------------------------


def _with_stop(side: Side, stop_price: str, bars: Sequence[Bar], balances: Mapping[str, Decimal]) -> Ran:
    """Run ``bars`` with a stop order placed just before the first bar opens (the market at its open)."""
    backtest = Backtest(config(balances=dict(balances)), {BTC: bars})
    backtest.market.set_price(BTC, bars[0].open, bars[0].open_time)
    cmd = SubmitOrder("backtest", BTC, side, OrderType.STOP, D(1), stop_price=D(stop_price))
    placed = asyncio.run(submit_order(backtest.pipeline, cmd)).order
    assert placed is not None
    assert placed.status.value == "open"
    return Ran(asyncio.run(backtest.run()).result, backtest)


def test_a_sell_stop_rests_until_a_bars_path_reaches_it_and_fills_at_its_level() -> None:
    # bar 0 stays above the stop; bar 1 (no position: the extreme nearer its open first) goes 100 -> 101 -> 97 -> 98
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "100", "101", "97", "98")]

    result = _with_stop(Side.SELL, "98", bars, {"USDT": START, "BTC": D(1)}).result

    order = only(result["orders"])
    assert (order["type"], order["status"], order["stop_price"]) == ("stop", "filled", "98")
    # the second leg, 101 -> 97 from 1/3 h, shows the stop as its first point, 1/9 h in; at the stop, not below it
    assert fills(result) == [("sell", D(1), D(98), D(0), at(1 + 4 / 9))]


def test_a_buy_stop_fills_at_a_gap_open_above_it() -> None:
    bars = [bar(0, "100", "101", "99", "100"), bar(1, "104", "105", "103", "104")]

    result = _with_stop(Side.BUY, "102", bars, {"USDT": START}).result

    assert fills(result) == [("buy", D(1), D(104), D(0), at(1))]  # the open, 2 above the stop
