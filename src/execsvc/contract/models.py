# Generated from openapi/execsvc.yaml by scripts/generate-contract. Do not edit.

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, StringConstraints
from typing_extensions import TypeAliasType


class Decimal(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class SignedDecimal(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]


class Symbol(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]


class OrderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    client_order_id: Annotated[
        str | None,
        Field(
            description="Your id for the order, unique in the account forever. Absent or null, one is generated. Ids starting with `sig-` or `exit-` are the service's own (its signals' and exit plans' orders): 422 `reserved_client_order_id`.",
            max_length=64,
            min_length=1,
            pattern="^[A-Za-z0-9_-]+$",
        ),
    ] = None
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Literal["buy", "sell"]
    type: Annotated[
        Literal["market", "limit", "stop"],
        Field(
            description="`market`: trades at once at the market. `limit`: trades at `limit_price` or better; a `gtc` one rests until\nit does. `stop` (stop-market): rests unseen until the market trades at `stop_price` (a buy at or above it, a\nsell at or below it), then trades as a market order; it takes `gtc` only, and is refused\n(`would_trigger_immediately`) when the market is already past its stop.\n"
        ),
    ]
    time_in_force: Literal["gtc", "ioc", "fok"] = "gtc"
    qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    limit_price: Annotated[
        str | None,
        Field(
            description="Required for limit orders; absent or null for market and stop orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    stop_price: Annotated[
        str | None,
        Field(
            description="Required for stop orders (a multiple of the market's tick, above zero); absent or null for market and limit orders. A buy stop triggers when the market trades at or above it, a sell stop at or below it.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    reduce_only: Annotated[
        bool,
        Field(
            description="The order may only shrink the account's position in the symbol, never past flat (counting the working orders on its side); otherwise the risk engine denies it (`reduce_only`)."
        ),
    ] = False


class OrderHistoryEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    seq: Annotated[
        int, Field(description="The event's place in the service's record (increasing; gaps are other orders' events).")
    ]
    from_status: Annotated[
        Literal["pending_new", "open", "partially_filled", "filled", "pending_cancel", "canceled", "rejected", "expired", "unknown"] | None,
        Field(description="The status before; null for the order's first event."),
    ]
    to_status: Annotated[
        Literal["pending_new", "open", "partially_filled", "filled", "pending_cancel", "canceled", "rejected", "expired", "unknown"],
        Field(
            description="`pending_new`: recorded, not yet acknowledged by the broker. `open`: resting at the broker.\n`partially_filled`, `filled`. `pending_cancel`: a cancel was sent. `canceled`, `rejected`, `expired`.\n`unknown`: the broker call may or may not have reached the venue; reconciliation resolves it.\n"
        ),
    ]
    reason: Annotated[str, Field(description="Why the status changed, as recorded with it.")]
    at: AwareDatetime


class OrderHistoryPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[OrderHistoryEvent]
    next_cursor: str | None


class Fill(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    order_id: UUID
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Literal["buy", "sell"]
    qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    price: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    fee: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    fee_asset: str
    trade_id: Annotated[
        str, Field(description="The broker's trade id; a fill with a trade id already recorded is ignored.")
    ]
    created_at: AwareDatetime


class FillPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Fill]
    next_cursor: str | None


class Position(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    qty: Annotated[
        str,
        Field(
            description="Signed; negative is short.", examples=["-12.5", "0", "1000"], pattern="^-?[0-9]+(\\.[0-9]+)?$"
        ),
    ]
    avg_entry_price: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    realized_pnl: Annotated[
        str,
        Field(
            description="Realized by average cost, before fees, in the quote asset.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    unrealized_pnl: Annotated[
        str,
        Field(
            description="At the current mark, in the quote asset.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    mark_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    notional: Annotated[
        str,
        Field(
            description="Signed quantity times mark, in the quote asset.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]


class PositionList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Position]


class Balance(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    asset: str
    total: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    reserved: Annotated[
        str,
        Field(
            description="Held by open orders.", examples=["0.015", "65000.5"], pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    available: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]


class Account(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    broker: str
    valuation_asset: Annotated[str, Field(description="The asset equity and PnL are expressed in.")]
    balances: list[Balance]
    equity: Annotated[
        str,
        Field(
            description="Every balance valued at its mark, in the valuation asset.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    realized_pnl: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    unrealized_pnl: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    fees_paid: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class Market(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    base: str
    quote: str
    tick_size: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    qty_step: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    min_qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    min_notional: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    mark_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    mark_time: AwareDatetime | None


class MarketList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Market]


class Candle(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    timeframe: Annotated[
        Literal["1m", "5m", "15m", "1h", "4h", "1d"],
        Field(description="A bar length, aligned to UTC epoch boundaries (`1d` bars open at 00:00 UTC)."),
    ]
    open_time: Annotated[AwareDatetime, Field(description="The start of the bar's period (inclusive).")]
    close_time: Annotated[
        AwareDatetime, Field(description="The end of the bar's period (exclusive), the next bar's `open_time`.")
    ]
    open: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    high: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    low: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    close: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    volume: Annotated[
        str,
        Field(
            description="The base asset traded in the period, as the venue reports it; 0 for bars built from marks.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    ticks: Annotated[
        int | None,
        Field(description="How many marks the bar was built from (simulated market); null for a venue's bar.", ge=1),
    ]


class CandlePage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Candle]
    next_cursor: str | None


class SignalRefusal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    code: Annotated[str, Field(description="The sizing refusal's code, or `risk_rejected` for a risk denial.")]
    reason: str
    violations: Annotated[
        list[dict[str, Any]], Field(description="The risk rules the order broke (empty for a sizing refusal).")
    ]


class Signal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    account_id: str
    source: Annotated[
        str, Field(description="Where it came from, `strategy:<instance id>` (or `api` for an inbound signal).")
    ]
    strategy: Annotated[str | None, Field(description="The strategy kind that produced it (e.g. `ema_rsi`).")]
    instance_id: str | None
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    timeframe: Annotated[str | None, Field(description="The bar length it was computed on.")]
    side: Literal["buy", "sell"]
    strength: Annotated[float, Field(ge=0.0, le=1.0)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    rule: Annotated[str, Field(description="The stable name of the condition that fired.")]
    reasons: Annotated[
        dict[str, float | str],
        Field(description="Each indicator or threshold behind the rule, with its value on the bar."),
    ]
    entry: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    stop_loss: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    take_profits: Annotated[
        list[Decimal],
        Field(description="The take-profit levels, nearest first (2x, 3x and 4x ATR for the built-in strategies)."),
    ]
    at: Annotated[AwareDatetime, Field(description="The close time of the bar it was computed on.")]
    created_at: AwareDatetime
    status: Annotated[
        Literal["pending", "ordered", "refused", "denied"],
        Field(
            description="What became of a signal: `pending` (no order yet), `ordered` (its order was placed), `refused` (sizing made no order of it), `denied` (the risk engine denied its order)."
        ),
    ]
    order_id: UUID | None
    refusal: SignalRefusal | None


class Reasons(RootModel[str]):
    root: Annotated[str, Field(max_length=200)]


class SignalCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Literal["buy", "sell"]
    qty: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    notional: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    stop_loss: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    take_profits: Annotated[list[Decimal] | None, Field(max_length=10)] = None
    signal_id: Annotated[
        str | None,
        Field(
            description="The sender's id of the signal; the same one twice in the account is the same signal.",
            pattern="^[A-Za-z0-9_.:-]{1,100}$",
        ),
    ] = None
    rule: Annotated[str | None, Field(description="What fired (default `inbound`).", max_length=64, min_length=1)] = (
        None
    )
    reasons: Annotated[
        dict[str, float | Reasons] | None,
        Field(description="The values behind the signal (at most 20).", max_length=20),
    ] = None
    strength: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    confidence: Annotated[float | None, Field(ge=0.0, le=1.0)] = None


class SignalSecret(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    account_id: str
    created_at: AwareDatetime


class SignalSecretCreated(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    account_id: str
    created_at: AwareDatetime
    secret: Annotated[str, Field(description="The Standard Webhooks secret (`whsec_<base64>`); shown only here.")]


class SignalSecretList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[SignalSecret]


class SignalPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Signal]
    next_cursor: str | None


class ExitLeg(BaseModel):
    """
    The stop-loss.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    price: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    qty: Annotated[
        str | None,
        Field(
            description="Always null; the stop exits whatever is still held when it fires.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    state: Annotated[
        Literal["pending", "armed", "sent", "done", "disarmed"],
        Field(
            description="`pending` (the entry has not filled), `armed` (watched), `sent` (its exit order is working), `done` (its exit filled), `disarmed` (the other side fired, the plan was canceled or nothing is left)."
        ),
    ]
    attempt: Annotated[
        int,
        Field(
            description="Counts re-arms after an exit that did not fill (part of the exit order's client order id).",
            ge=1,
        ),
    ]


class ExitTakeProfit(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    level: Annotated[int, Field(description="1 for the take-profit nearest the entry, then 2, 3, ...", ge=1)]
    price: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    qty: Annotated[
        str | None,
        Field(description="Its share of the position (null while pending).", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"),
    ]
    state: Annotated[
        Literal["pending", "armed", "sent", "done", "disarmed"],
        Field(
            description="`pending` (the entry has not filled), `armed` (watched), `sent` (its exit order is working), `done` (its exit filled), `disarmed` (the other side fired, the plan was canceled or nothing is left)."
        ),
    ]
    attempt: Annotated[int, Field(ge=1)]


class ExitOrderRef(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    client_order_id: Annotated[str, Field(max_length=64, min_length=1, pattern="^[A-Za-z0-9_-]+$")]
    order_id: UUID | None
    side: Literal["buy", "sell"]
    qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    reason: Annotated[str, Field(description="What fired it (`stop-loss at 61500`, `take-profit 1, 2 at 66800`).")]
    status: Annotated[
        Literal["working", "ended"],
        Field(description="`working` until its order has ended, then `ended` with what it `filled`."),
    ]
    filled: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    sent_at: AwareDatetime


class ExitPlan(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    account_id: str
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Annotated[Literal["buy", "sell"], Field(description="The entry's side (its exits are on the other).")]
    entry_order_id: UUID
    signal_id: UUID | None
    source: Annotated[str, Field(description="The entry's source; its exit orders carry it too.")]
    state: Literal["pending", "active", "closed", "canceled"]
    entry_price: Annotated[
        str | None,
        Field(
            description="The entry's average fill price (null while pending).", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    qty: Annotated[
        str | None,
        Field(
            description="The quantity protected, what the entry filled (null while pending).",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    exited: Annotated[
        str,
        Field(
            description="What exit orders have filled so far.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    break_even: Annotated[bool, Field(description="The stop was moved to the entry price after the first take-profit.")]
    stop_loss: ExitLeg | None
    take_profits: Annotated[list[ExitTakeProfit], Field(description="Nearest the entry first.")]
    orders: Annotated[list[ExitOrderRef], Field(description="Every exit order the plan sent, oldest first.")]
    close_reason: str | None
    last_error: Annotated[str | None, Field(description="Why the last exit order that did not fill did not.")]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ExitPlanPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[ExitPlan]
    next_cursor: str | None


class BacktestData(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    source: Literal["candles", "generated"] | None = None
    market: Annotated[
        str | None,
        Field(
            description="The market the candles were stored for (`paper`, or a venue's market key).",
            max_length=64,
            min_length=1,
        ),
    ] = None
    seed: Annotated[int | None, Field(ge=0, le=2147483648)] = None
    bars: Annotated[int | None, Field(ge=1, le=1000000)] = None
    start_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None


class BacktestMarket(BaseModel):
    """
    The market rules of every symbol (default tick 0.01, step 0.00001, minimum notional 5).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    tick_size: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    qty_step: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    min_qty: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    min_notional: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None


GridAdditionalProperty = TypeAliasType("GridAdditionalProperty", Annotated[list[Any], Field(min_length=1)])


class WalkForwardRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    mode: Literal["rolling", "anchored"] | None = None
    in_sample_bars: Annotated[int, Field(ge=10, le=1000000)]
    out_of_sample_bars: Annotated[int, Field(ge=1, le=1000000)]
    metric: Literal["sharpe", "sortino", "total_return", "cagr", "profit_factor", "win_rate", "expectancy", "max_drawdown"] | None = (
        None
    )
    grid: Annotated[
        dict[str, GridAdditionalProperty],
        Field(description='Each parameter\'s values to try, e.g. `{"fast_period": [8, 12], "slow_period": [26, 40]}`.'),
    ]


class BacktestProgress(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    done: Annotated[int, Field(ge=0)]
    total: Annotated[int, Field(ge=0)]


class Backtest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    status: Literal["queued", "running", "done", "failed", "canceled"]
    progress: BacktestProgress
    error: str | None
    summary: Annotated[
        dict[str, Any] | None,
        Field(description="The metrics of a finished backtest (a walk-forward's stitched out-of-sample ones)."),
    ]
    request: Annotated[dict[str, Any], Field(description="The backtest as asked for.")]
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None


class BacktestDetail(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    status: Literal["queued", "running", "done", "failed", "canceled"]
    progress: BacktestProgress
    error: str | None
    summary: dict[str, Any] | None
    request: dict[str, Any]
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    result: Annotated[
        dict[str, Any] | None, Field(description="The result document once `done` (README, Backtesting, describes it).")
    ]


class BacktestPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Backtest]
    next_cursor: str | None


class StrategyParams(BaseModel):
    """
    The strategy's parameters, validated for its kind (a missing field takes its default).
    """

    model_config = ConfigDict(
        extra="allow",
    )


class FixedQtySizing(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    fixed_qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class FixedNotionalSizing(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    fixed_notional: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class EquityFractionSizing(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    equity_fraction: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class RiskPerTradeSizing(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    risk_per_trade: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]


class StrategyInstanceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[str | None, Field(pattern="^[A-Za-z0-9_.-]{1,64}$")] = None
    kind: Annotated[
        Literal["adx_regime", "ema_cross", "ema_rsi", "macd_bb"],
        Field(description="A built-in strategy (see `GET /v1/strategy-kinds`)."),
    ]
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    timeframe: Annotated[
        Literal["1m", "5m", "15m", "1h", "4h", "1d"],
        Field(description="A bar length, aligned to UTC epoch boundaries (`1d` bars open at 00:00 UTC)."),
    ]
    params: StrategyParams | None = None
    sizing: Annotated[
        FixedQtySizing | FixedNotionalSizing | EquityFractionSizing | RiskPerTradeSizing,
        Field(
            description="How big each signal's order is, exactly one of: `fixed_qty` (that quantity of the base asset, above 0),\n`fixed_notional` (that value in the quote asset, above 0), `equity_fraction` (that share of the account's\nequity at the signal's entry price, above 0 and at most 1: all in is a little under 1, as a market buy is\nchecked against the balance with a slippage buffer), `risk_per_trade` (the fraction of the equity a\nstop-out loses, above 0 and at most 1). Always rounded down to the market's step.\n"
        ),
    ]


class StrategyInstanceUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    params: StrategyParams | None = None
    sizing: Annotated[
        FixedQtySizing | FixedNotionalSizing | EquityFractionSizing | RiskPerTradeSizing | None,
        Field(
            description="How big each signal's order is, exactly one of: `fixed_qty` (that quantity of the base asset, above 0),\n`fixed_notional` (that value in the quote asset, above 0), `equity_fraction` (that share of the account's\nequity at the signal's entry price, above 0 and at most 1: all in is a little under 1, as a market buy is\nchecked against the balance with a slippage buffer), `risk_per_trade` (the fraction of the equity a\nstop-out loses, above 0 and at most 1). Always rounded down to the market's step.\n"
        ),
    ] = None


class StrategyLastSignal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    side: Literal["buy", "sell"]
    rule: str
    at: Annotated[AwareDatetime, Field(description="The close time of the bar it was made on.")]
    status: Annotated[
        Literal["pending", "ordered", "refused", "denied"],
        Field(
            description="What became of a signal: `pending` (no order yet), `ordered` (its order was placed), `refused` (sizing made no order of it), `denied` (the risk engine denied its order)."
        ),
    ]
    order_id: UUID | None


class StrategyPosition(BaseModel):
    """
    The position and PnL attributed to the instance: from the fills of every order it placed (its signals' entries and their exits, source `strategy:<id>`), average-cost accounting, in the market's quote asset.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    qty: Annotated[
        str,
        Field(
            description="Signed (negative is short).", examples=["-12.5", "0", "1000"], pattern="^-?[0-9]+(\\.[0-9]+)?$"
        ),
    ]
    avg_entry_price: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    realized_pnl: Annotated[
        str, Field(description="Gross of fees.", examples=["-12.5", "0", "1000"], pattern="^-?[0-9]+(\\.[0-9]+)?$")
    ]
    unrealized_pnl: Annotated[
        str,
        Field(
            description="What the open quantity would realize at the mark (0 when flat or with no mark).",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    mark: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    fees: Annotated[dict[str, Decimal], Field(description="The fees paid, by asset.")]
    fills: Annotated[int, Field(description="How many fills it is made of.", ge=0)]


class StrategyKind(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    kind: Annotated[
        Literal["adx_regime", "ema_cross", "ema_rsi", "macd_bb"],
        Field(description="A built-in strategy (see `GET /v1/strategy-kinds`)."),
    ]
    summary: str
    params_schema: Annotated[
        dict[str, Any],
        Field(
            description="The JSON schema of the kind's `params` (every field with its default, bounds and description)."
        ),
    ]


class StrategyKindList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[StrategyKind]


class Health(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    status: Literal["ready", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable", "not_configured"]]


class FieldError(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    field: Annotated[str, Field(description="Where the error is, e.g. `body.qty` or `query.limit`.")]
    message: str


class Violation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    rule: str
    limit: str | None
    value: str | None
    message: str


class RiskDecision(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    approved: bool
    violations: list[Violation]


class ScopeState(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    state: Annotated[
        Literal["active", "reducing", "halted"],
        Field(description="`active` - every order; `reducing` - only orders that shrink a position; `halted` - none."),
    ]
    reason: str | None
    changed_by: Annotated[str | None, Field(description="The token (`token:<id>`) or component that set it.")]
    changed_at: AwareDatetime | None


class Restriction(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    rule: Annotated[str, Field(description="`trading_state` (manual), `daily_loss` or `loss_streak` (automatic).")]
    state: Annotated[
        Literal["active", "reducing", "halted"],
        Field(description="`active` - every order; `reducing` - only orders that shrink a position; `halted` - none."),
    ]
    reason: str
    until: Annotated[
        AwareDatetime | None,
        Field(description="When it lifts by itself (the next UTC day, the end of a cooldown), if it does."),
    ]


class Headroom(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    rule: str
    symbol: Symbol | None
    limit: str
    used: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]
    remaining: Annotated[
        str,
        Field(
            description="A signed decimal number as a string.",
            examples=["-12.5", "0", "1000"],
            pattern="^-?[0-9]+(\\.[0-9]+)?$",
        ),
    ]


class BreakerState(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    broker: str
    state: Literal["closed", "open", "half_open"]
    recent_failures: Annotated[int, Field(ge=0)]
    failure_threshold: int | None
    opened_at: AwareDatetime | None
    retry_at: AwareDatetime | None


class RiskEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    scope: Literal["account", "global"]
    kind: Annotated[str, Field(description="halted, reducing, resumed, daily_loss_breached, loss_streak_cooldown.")]
    state: Literal["active", "reducing", "halted"] | None
    reason: str
    actor: str
    at: AwareDatetime


class Pnl(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    day: date
    currency: str
    day_start_equity: SignedDecimal | None
    equity: Annotated[SignedDecimal | None, Field(description="Null while a held asset has no mark to be valued at.")]
    today: Annotated[
        SignedDecimal | None, Field(description="Today's PnL; null while the equity or the day's baseline is unknown.")
    ]
    daily_loss_limit: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    breached: bool


class LossStreak(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    losing_round_trips: Annotated[int, Field(ge=0)]
    limit: int | None
    cooldown_until: AwareDatetime | None


BySymbolAdditionalProperty = TypeAliasType("BySymbolAdditionalProperty", Annotated[int, Field(ge=0)])


class OpenOrders(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    total: Annotated[int, Field(ge=0)]
    by_symbol: dict[str, BySymbolAdditionalProperty]


class RiskState(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    account_id: str
    state: Annotated[
        Literal["active", "reducing", "halted"],
        Field(description="`active` - every order; `reducing` - only orders that shrink a position; `halted` - none."),
    ]
    account: ScopeState
    global_: Annotated[ScopeState, Field(alias="global")]
    restrictions: list[Restriction]
    pnl: Pnl
    loss_streak: LossStreak
    headroom: list[Headroom]
    open_orders: OpenOrders
    breakers: list[BreakerState]
    events: Annotated[
        list[RiskEvent], Field(description="The latest state changes of the account and the service, newest first.")
    ]


class HaltRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    reason: Annotated[str, Field(max_length=500, min_length=1, pattern="^[^\\x00]*$")]
    scope: Literal["account", "global"] = "account"
    account_id: Annotated[
        str | None,
        Field(
            description="The account to halt (scope `account`; absent or null - the token's own).",
            pattern="^[A-Za-z0-9._-]{1,64}$",
        ),
    ] = None
    state: Literal["halted", "reducing"] = "halted"
    cancel_open_orders: bool = False


class ResumeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    reason: Annotated[str | None, Field(max_length=500, min_length=1, pattern="^[^\\x00]*$")] = None
    scope: Literal["account", "global"] = "account"
    account_id: Annotated[
        str | None,
        Field(
            description="The account to resume (scope `account`; absent or null - the token's own).",
            pattern="^[A-Za-z0-9._-]{1,64}$",
        ),
    ] = None
    reset_restrictions: Annotated[
        bool,
        Field(
            description="Also lift the account's automatic restrictions: the daily loss counts afresh from the equity now, and a\nlosing streak and its cooldown are forgotten. Without it a breach of the daily loss limit holds until\nthe UTC day ends.\n"
        ),
    ] = False


class CancelFailure(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    account_id: str
    order_id: UUID | None
    error: str


class StateChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    scope: Literal["account", "global"]
    account_id: str | None
    state: ScopeState
    canceled_order_ids: list[UUID]
    cancel_failures: Annotated[
        list[CancelFailure],
        Field(
            description="Orders left open, with why; `order_id` is null when the account's orders could not be listed."
        ),
    ]


class AccountLimits(BaseModel):
    """
    Limits for the whole account. Amounts are decimal strings; `null` switches a check off.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    min_order_qty: Annotated[
        str | None, Field(description="Smallest order quantity.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$")
    ] = None
    max_order_qty: Annotated[
        str | None, Field(description="Largest order quantity.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$")
    ] = None
    min_order_notional: Annotated[
        str | None,
        Field(description="Smallest order value, in the valuation asset.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"),
    ] = None
    max_order_notional: Annotated[
        str | None,
        Field(description="Largest order value, in the valuation asset.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"),
    ] = None
    max_position_notional: Annotated[
        str | None,
        Field(
            description="Largest position value per symbol after the order, counting same-side open orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    price_collar_bps: Annotated[
        str | None,
        Field(
            description="Furthest a limit price may be from the mark, in basis points.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    max_open_orders_per_symbol: Annotated[
        int | None, Field(description="Most working orders in one symbol.", ge=1, le=1000000)
    ] = None
    max_gross_exposure: Annotated[
        str | None,
        Field(
            description="Largest gross exposure across symbols, in the valuation asset.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    max_open_orders_per_account: Annotated[
        int | None, Field(description="Most working orders in the account.", ge=1, le=1000000)
    ] = None
    max_orders_per_second: Annotated[
        int | None, Field(description="Most submissions in any second.", ge=1, le=1000000)
    ] = None
    max_orders_per_minute: Annotated[
        int | None, Field(description="Most submissions in any minute.", ge=1, le=1000000)
    ] = None
    daily_loss_limit: Annotated[
        str | None,
        Field(
            description="Loss since 00:00 UTC (realized and unrealized) that turns the account to reducing.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    loss_streak_limit: Annotated[
        int | None, Field(description="Losing round trips in a row that start a cooldown.", ge=1, le=1000000)
    ] = None
    loss_streak_cooldown_seconds: Annotated[
        int | None, Field(description="How long a losing streak keeps the account reducing.", ge=1, le=604800)
    ] = None
    allowed_symbols: Annotated[
        list[Symbol] | None,
        Field(description="The markets this account may trade (null - every listed market).", max_length=200),
    ] = None


class SymbolLimits(BaseModel):
    """
    Limits for one market, over the account's.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    min_order_qty: Annotated[
        str | None, Field(description="Smallest order quantity.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$")
    ] = None
    max_order_qty: Annotated[
        str | None, Field(description="Largest order quantity.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$")
    ] = None
    min_order_notional: Annotated[
        str | None,
        Field(description="Smallest order value, in the valuation asset.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"),
    ] = None
    max_order_notional: Annotated[
        str | None,
        Field(description="Largest order value, in the valuation asset.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"),
    ] = None
    max_position_notional: Annotated[
        str | None,
        Field(
            description="Largest position value per symbol after the order, counting same-side open orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    price_collar_bps: Annotated[
        str | None,
        Field(
            description="Furthest a limit price may be from the mark, in basis points.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    max_open_orders_per_symbol: Annotated[
        int | None, Field(description="Most working orders in one symbol.", ge=1, le=1000000)
    ] = None


class LimitOverrides(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    limits: AccountLimits | None = None
    symbols: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")], SymbolLimits] | None,
        Field(description="Per-market limits by symbol.", max_length=200),
    ] = None


class RiskLimits(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    account_id: str
    version: Annotated[int, Field(description="0 while the account has never changed its limits.", ge=0)]
    updated_by: str | None
    updated_at: AwareDatetime | None
    overrides: LimitOverrides
    effective: AccountLimits
    effective_by_symbol: Annotated[
        dict[str, SymbolLimits], Field(description="The limits an order in each listed market meets.")
    ]


class LimitVersion(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    version: Annotated[int, Field(ge=1)]
    changed_by: str
    changed_at: AwareDatetime
    overrides: LimitOverrides


class LimitVersionList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[LimitVersion]


class Asset(RootModel[str]):
    root: Annotated[str, Field(examples=["USDT"], pattern="^[A-Z0-9]{1,20}$")]


class VenueUrl(RootModel[str]):
    root: Annotated[str, Field(description="An absolute http(s) URL with a host.", max_length=2000, min_length=1)]


class VenueOptions(BaseModel):
    """
    How to reach the venue.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    options: Annotated[
        dict[str, Any] | None, Field(description="ccxt exchange `options`, passed as they are.", max_length=100)
    ] = None
    sandbox: Annotated[bool, Field(description="Use the venue's sandbox (testnet).")] = False
    api_base_url: Annotated[
        VenueUrl | None,
        Field(
            description="Replaces the scheme and host of every API URL of the venue (a regional endpoint, a local fake)."
        ),
    ] = None
    urls: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], VenueUrl] | None,
        Field(
            description="Replaces single entries of ccxt's `urls['api']` by name; wins over `api_base_url`.",
            max_length=50,
        ),
    ] = None


class VenueCredentials(BaseModel):
    """
    An API key and its secrets. Stored encrypted; never shown again.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    api_key: Annotated[str, Field(max_length=512, min_length=1)]
    secret: Annotated[str, Field(max_length=4096, min_length=1)]
    passphrase: Annotated[str | None, Field(max_length=512, min_length=1)] = None


class CredentialsInfo(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    present: bool
    key_hint: Annotated[
        str | None,
        Field(
            description="The last four characters of the API key, to tell keys apart; null without credentials, or when the\nstored ones cannot be opened with the service's secrets key.\n"
        ),
    ]


class VenueAccountCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[str, Field(pattern="^[A-Za-z0-9._-]{1,64}$")]
    venue: Annotated[
        str,
        Field(
            description="`paper` (the simulated market) or a ccxt exchange id such as `binance`.",
            examples=["paper", "binance"],
            pattern="^[a-z0-9_]{1,64}$",
        ),
    ] = "paper"
    mode: Annotated[
        Literal["paper", "shadow", "live"],
        Field(
            description="`paper` - the paper matcher fills the orders (at the simulated market's prices, or the venue's when a venue\nis named); `shadow` - the venue's live prices, the whole pipeline and risk engine, the paper matcher, nothing\nsent to the venue; `live` - orders go to the venue.\n"
        ),
    ] = "paper"
    venue_options: VenueOptions | None = None
    credentials: VenueCredentials | None = None
    starting_balances: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,20}$")], Decimal] | None,
        Field(
            description="A paper or shadow account's balances to start with (default the service's); not for live.",
            max_length=100,
        ),
    ] = None
    valuation_asset: Annotated[
        str | None,
        Field(
            description="The asset equity and PnL are expressed in; the service values every account in one asset.",
            examples=["USDT"],
            pattern="^[A-Z0-9]{1,20}$",
        ),
    ] = None


class VenueAccountUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    venue: Annotated[
        str | None,
        Field(
            description="Cannot change; a different venue answers 422 `venue_immutable`.",
            examples=["paper", "binance"],
            pattern="^[a-z0-9_]{1,64}$",
        ),
    ] = None
    mode: Annotated[
        Literal["paper", "shadow", "live"] | None,
        Field(
            description="`paper` - the paper matcher fills the orders (at the simulated market's prices, or the venue's when a venue\nis named); `shadow` - the venue's live prices, the whole pipeline and risk engine, the paper matcher, nothing\nsent to the venue; `live` - orders go to the venue.\n"
        ),
    ] = None
    venue_options: VenueOptions | None = None
    credentials: Annotated[
        VenueCredentials | None, Field(description="Replaces the stored credentials; `null` removes them.")
    ] = None


class VenueAccount(BaseModel):
    """
    An account and how it trades. A live account's balances are the venue's wallet: they are set from it when the
    account goes live and reconciliation reports any drift from it.

    """

    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[str, Field(pattern="^[A-Za-z0-9._-]{1,64}$")]
    venue: Annotated[
        str,
        Field(
            description="`paper` (the simulated market) or a ccxt exchange id such as `binance`.",
            examples=["paper", "binance"],
            pattern="^[a-z0-9_]{1,64}$",
        ),
    ]
    mode: Annotated[
        Literal["paper", "shadow", "live"],
        Field(
            description="`paper` - the paper matcher fills the orders (at the simulated market's prices, or the venue's when a venue\nis named); `shadow` - the venue's live prices, the whole pipeline and risk engine, the paper matcher, nothing\nsent to the venue; `live` - orders go to the venue.\n"
        ),
    ]
    broker: Annotated[
        str,
        Field(
            description="The adapter that executes the orders (`paper`, `paper@MARKET`, `live@MARKET/FINGERPRINT`, where MARKET is the venue, followed by `#` and a fingerprint when it is reached with venue options of its own); live accounts\nwith the same key and options share one.\n"
        ),
    ]
    venue_options: VenueOptions
    credentials: CredentialsInfo
    valuation_asset: str
    created_at: AwareDatetime
    updated_at: AwareDatetime


class VenueAccountList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[VenueAccount]


class ReconciliationFinding(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    account_id: str
    venue: str
    kind: Annotated[
        Literal["external_order", "balance_drift"],
        Field(
            description="`external_order` - an open order at the venue execsvc never placed (`key`: its venue id); `balance_drift` - the wallet differs from the ledger (`key`: the asset)."
        ),
    ]
    key: str
    detail: Annotated[dict[str, str], Field(description="The facts, as strings (amounts exact).")]
    first_seen_at: AwareDatetime
    last_seen_at: AwareDatetime
    resolved_at: Annotated[AwareDatetime | None, Field(description="When reconciliation stopped seeing it.")]


class ReconciliationFindingList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[ReconciliationFinding]


class BrokerAuthFailure(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    account_id: str
    venue: str
    broker: str
    reason: Annotated[str, Field(description="What the venue said (never the key or secret).")]
    at: AwareDatetime


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    url: Annotated[str, Field(max_length=2000, min_length=1)]
    events: Annotated[
        list[Literal["order.submitted", "order.accepted", "order.partially_filled", "order.filled", "order.cancel_requested", "order.canceled", "order.rejected", "order.expired", "order.unknown", "fill.created", "position.changed", "risk.halted", "risk.resumed", "order.external", "balance.drift", "broker.auth_failed", "signal.created", "signal.updated", "strategy.failed"]],
        Field(max_length=20, min_length=1),
    ]
    description: Annotated[str | None, Field(max_length=500, pattern="^[^\\x00]*$")] = None


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    url: Annotated[str | None, Field(max_length=2000, min_length=1)] = None
    events: Annotated[
        list[Literal["order.submitted", "order.accepted", "order.partially_filled", "order.filled", "order.cancel_requested", "order.canceled", "order.rejected", "order.expired", "order.unknown", "fill.created", "position.changed", "risk.halted", "risk.resumed", "order.external", "balance.drift", "broker.auth_failed", "signal.created", "signal.updated", "strategy.failed"]] | None,
        Field(max_length=20, min_length=1),
    ] = None
    description: Annotated[str | None, Field(max_length=500, pattern="^[^\\x00]*$")] = None
    enabled: bool | None = None


class Webhook(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    url: str
    events: list[Literal["order.submitted", "order.accepted", "order.partially_filled", "order.filled", "order.cancel_requested", "order.canceled", "order.rejected", "order.expired", "order.unknown", "fill.created", "position.changed", "risk.halted", "risk.resumed", "order.external", "balance.drift", "broker.auth_failed", "signal.created", "signal.updated", "strategy.failed"]]
    description: str | None
    enabled: bool
    disabled_reason: Annotated[
        str | None,
        Field(description="Why deliveries stopped (an endpoint that answered 410), until it is enabled again."),
    ]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class WebhookWithSecret(BaseModel):
    """
    A subscription with its signing secret (only when made, and on rotation).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    url: str
    events: list[Literal["order.submitted", "order.accepted", "order.partially_filled", "order.filled", "order.cancel_requested", "order.canceled", "order.rejected", "order.expired", "order.unknown", "fill.created", "position.changed", "risk.halted", "risk.resumed", "order.external", "balance.drift", "broker.auth_failed", "signal.created", "signal.updated", "strategy.failed"]]
    description: str | None
    enabled: bool
    disabled_reason: Annotated[
        str | None,
        Field(description="Why deliveries stopped (an endpoint that answered 410), until it is enabled again."),
    ]
    created_at: AwareDatetime
    updated_at: AwareDatetime
    secret: Annotated[
        str,
        Field(
            description="The Standard Webhooks signing secret (`whsec_` + base64).", pattern="^whsec_[A-Za-z0-9+/=]+$"
        ),
    ]


class WebhookList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Webhook]


class WebhookAttempt(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    attempt: Annotated[int, Field(ge=1)]
    status_code: int | None
    latency_ms: Annotated[int, Field(ge=0)]
    error: str | None
    next_attempt_at: AwareDatetime | None
    at: AwareDatetime


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[
        UUID,
        Field(
            description="Sent as `webhook-id` (`msg_` + this id without dashes), the same on every retry and replay."
        ),
    ]
    webhook_id: UUID
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "dead"]
    attempts: Annotated[int, Field(ge=0)]
    next_attempt_at: AwareDatetime
    last_status_code: int | None
    last_error: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    attempt_log: list[WebhookAttempt]


class WebhookDeliveryPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[WebhookDelivery]
    next_cursor: str | None


class FillEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["fill.created"]
    created_at: AwareDatetime
    data: Fill


class SignalEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["signal.created", "signal.updated"]
    created_at: AwareDatetime
    data: Signal


class PositionEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["position.changed"]
    created_at: AwareDatetime
    data: Position


class Data(BaseModel):
    scope: Literal["account", "global"]
    account_id: str | None
    kind: str
    state: Literal["active", "reducing", "halted"] | None
    reason: str
    actor: str
    at: AwareDatetime


class RiskStateEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["risk.halted", "risk.resumed"]
    created_at: AwareDatetime
    data: Data


class ReconciliationEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["order.external", "balance.drift"]
    created_at: AwareDatetime
    data: ReconciliationFinding


class BrokerAuthFailedEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["broker.auth_failed"]
    created_at: AwareDatetime
    data: BrokerAuthFailure


class StrategyFailure(BaseModel):
    """
    A strategy instance that stopped because its strategy raised.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[str, Field(pattern="^[A-Za-z0-9_.-]{1,64}$")]
    account_id: str
    kind: str
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    timeframe: Annotated[
        Literal["1m", "5m", "15m", "1h", "4h", "1d"],
        Field(description="A bar length, aligned to UTC epoch boundaries (`1d` bars open at 00:00 UTC)."),
    ]
    status: Literal["failed"]
    error: Annotated[str, Field(description="What the strategy raised.")]
    at: AwareDatetime


class StrategyFailedEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["strategy.failed"]
    created_at: AwareDatetime
    data: StrategyFailure


class Data1(BaseModel):
    webhook_id: UUID


class PingEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["ping"]
    created_at: AwareDatetime
    data: Data1


class Problem(BaseModel):
    """
    An RFC 9457 problem document.
    """

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: Annotated[str, Field(description="A stable machine-readable error code.")]
    request_id: str | None = None
    errors: list[FieldError] | None = None
    violations: list[Violation] | None = None
    order_id: Annotated[
        UUID | None, Field(description="The order the problem is about (a reused client order id, a terminal order).")
    ] = None
    order_status: Annotated[
        Literal["pending_new", "open", "partially_filled", "filled", "pending_cancel", "canceled", "rejected", "expired", "unknown"] | None,
        Field(
            description="`pending_new`: recorded, not yet acknowledged by the broker. `open`: resting at the broker.\n`partially_filled`, `filled`. `pending_cancel`: a cancel was sent. `canceled`, `rejected`, `expired`.\n`unknown`: the broker call may or may not have reached the venue; reconciliation resolves it.\n"
        ),
    ] = None


class RiskAudit(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    approved: bool
    checks: Annotated[
        list[str],
        Field(description="The rules in force for the order's account (a desk limit switched off is not listed)."),
    ]
    violations: list[Violation]


class BacktestRequest(BaseModel):
    """
    A backtest (README, Backtesting): only `strategy`, `symbols` (or `symbol`) and `timeframe` are required.

    """

    model_config = ConfigDict(
        extra="forbid",
    )
    strategy: Annotated[
        Literal["adx_regime", "ema_cross", "ema_rsi", "macd_bb"],
        Field(description="A built-in strategy (see `GET /v1/strategy-kinds`)."),
    ]
    params: StrategyParams | None = None
    symbol: Annotated[
        str | None,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ] = None
    symbols: Annotated[list[Symbol] | None, Field(max_length=20, min_length=1)] = None
    timeframe: Annotated[
        Literal["1m", "5m", "15m", "1h", "4h", "1d"],
        Field(description="A bar length, aligned to UTC epoch boundaries (`1d` bars open at 00:00 UTC)."),
    ]
    start: Annotated[
        AwareDatetime | None,
        Field(description="The first bar's open time (generated data starts here; 2024-01-01 when left out)."),
    ] = None
    end: Annotated[AwareDatetime | None, Field(description="The last bar's close time.")] = None
    data: BacktestData | None = None
    balances: Annotated[
        dict[str, Decimal] | None, Field(description='Starting balances by asset (default `{"USDT": "10000"}`).')
    ] = None
    sizing: Annotated[
        FixedQtySizing | FixedNotionalSizing | EquityFractionSizing | RiskPerTradeSizing | None,
        Field(
            description="How big each signal's order is, exactly one of: `fixed_qty` (that quantity of the base asset, above 0),\n`fixed_notional` (that value in the quote asset, above 0), `equity_fraction` (that share of the account's\nequity at the signal's entry price, above 0 and at most 1: all in is a little under 1, as a market buy is\nchecked against the balance with a slippage buffer), `risk_per_trade` (the fraction of the equity a\nstop-out loses, above 0 and at most 1). Always rounded down to the market's step.\n"
        ),
    ] = None
    fee_bps: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    slippage_bps: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None
    limits: Annotated[
        dict[str, Any] | None,
        Field(description='Risk limit overrides, as an account\'s (`{"limits": {...}, "symbols": {...}}`).'),
    ] = None
    market: BacktestMarket | None = None
    exits: Annotated[
        bool | None,
        Field(description="Act on the signals' stop-loss and take-profits as the service's exit plans (default true)."),
    ] = None
    on_opposite: Annotated[
        Literal["enter", "close"] | None,
        Field(
            description="A signal against the position enters as live (`enter`, the default) or closes it (`close`)."
        ),
    ] = None
    walk_forward: WalkForwardRequest | None = None


class StrategyInstance(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: Annotated[str, Field(pattern="^[A-Za-z0-9_.-]{1,64}$")]
    account_id: str
    kind: Annotated[
        Literal["adx_regime", "ema_cross", "ema_rsi", "macd_bb"],
        Field(description="A built-in strategy (see `GET /v1/strategy-kinds`)."),
    ]
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    timeframe: Annotated[
        Literal["1m", "5m", "15m", "1h", "4h", "1d"],
        Field(description="A bar length, aligned to UTC epoch boundaries (`1d` bars open at 00:00 UTC)."),
    ]
    params: StrategyParams
    sizing: Annotated[
        FixedQtySizing | FixedNotionalSizing | EquityFractionSizing | RiskPerTradeSizing,
        Field(
            description="How big each signal's order is, exactly one of: `fixed_qty` (that quantity of the base asset, above 0),\n`fixed_notional` (that value in the quote asset, above 0), `equity_fraction` (that share of the account's\nequity at the signal's entry price, above 0 and at most 1: all in is a little under 1, as a market buy is\nchecked against the balance with a slippage buffer), `risk_per_trade` (the fraction of the equity a\nstop-out loses, above 0 and at most 1). Always rounded down to the market's step.\n"
        ),
    ]
    status: Annotated[
        Literal["stopped", "running", "failed"],
        Field(description="`stopped`, `running`, or `failed` (the strategy raised; `error` says what)."),
    ]
    error: Annotated[str | None, Field(description="Why it failed (while `failed`).")]
    last_bar_at: Annotated[
        AwareDatetime | None, Field(description="The close time of the last bar it processed (null before the first).")
    ]
    state: Annotated[
        dict[str, Any],
        Field(
            description="What the instance did, as persisted by its runner: `last_signal_at`, `last_signal_side` and\n`last_episode` once it has signalled (empty before).\n"
        ),
    ]
    last_signal: Annotated[
        StrategyLastSignal | None, Field(description="Its newest signal and what became of it (null before the first).")
    ]
    position: StrategyPosition
    created_at: AwareDatetime
    updated_at: AwareDatetime


class StrategyInstancePage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[StrategyInstance]
    next_cursor: str | None


class Order(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    client_order_id: Annotated[str, Field(max_length=64, min_length=1, pattern="^[A-Za-z0-9_-]+$")]
    account_id: str
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Literal["buy", "sell"]
    type: Annotated[
        Literal["market", "limit", "stop"],
        Field(
            description="`market`: trades at once at the market. `limit`: trades at `limit_price` or better; a `gtc` one rests until\nit does. `stop` (stop-market): rests unseen until the market trades at `stop_price` (a buy at or above it, a\nsell at or below it), then trades as a market order; it takes `gtc` only, and is refused\n(`would_trigger_immediately`) when the market is already past its stop.\n"
        ),
    ]
    time_in_force: Literal["gtc", "ioc", "fok"]
    qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    limit_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    stop_price: Annotated[
        str | None,
        Field(
            description="A stop order's trigger price; null for market and limit orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    status: Annotated[
        Literal["pending_new", "open", "partially_filled", "filled", "pending_cancel", "canceled", "rejected", "expired", "unknown"],
        Field(
            description="`pending_new`: recorded, not yet acknowledged by the broker. `open`: resting at the broker.\n`partially_filled`, `filled`. `pending_cancel`: a cancel was sent. `canceled`, `rejected`, `expired`.\n`unknown`: the broker call may or may not have reached the venue; reconciliation resolves it.\n"
        ),
    ]
    filled_qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    avg_fill_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    fees: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    fee_asset: str
    reject_code: str | None
    reject_reason: str | None
    risk: Annotated[
        RiskAudit | None,
        Field(description="The risk engine's decision on the order when it was submitted, with every check it ran."),
    ]
    source: Annotated[
        str,
        Field(
            description="What placed the order: `rest` (this API), `strategy:<instance id>` (a strategy instance's own order) or `signal:<signal id>` (the order of a stored signal).",
            pattern="^(rest|strategy:[A-Za-z0-9_.-]{1,64}|signal:[0-9a-f-]{36})$",
        ),
    ]
    reduce_only: Annotated[
        bool,
        Field(description="It may only shrink the position (`reduce_only` on the request, and the service's exits)."),
    ]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderDetail(BaseModel):
    """
    An order as `GET /v1/orders/{order_id}` shows it, with its exit plans.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    id: UUID
    client_order_id: Annotated[str, Field(max_length=64, min_length=1, pattern="^[A-Za-z0-9_-]+$")]
    account_id: str
    symbol: Annotated[
        str,
        Field(
            description="A market symbol in ccxt unified form, BASE/QUOTE.",
            examples=["BTC/USDT"],
            pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$",
        ),
    ]
    side: Literal["buy", "sell"]
    type: Annotated[
        Literal["market", "limit", "stop"],
        Field(
            description="`market`: trades at once at the market. `limit`: trades at `limit_price` or better; a `gtc` one rests until\nit does. `stop` (stop-market): rests unseen until the market trades at `stop_price` (a buy at or above it, a\nsell at or below it), then trades as a market order; it takes `gtc` only, and is refused\n(`would_trigger_immediately`) when the market is already past its stop.\n"
        ),
    ]
    time_in_force: Literal["gtc", "ioc", "fok"]
    qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    limit_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    stop_price: Annotated[
        str | None,
        Field(
            description="A stop order's trigger price; null for market and limit orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    status: Annotated[
        Literal["pending_new", "open", "partially_filled", "filled", "pending_cancel", "canceled", "rejected", "expired", "unknown"],
        Field(
            description="`pending_new`: recorded, not yet acknowledged by the broker. `open`: resting at the broker.\n`partially_filled`, `filled`. `pending_cancel`: a cancel was sent. `canceled`, `rejected`, `expired`.\n`unknown`: the broker call may or may not have reached the venue; reconciliation resolves it.\n"
        ),
    ]
    filled_qty: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    avg_fill_price: Annotated[
        str | None,
        Field(
            description="A non-negative decimal number as a string, or null.", pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$"
        ),
    ]
    fees: Annotated[
        str,
        Field(
            description="A non-negative decimal number as a string, at most 22 integer and 18 fractional digits.",
            examples=["0.015", "65000.5"],
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ]
    fee_asset: str
    reject_code: str | None
    reject_reason: str | None
    risk: Annotated[
        RiskAudit | None,
        Field(description="The risk engine's decision on the order when it was submitted, with every check it ran."),
    ]
    source: Annotated[
        str,
        Field(
            description="What placed the order: `rest` (this API), `strategy:<instance id>` (a strategy instance's own order) or `signal:<signal id>` (the order of a stored signal).",
            pattern="^(rest|strategy:[A-Za-z0-9_.-]{1,64}|signal:[0-9a-f-]{36})$",
        ),
    ]
    reduce_only: Annotated[
        bool,
        Field(description="It may only shrink the position (`reduce_only` on the request, and the service's exits)."),
    ]
    exits: Annotated[
        list[ExitPlan],
        Field(
            description="The exit plan protecting this order (the entry of a signal with a stop-loss or take-profits) or the one that sent it (an exit order); empty when neither."
        ),
    ]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Order]
    next_cursor: str | None


class SignalAccepted(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    signal: Signal
    order: Order | None


class OrderEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    id: str
    type: Literal["order.submitted", "order.accepted", "order.partially_filled", "order.filled", "order.cancel_requested", "order.canceled", "order.rejected", "order.expired", "order.unknown"]
    created_at: AwareDatetime
    data: Order
