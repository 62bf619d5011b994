"""The backtest engine: historical bars through the same strategies, risk engine, order pipeline, ledger and exit
plans as live trading, on the in-memory unit of work, under a simulated clock.

One account (``backtest``) on the simulated broker (``brokers.simulated``) holds the starting balances; one
instance of the strategy runs per symbol. The engine walks the bars in time order; for each bar of each symbol:

1. **Open** (the clock at the bar's open time, the market at its open). Resting limit orders and exit plans meet
   the open first (a gap fills a limit at the open, and a stop at the open, worse than its level). Then the signals
   the strategy made at the previous bar's close are placed, exactly as the service places them
   (``signals.placement``: sized, through ``submit_order`` and the risk engine, then their exit plan): their market
   orders fill at this open, +- slippage.
2. **Inside the bar** the price moves open -> one extreme -> the other -> close. With a long position the low
   comes first, with a short one the high (the pessimistic order: a bar that touches both the stop and a
   take-profit reaches the stop first); when flat, the extreme nearer the open comes first. On the way the price
   passes through every exit level and resting limit between two points, and each is a price the market shows (at
   a time inside the bar): a stop fires at its level and its market exit fills there, +- slippage.
3. **Close** (the clock at the close time): the last price, then the strategy's ``on_bar`` with the instance's
   state; its signals wait for the next bar's open. The account's equity at the close is one point of the curve.

A bar of a symbol with no resting order and no open exit plan needs no path: it costs the strategy and the equity
point only. Signals still waiting when the data ends are reported ``skipped`` (no bar opened to place them in).

Nothing reads the wall clock or draws a random number: ids come from the simulated clock (``SimIds``), so running
the same backtest twice gives the same result, byte for byte.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from execsvc.aio import run_to_result
from execsvc.backtest.memory import MemoryExitStore, MemoryStore
from execsvc.backtest.metrics import EquityPoint, TradeOutcome, compute_metrics
from execsvc.brokers.simulated import BarMarket, SimulatedBroker
from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import ExecsvcError
from execsvc.core.exits import LegState
from execsvc.core.ledger import Position, apply_fill
from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO, to_str
from execsvc.core.orders import Order
from execsvc.core.values import OrderType, Side, Symbol
from execsvc.exits.records import ExitRecord, exit_data
from execsvc.exits.service import ExitService
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.payloads import fill_data, order_data
from execsvc.pipeline.reports import apply_reports
from execsvc.pipeline.submit import submit_order
from execsvc.ratelimit import LocalRateCounter
from execsvc.risk import RiskLimits
from execsvc.risk.limits import LimitOverrides, parse_overrides
from execsvc.routing.router import OrderRouter
from execsvc.signals.orders import SignalOrder, signal_client_order_id
from execsvc.signals.placement import account_value, place_signal_order
from execsvc.signals.records import Refusal, SignalStatus, strategy_source
from execsvc.signals.sizing import EquityFraction, Sizing, sizing_json
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Strategy
from execsvc.strategies.registry import build_strategy
from execsvc.strategies.runner import signal_id
from execsvc.strategies.signals import Signal

ACCOUNT = "backtest"
BROKER = "simulated"
OnOpposite = Literal["enter", "close"]
Progress = Callable[[int, int], None]


class BacktestError(ExecsvcError):
    """A backtest that cannot run as asked (bad data, settings that do not fit the data)."""

    code = "invalid_backtest"


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to run. ``limits`` are overrides of the service's default risk limits in the form an account's limits
    take (``{"limits": {...}, "symbols": {...}}``; ``PUT /v1/accounts/{id}/limits``)."""

    strategy: str
    symbols: tuple[str, ...]
    timeframe: str
    params: Mapping[str, Any] = field(default_factory=dict)
    start: datetime | None = None
    end: datetime | None = None
    balances: Mapping[str, Decimal] = field(default_factory=lambda: {"USDT": Decimal(10_000)})
    sizing: Sizing = field(default_factory=lambda: EquityFraction(Decimal("0.95")))
    fee_bps: Decimal = Decimal(10)
    slippage_bps: Decimal = Decimal(5)
    limits: Mapping[str, Any] = field(default_factory=dict)
    markets: Mapping[str, MarketRules] = field(default_factory=dict)  # by symbol; defaults from ``default_rules``
    exits: bool = True  # the signals' stop-loss and take-profits are watched as the service's exit plans
    on_opposite: OnOpposite = "enter"  # "close": a signal against the position closes it (and enters nothing)


def default_rules(symbol: str) -> MarketRules:
    """A market's rules when the backtest names none: a 0.01 tick, a 0.00001 step and a 5 (quote) minimum."""
    return MarketRules(symbol, Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5))


class SimClock:
    """The backtest's clock: it moves when the engine moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        """The simulated time."""
        return self._now

    def set(self, at: datetime) -> None:
        """Move to ``at`` (never backwards)."""
        self._now = max(self._now, at)


class SimIds:
    """Time-ordered UUIDs (v7 layout) from the simulated clock and a counter: the same run gives the same ids."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._count = 0

    def __call__(self) -> UUID:
        self._count += 1
        ms = int(self._clock.now().timestamp() * 1000)
        value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0b10 << 62 | self._count
        return uuid.UUID(int=value)


@dataclass(slots=True)
class _SignalRow:
    """A signal of the run and what became of it."""

    signal: Signal
    id: UUID
    outcome: str = "pending"
    order_id: UUID | None = None
    detail: str | None = None
    violations: tuple[Mapping[str, Any], ...] = ()


class _Outcomes:
    """Where ``place_signal_order`` records outcomes (``signals.placement.SignalOutcomes``)."""

    def __init__(self) -> None:
        self.rows: dict[UUID, _SignalRow] = {}

    async def settle(
        self,
        signal_id: UUID,
        status: SignalStatus,
        at: datetime,
        *,
        order_id: UUID | None = None,
        refusal: Refusal | None = None,
    ) -> object:
        row = self.rows[signal_id]
        row.outcome, row.order_id = status.value, order_id
        if refusal is not None:
            row.detail = f"{refusal.code}: {refusal.reason}"
            row.violations = tuple(refusal.violations)
        return row


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """A finished run: the result document (``result``) and the objects behind it."""

    result: dict[str, Any]
    equity: list[EquityPoint]


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _bar_seconds(bars: Mapping[str, Sequence[Bar]]) -> int:
    for series in bars.values():
        if series:
            return int((series[0].close_time - series[0].open_time).total_seconds())
    return 60


class Backtest:
    """One run of one configuration over bars (``run``). Build a new one per run."""

    def __init__(
        self,
        config: BacktestConfig,
        bars: Mapping[str, Sequence[Bar]],
        warmup: Mapping[str, Sequence[Bar]] | None = None,
    ) -> None:
        if not config.symbols:
            raise BacktestError("a backtest needs at least one symbol")
        missing = [s for s in config.symbols if not bars.get(s)]
        if missing:
            raise BacktestError(f"no bars for {', '.join(missing)} in the range")
        quotes = {Symbol.parse(s).quote for s in config.symbols}
        if len(quotes) != 1:
            raise BacktestError("every symbol of a backtest must have the same quote asset")
        self.config = config
        self.valuation = quotes.pop()
        self.bars = {s: list(bars[s]) for s in config.symbols}
        first = min(series[0].open_time for series in self.bars.values())
        self.clock = SimClock(first)
        rules = [config.markets.get(s) or default_rules(s) for s in config.symbols]
        self.rules = {r.symbol: r for r in rules}
        self.market = BarMarket(rules)
        self.broker = SimulatedBroker(self.market, config.fee_bps, config.slippage_bps, BROKER)
        self.store = MemoryStore()
        self.store.add_account(ACCOUNT, BROKER, config.balances, self.valuation)
        base = RiskLimits(fee_bps=config.fee_bps)
        overrides = LimitOverrides()
        if config.limits:
            overrides = parse_overrides(
                config.limits.get("limits", {}), config.limits.get("symbols", {}), config.symbols, base
            )
            self.store.limits[ACCOUNT] = (1, overrides.dumps())
        self.overrides = overrides
        self.pipeline = Pipeline(
            uow=self.store,
            market_data=self.market,
            router=OrderRouter({BROKER: self.broker}),
            clock=self.clock,
            limits=base,
            fee_bps=config.fee_bps,
            rate=LocalRateCounter(),
            valuation_asset=self.valuation,
            ids=SimIds(self.clock),
        )
        self.exit_store = MemoryExitStore()
        self.exits = ExitService(self.pipeline, self.exit_store, retry_after=timedelta(0))
        self.strategies: dict[str, Strategy[Any]] = {
            s: build_strategy(config.strategy, config.params, self.rules[s]) for s in config.symbols
        }
        for symbol, strategy in self.strategies.items():  # bars before the run: indicators only, no trading
            history = (warmup or {}).get(symbol, ())
            strategy.warm_up(history[-strategy.warmup_bars :] if history else ())
        self.states: dict[str, dict[str, Any]] = {s: {} for s in config.symbols}
        self.pending: dict[str, list[_SignalRow]] = {s: [] for s in config.symbols}
        self.outcomes = _Outcomes()
        self.equity: list[EquityPoint] = []
        self._bases = {s: Symbol.parse(s).base for s in config.symbols}
        self._closes: dict[str, Decimal] = {}

    # -- the run --------------------------------------------------------------------------------------------------

    def queue(self, signal: Signal) -> None:
        """Place ``signal`` at the next bar of its symbol to open, as if its strategy had made it (a replay of
        recorded signals, a test of the fill rules)."""
        instance = _instance_id(signal.symbol)
        row = _SignalRow(replace(signal, instance_id=instance), signal_id(instance, signal.at))
        self.outcomes.rows[row.id] = row
        self.pending[signal.symbol].append(row)

    async def run(self, progress: Progress | None = None, *, full: bool = True) -> BacktestRun:
        """Walk every bar; the result document (without its orders, fills and signals unless ``full``)."""
        total = sum(len(series) for series in self.bars.values())
        done = 0
        step = max(1, total // 200)
        for close_time, group in _by_close_time(self.bars):
            if not self.equity:  # the starting point: the balances at the first opens, before anything traded
                for bar in group:
                    self.market.set_price(bar.symbol, bar.open, bar.open_time)
                    self._closes[bar.symbol] = bar.open
                self.equity.append(EquityPoint(group[0].open_time, self._equity(), False))
            exposed = await self._group(group)
            done += len(group)
            if progress is not None and done // step != (done - len(group)) // step:
                progress(done, total)
            self.equity.append(EquityPoint(close_time, self._equity(), exposed or self._holding()))
        if progress is not None:
            progress(total, total)
        for rows in self.pending.values():
            for row in rows:
                row.outcome, row.detail = "skipped", "the data ended before the next bar opened"
        return BacktestRun(self._result(full), self.equity)

    async def _group(self, group: list[Bar]) -> bool:
        """The bars of every symbol that close at the same time: their opens, then each leg of their paths, then
        their closes, so the clock only ever moves forward; whether a position was held at an open."""
        if len(group) == 1:
            bar = group[0]
            symbol = bar.symbol
            if not self.pending[symbol] and not self._watched(symbol):  # nothing to match or place: the common bar
                self.clock.set(bar.open_time)
                self.market.set_price(symbol, bar.open, bar.open_time)
                exposed = self._position(symbol).qty != ZERO
                self.clock.set(bar.close_time)
                self.market.set_price(symbol, bar.close, bar.close_time)
                self._closes[symbol] = bar.close
                for signal in self.strategies[symbol].on_bar(bar, self.states[symbol]):
                    self.queue(signal)
                return exposed
        exposed = False
        watched: dict[str, bool] = {}
        for bar in group:  # 1. the opens, and the signals waiting for them
            symbol = bar.symbol
            self.clock.set(bar.open_time)
            if self._watched(symbol):
                await self._price(symbol, bar.open, opening=True)
            else:
                self.market.set_price(symbol, bar.open, bar.open_time)
            if self.pending[symbol]:
                rows, self.pending[symbol] = self.pending[symbol], []
                for row in rows:
                    await self._place(row)
            watched[symbol] = self._watched(symbol)
            exposed = exposed or self._position(symbol).qty != ZERO
        legs = {bar.symbol: self._legs(bar) for bar in group if watched[bar.symbol]}
        for leg in range(3):  # 2. inside the bars, one leg at a time (the levels read afresh for each)
            for bar in group:
                if bar.symbol not in legs:
                    continue
                start, end, begins, ends = legs[bar.symbol][leg]
                points = _leg_points(start, end, begins, ends, self._levels(bar.symbol))
                for price, at in points[:-1] if leg == 2 else points:  # the close is shown at the close time
                    self.clock.set(at)
                    await self._price(bar.symbol, price, opening=False)
        for bar in group:  # 3. the closes, then the strategies
            self.clock.set(bar.close_time)
            if bar.symbol in legs:
                await self._price(bar.symbol, bar.close, opening=False)
            else:
                self.market.set_price(bar.symbol, bar.close, bar.close_time)
            self._closes[bar.symbol] = bar.close
        for bar in group:
            for signal in self.strategies[bar.symbol].on_bar(bar, self.states[bar.symbol]):
                self.queue(signal)
        return exposed

    def _watched(self, symbol: str) -> bool:
        """Whether anything on ``symbol`` reacts to prices inside a bar (a resting order, an open exit plan)."""
        return self.broker.has_resting or self.exit_store.any_open(symbol)

    def _legs(self, bar: Bar) -> list[tuple[Decimal, Decimal, datetime, datetime]]:
        """The bar's path as three legs (from, to, when each begins and ends): open -> one extreme -> the other ->
        close. Long: the low first; short: the high first; flat: the extreme nearer the open first."""
        qty = self._position(bar.symbol).qty
        if qty > 0:
            low_first = True
        elif qty < 0:
            low_first = False
        else:
            low_first = bar.open - bar.low <= bar.high - bar.open
        first, second = (bar.low, bar.high) if low_first else (bar.high, bar.low)
        span = bar.close_time - bar.open_time
        times = [bar.open_time + span * i / 3 for i in range(4)]
        prices = [bar.open, first, second, bar.close]
        return [(prices[i], prices[i + 1], times[i], times[i + 1]) for i in range(3)]

    def _levels(self, symbol: str) -> set[Decimal]:
        levels = set(self.broker.resting_prices(symbol))
        for record in self.exit_store.watching(symbol):
            if record.plan is not None:
                levels.update(leg.price for leg in record.plan.legs if leg.state is LegState.ARMED)
            else:
                if record.stop_loss is not None:
                    levels.add(record.stop_loss)
                levels.update(record.take_profits)
        return levels

    async def _price(self, symbol: str, price: Decimal, *, opening: bool) -> None:
        """The market shows ``price`` now: resting orders it reaches fill, then the exit plans see it."""
        at = self.clock.now()
        self.market.set_price(symbol, price, at)
        for order, report in self.broker.on_price(symbol, price, at, opening=opening):
            await apply_reports(self.pipeline, order.id, [report], BROKER, order.account_id)
        if self.exit_store.watching(symbol):
            await self.exits.tick()

    async def _place(self, row: _SignalRow) -> None:
        """Place a signal as the service does (or, ``on_opposite="close"``, close the position it goes against)."""
        signal = row.signal
        position = self._position(signal.symbol)
        against = position.qty != ZERO and (position.qty > 0) != (signal.side is Side.BUY)
        if against and self.config.on_opposite == "close":
            await self._close(row, position)
            return
        order = SignalOrder(
            row.id,
            ACCOUNT,
            signal.symbol,
            signal.side,
            signal.entry,
            signal.stop_loss if self.config.exits else None,
            source=strategy_source(signal.instance_id or ""),
            take_profits=signal.take_profits if self.config.exits else (),
        )
        equity = await account_value(self.pipeline, ACCOUNT)
        rules = self.rules[signal.symbol]
        await place_signal_order(
            self.pipeline, self.outcomes, order, self.config.sizing, rules, equity=equity, exits=self.exits
        )
        if self.exit_store.watching(signal.symbol):
            await self.exits.tick()  # arm the new plan at once: its entry has filled

    async def _close(self, row: _SignalRow, position: Position) -> None:
        cmd = SubmitOrder(
            account_id=ACCOUNT,
            symbol=row.signal.symbol,
            side=Side.SELL if position.qty > 0 else Side.BUY,
            type=OrderType.MARKET,
            qty=abs(position.qty),
            client_order_id=signal_client_order_id(row.id),
            source=strategy_source(row.signal.instance_id or ""),
            reduce_only=True,
        )
        try:
            order = (await submit_order(self.pipeline, cmd)).order
        except ExecsvcError as refused:
            row.outcome, row.detail = "refused", f"{refused.code}: {refused}"
            return
        assert order is not None
        row.order_id = order.id
        if order.risk is not None and not order.risk.approved:
            row.outcome, row.detail = "denied", order.reject_reason
        else:
            row.outcome, row.detail = "ordered", "closed the position"
        if self.exit_store.watching(row.signal.symbol):
            await self.exits.tick()  # the plans of the closed position close too

    # -- the account ----------------------------------------------------------------------------------------------

    def _position(self, symbol: str) -> Position:
        return self.store.positions.get((ACCOUNT, symbol)) or Position()

    def _holding(self) -> bool:
        return any(self._position(s).qty != ZERO for s in self.config.symbols)

    def _equity(self) -> Decimal:
        balances = self.store.balances[ACCOUNT]
        total = balances.get(self.valuation, ZERO)
        for symbol, close in self._closes.items():
            held = balances.get(self._bases[symbol], ZERO)
            if held:
                total += held * close
        return total

    # -- the result -----------------------------------------------------------------------------------------------

    def _result(self, full: bool = True) -> dict[str, Any]:
        config = self.config
        orders = sorted(self.store.orders.values(), key=lambda o: o.id)
        fills = sorted(self.store.fills.values(), key=lambda f: f.id)
        reasons = self._exit_reasons()
        trades = _trades(orders, fills, reasons, self._closes)
        fees: dict[str, Decimal] = {}
        for stored in fills:
            fees[stored.fill.fee_asset] = fees.get(stored.fill.fee_asset, ZERO) + stored.fill.fee
        outcomes = [TradeOutcome(Decimal(t["pnl"]), Decimal(t["fees"])) for t in trades if t["exit_time"]]
        metrics = compute_metrics(self.equity, outcomes, bar_seconds=_bar_seconds(self.bars), fees_paid=fees)
        first = min(series[0].open_time for series in self.bars.values())
        last = max(series[-1].close_time for series in self.bars.values())
        primary = config.symbols[0]
        closes = {b.close_time: b.close for b in self.bars[primary]}
        closes.setdefault(self.bars[primary][0].open_time, self.bars[primary][0].open)  # the starting point
        return {
            "kind": "backtest",
            "backtest": {
                "strategy": config.strategy,
                "params": self.strategies[primary].params.model_dump(mode="json"),
                "symbols": list(config.symbols),
                "symbol": primary,
                "timeframe": config.timeframe,
                "start": _time(first),
                "end": _time(last),
                "bars": sum(len(series) for series in self.bars.values()),
                "balances": {asset: to_str(amount) for asset, amount in sorted(config.balances.items())},
                "sizing": sizing_json(config.sizing),
                "fee_bps": to_str(config.fee_bps),
                "slippage_bps": to_str(config.slippage_bps),
                "limits": self.overrides.to_json(),
                "exits": config.exits,
                "on_opposite": config.on_opposite,
                "markets": {
                    s: {
                        "tick_size": to_str(r.tick_size),
                        "qty_step": to_str(r.qty_step),
                        "min_qty": to_str(r.min_qty),
                        "min_notional": to_str(r.min_notional),
                    }
                    for s, r in self.rules.items()
                },
            },
            "metrics": metrics,
            "equity": [
                [_time(p.at), to_str(p.equity), None if closes.get(p.at) is None else to_str(closes[p.at])]
                for p in self.equity
            ],
            "trades": trades,
            "signals": [_signal_json(row) for row in self.outcomes.rows.values()] if full else [],
            "orders": [order_data(o) for o in orders] if full else [],
            "fills": [fill_data(f.id, self.store.orders[f.order_id], f.fill, f.at) for f in fills] if full else [],
            "exit_plans": [_plan_json(r) for r in self.exit_store.plans.values()] if full else [],
        }

    def _exit_reasons(self) -> dict[str, str]:
        """Why each exit order was sent, by its client order id (a stop-loss, a take-profit...)."""
        reasons: dict[str, str] = {}
        for record in self.exit_store.plans.values():
            for sent in record.sent:
                reasons[sent.client_order_id] = sent.order.reason
        return reasons


def _leg_points(
    start: Decimal, end: Decimal, begins: datetime, ends: datetime, levels: set[Decimal]
) -> list[tuple[Decimal, datetime]]:
    """The prices of one leg after its start: every level it passes, then its end (the close is left to the close),
    spread evenly over the leg's time."""
    if end > start:
        points = sorted(p for p in levels if start < p < end)
    elif end < start:
        points = sorted((p for p in levels if end < p < start), reverse=True)
    else:
        points = []
    points.append(end)
    step = (ends - begins) / (len(points) + 1)
    return [(price, begins + step * (i + 1)) for i, price in enumerate(points)]


def _by_close_time(bars: Mapping[str, Sequence[Bar]]) -> list[tuple[datetime, list[Bar]]]:
    """The bars grouped by close time, in time order, each group in symbol order."""
    merged = heapq.merge(*(((b.close_time, b.symbol, i, b) for i, b in enumerate(s)) for s in bars.values()))
    groups: list[tuple[datetime, list[Bar]]] = []
    for close_time, _, _, bar in merged:
        if groups and groups[-1][0] == close_time:
            groups[-1][1].append(bar)
        else:
            groups.append((close_time, [bar]))
    return groups


def _plan_json(record: ExitRecord) -> dict[str, Any]:
    """An exit plan as ``GET /v1/exits/{id}`` shows it."""
    return exit_data(record)


def _signal_json(row: _SignalRow) -> dict[str, Any]:
    data = row.signal.to_json()
    data["id"] = str(row.id)
    data["at"] = _time(row.signal.at)
    data["outcome"] = row.outcome
    data["order_id"] = None if row.order_id is None else str(row.order_id)
    data["detail"] = row.detail
    data["violations"] = [dict(v) for v in row.violations]
    return data


def _trades(
    orders: Sequence[Order], fills: Sequence[Any], reasons: Mapping[str, str], closes: Mapping[str, Decimal]
) -> list[dict[str, Any]]:
    """The round trips of the run, flat to flat, per symbol, from the fills in order (a fill through zero closes
    one trade and opens the next)."""
    by_id = {o.id: o for o in orders}
    open_trades: dict[str, dict[str, Any]] = {}
    positions: dict[str, Position] = {}
    done: list[dict[str, Any]] = []
    for stored in fills:
        order = by_id[stored.order_id]
        fill = stored.fill
        symbol = order.symbol
        before = positions.get(symbol, Position())
        remaining = fill.qty
        fee_each = fill.fee / fill.qty if fill.qty else ZERO
        while remaining > 0:
            trade = open_trades.get(symbol)
            signed = remaining if order.side is Side.BUY else -remaining
            if trade is None:
                trade = open_trades[symbol] = {
                    "symbol": symbol,
                    "side": "long" if order.side is Side.BUY else "short",
                    "qty": ZERO,
                    "entry_time": stored.at,
                    "entry_cost": ZERO,
                    "entry_qty": ZERO,
                    "exit_value": ZERO,
                    "exit_qty": ZERO,
                    "exit_time": None,
                    "pnl": ZERO,
                    "fees": ZERO,
                    "exit_reason": None,
                }
            held = before.qty
            opening = held == ZERO or (held > 0) == (signed > 0)
            part = remaining if opening else min(remaining, abs(held))
            after = apply_fill(before, order.side, part, fill.price)
            trade["fees"] += fee_each * part
            if opening:
                trade["entry_cost"] += part * fill.price
                trade["entry_qty"] += part
                trade["qty"] = max(trade["qty"], abs(after.qty))
            else:
                trade["exit_value"] += part * fill.price
                trade["exit_qty"] += part
                trade["pnl"] += after.realized_pnl - before.realized_pnl
            before = after
            remaining -= part
            if after.qty == ZERO:
                trade["exit_time"] = stored.at
                trade["exit_reason"] = _exit_reason(order, reasons)
                done.append(_trade_json(open_trades.pop(symbol), None))
        positions[symbol] = before
    for symbol, trade in open_trades.items():
        done.append(_trade_json(trade, closes.get(symbol)))
    done.sort(key=lambda t: (t["entry_time"], t["symbol"]))
    for number, trade in enumerate(done, 1):
        trade["number"] = number
    return done


def _exit_reason(order: Order, reasons: Mapping[str, str]) -> str:
    reason = reasons.get(order.client_order_id)
    if reason is None:
        return "signal"
    return "stop_loss" if reason.startswith("stop") else "take_profit"


def _trade_json(trade: dict[str, Any], last_close: Decimal | None) -> dict[str, Any]:
    entry_price = trade["entry_cost"] / trade["entry_qty"]
    closed = trade["exit_time"] is not None
    if closed:
        exit_price: Decimal | None = trade["exit_value"] / trade["exit_qty"]
        pnl = trade["pnl"] - trade["fees"]
    else:
        exit_price = None
        held = trade["entry_qty"] - trade["exit_qty"]
        sign = 1 if trade["side"] == "long" else -1
        unrealized = ZERO if last_close is None else (last_close - entry_price) * held * sign
        pnl = trade["pnl"] + unrealized - trade["fees"]
    cost = trade["entry_cost"]
    return {
        "number": 0,
        "symbol": trade["symbol"],
        "side": trade["side"],
        "qty": to_str(trade["qty"]),
        "entry_time": _time(trade["entry_time"]),
        "entry_price": to_str(entry_price.quantize(Decimal("1e-12"))),
        "exit_time": _time(trade["exit_time"]) if closed else None,
        "exit_price": None if exit_price is None else to_str(exit_price.quantize(Decimal("1e-12"))),
        "pnl": to_str(pnl.quantize(Decimal("1e-12"))),
        "return": to_str((pnl / cost).quantize(Decimal("1e-8"))) if cost else "0",
        "fees": to_str(trade["fees"].quantize(Decimal("1e-12"))),
        "exit_reason": trade["exit_reason"] if closed else "end",
    }


def run_backtest(
    config: BacktestConfig,
    bars: Mapping[str, Sequence[Bar]],
    progress: Progress | None = None,
    *,
    warmup: Mapping[str, Sequence[Bar]] | None = None,
    full: bool = True,
) -> BacktestRun:
    """Run a backtest to the end (in its own event loop: it never waits on anything but itself)."""
    return run_to_result(Backtest(config, bars, warmup).run(progress, full=full))


def _instance_id(symbol: str) -> str:
    """The strategy instance of a symbol in a backtest (an instance id: letters, digits, ``_.-``)."""
    return "backtest." + symbol.replace("/", "-").replace(":", "-")
