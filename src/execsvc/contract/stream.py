# Generated from openapi/asyncapi.yaml by scripts/generate-contract. Do not edit.

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel


class StreamMessages(RootModel[Any]):
    root: Annotated[Any, Field(title="StreamMessages")]


class AuthRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    action: Literal["auth"]
    token: Annotated[str, Field(max_length=200, min_length=1)]


class Symbol(RootModel[str]):
    root: Annotated[str, Field(pattern="^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")]


class SubscribeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    action: Literal["subscribe"]
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]
    since_seq: Annotated[
        int | None,
        Field(
            description="Resume after this sequence number (account channels; ignored on `markets` and `candles`).",
            ge=0,
        ),
    ] = None
    symbols: Annotated[
        list[Symbol] | None,
        Field(
            description="For `markets` and `candles`, the symbols wanted (default every listed market).", max_length=100
        ),
    ] = None
    timeframes: Annotated[
        list[Literal["1m", "5m", "15m", "1h", "4h", "1d"]] | None,
        Field(description="For `candles`, the timeframes wanted (default every one).", max_length=6),
    ] = None


class UnsubscribeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    action: Literal["unsubscribe"]
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]


class AuthenticatedMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["authenticated"]
    account_id: str
    scopes: list[str]


class SubscribedMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["subscribed"]
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]
    seq: Annotated[
        int,
        Field(
            description="The channel's latest sequence number; updates continue from the next (0 on `markets` and `candles`).",
            ge=0,
        ),
    ]


class UnsubscribedMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["unsubscribed"]
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]


class UpdateMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]
    seq: Annotated[
        int,
        Field(
            description="Strictly increasing per account and channel (per symbol on `markets`, per symbol and timeframe on `candles`).",
            ge=1,
        ),
    ]
    event: Annotated[
        str | None,
        Field(
            description="The event type, as webhooks name it (`order.filled`, ...; `market.mark` on `markets`, `candle.closed` on `candles`)."
        ),
    ] = None
    data: Annotated[
        dict[str, Any],
        Field(
            description="The resource as the REST API shows it (an Order, a Fill, a Position, a Market, a Candle, a Signal, a risk state, a reconciliation finding; on `broker.auth_failed` and `strategy.failed`, the webhook's data)."
        ),
    ]


class SnapshotMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["snapshot"]
    channel: Literal["orders", "fills", "positions", "markets", "risk", "venue", "candles", "signals"]
    seq: Annotated[
        int,
        Field(
            description="The sequence number the snapshot stands at (the channel's latest when it is sent); updates continue from the next.",
            ge=0,
        ),
    ]
    data: Annotated[
        list[dict[str, Any]],
        Field(
            description="The channel's current state, as the REST API shows it (every working order and the latest 100 orders, the latest 100 fills, the latest 100 signals, every position, every market, the latest closed bar of each wanted symbol and timeframe; on `risk`, one item, the account's `GET /v1/risk/state`; on `venue`, the account's unresolved reconciliation findings)."
        ),
    ]


class HeartbeatMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["heartbeat"]
    at: AwareDatetime


class ErrorMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    type: Literal["error"]
    code: Annotated[
        str,
        Field(
            description="A stable code (`invalid_message`, `unknown_symbol`, `too_many_subscriptions`, `too_many_subscribes`, `stream_unavailable`)."
        ),
    ]
    message: str
