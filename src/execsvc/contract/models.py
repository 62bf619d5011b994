# Generated from openapi/execsvc.yaml by scripts/generate-contract. Do not edit.

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class OrderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    client_order_id: Annotated[
        str | None,
        Field(
            description="Your id for the order, unique in the account forever. Absent or null, one is generated.",
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
    type: Literal["market", "limit"]
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
            description="Required for limit orders; absent or null for market orders.",
            pattern="^[0-9]{1,22}(\\.[0-9]{1,18})?$",
        ),
    ] = None


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
    type: Literal["market", "limit"]
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
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    items: list[Order]
    next_cursor: str | None
