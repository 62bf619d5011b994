"""Limits as data: an account's overrides of the service defaults, per account and per symbol.

The service's settings give every limit a default. An account's overrides replace some of them for the whole
account (``account``) or for one market (``symbols``); a value of None switches the check off. Overrides are stored
as JSON with the account (``risk_limits``), versioned, and read under the account lock with every order, so a change
applies to the next order on every instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from execsvc.core.errors import InvalidLimits
from execsvc.core.money import parse_amount, to_str
from execsvc.risk.engine import RiskLimits

Kind = Literal["amount", "count", "seconds", "symbols"]

# Every limit an account may override, and the kind of value it takes.
ACCOUNT_FIELDS: dict[str, Kind] = {
    "min_order_qty": "amount",
    "max_order_qty": "amount",
    "min_order_notional": "amount",
    "max_order_notional": "amount",
    "max_position_notional": "amount",
    "max_gross_exposure": "amount",
    "price_collar_bps": "amount",
    "max_open_orders_per_symbol": "count",
    "max_open_orders_per_account": "count",
    "max_orders_per_second": "count",
    "max_orders_per_minute": "count",
    "daily_loss_limit": "amount",
    "loss_streak_limit": "count",
    "loss_streak_cooldown_seconds": "seconds",
    "allowed_symbols": "symbols",
}
# The limits that may differ per market.
SYMBOL_FIELDS: tuple[str, ...] = (
    "min_order_qty",
    "max_order_qty",
    "min_order_notional",
    "max_order_notional",
    "max_position_notional",
    "price_collar_bps",
    "max_open_orders_per_symbol",
)
# A check may not be switched off by setting these to None: they are durations, not limits.
NOT_NULLABLE = frozenset({"loss_streak_cooldown_seconds"})
# Pairs whose first must not exceed their second, where both are set.
ORDERED_PAIRS = (
    ("min_order_qty", "max_order_qty"),
    ("min_order_notional", "max_order_notional"),
    ("max_open_orders_per_symbol", "max_open_orders_per_account"),
    ("max_orders_per_second", "max_orders_per_minute"),
)
MAX_AMOUNT = Decimal("1e22")
MAX_COUNT = 1_000_000
MAX_SECONDS = 7 * 24 * 3600

Value = Decimal | int | frozenset[str] | None


@dataclass(frozen=True, slots=True)
class LimitOverrides:
    """What an account changes of the defaults: by field, for the account and per symbol."""

    account: Mapping[str, Value] = field(default_factory=dict)
    symbols: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored (and API) form: amounts as strings."""
        return {
            "limits": {name: _out(v) for name, v in sorted(self.account.items())},
            "symbols": {
                symbol: {name: _out(v) for name, v in sorted(values.items())}
                for symbol, values in sorted(self.symbols.items())
            },
        }

    def dumps(self) -> str:
        """Canonical JSON text."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LimitOverrides:
        """Read the stored form (validated when it was written)."""
        account = {name: _in(name, v) for name, v in data.get("limits", {}).items() if name in ACCOUNT_FIELDS}
        symbols = {
            symbol: {name: _in(name, v) for name, v in values.items() if name in SYMBOL_FIELDS}
            for symbol, values in data.get("symbols", {}).items()
        }
        return cls(account, symbols)


def _out(value: Value) -> Any:
    if isinstance(value, Decimal):
        return to_str(value)
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def _in(name: str, value: Any) -> Value:
    if value is None:
        return None
    kind = ACCOUNT_FIELDS[name]
    if kind == "amount":
        return Decimal(value)
    if kind == "symbols":
        return frozenset(value)
    return int(value)


def parse_overrides(
    account: Mapping[str, Any], symbols: Mapping[str, Mapping[str, Any]], listed: Iterable[str], base: RiskLimits
) -> LimitOverrides:
    """Validate overrides as given by a client (amounts as strings) against the listed markets and the defaults.

    Raises ``InvalidLimits`` naming every bad field: unknown names, negative or zero limits, non-integral counts,
    unlisted symbols, and a minimum above its maximum once the overrides are applied to the defaults.
    """
    listed = set(listed)
    errors: list[tuple[str, str]] = []
    parsed_account = {
        name: v for name, raw in account.items() if (v := _parse(f"limits.{name}", name, raw, listed, errors)) != _BAD
    }
    parsed_symbols: dict[str, dict[str, Value]] = {}
    for symbol, values in symbols.items():
        if symbol not in listed:
            errors.append((f"symbols.{symbol}", f"{symbol} is not a listed market"))
            continue
        parsed_symbols[symbol] = {}
        for name, raw in values.items():
            if name not in SYMBOL_FIELDS:
                errors.append((f"symbols.{symbol}.{name}", f"{name} cannot be set per symbol"))
                continue
            value = _parse(f"symbols.{symbol}.{name}", name, raw, listed, errors)
            if value != _BAD:
                parsed_symbols[symbol][name] = value
    overrides = LimitOverrides(parsed_account, parsed_symbols)
    if not errors:
        scopes: list[str | None] = [None, *parsed_symbols]
        for market in scopes:
            limits = effective(base, overrides, market)
            where = "limits" if market is None else f"symbols.{market}"
            for low, high in ORDERED_PAIRS:
                a, b = getattr(limits, low), getattr(limits, high)
                if a is not None and b is not None and a > b:
                    errors.append((f"{where}.{low}", f"{low} ({_out(a)}) is above {high} ({_out(b)})"))
    if errors:
        raise InvalidLimits(errors)
    return overrides


_BAD: Any = object()


def _parse(path: str, name: str, raw: Any, listed: set[str], errors: list[tuple[str, str]]) -> Any:
    kind = ACCOUNT_FIELDS.get(name)
    if kind is None:
        errors.append((path, f"{name} is not a limit"))
        return _BAD
    if raw is None:
        if name in NOT_NULLABLE:
            errors.append((path, f"{name} cannot be switched off"))
            return _BAD
        return None
    if kind == "amount":
        if not isinstance(raw, str):
            errors.append((path, "give amounts as decimal strings"))
            return _BAD
        try:
            value = parse_amount(raw)
        except ValueError:
            errors.append((path, f"{raw!r} is not a decimal number within 18 decimal places"))
            return _BAD
        if value <= 0 or value >= MAX_AMOUNT:
            errors.append((path, f"{name} must be greater than zero and below 1e22"))
            return _BAD
        return value
    if kind in ("count", "seconds"):
        bound = MAX_COUNT if kind == "count" else MAX_SECONDS
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= bound:
            errors.append((path, f"{name} must be a whole number from 1 to {bound}"))
            return _BAD
        return raw
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        errors.append((path, "give a list of symbols"))
        return _BAD
    unknown = sorted(set(raw) - listed)
    if unknown:
        errors.append((path, f"not listed: {', '.join(unknown)}"))
        return _BAD
    return frozenset(raw)


def effective(base: RiskLimits, overrides: LimitOverrides, symbol: str | None) -> RiskLimits:
    """The limits an order in ``symbol`` meets: the defaults, then the account's, then the symbol's overrides."""
    values: dict[str, Any] = dict(overrides.account)
    if symbol is not None:
        values.update(overrides.symbols.get(symbol, {}))
    return replace(base, **values) if values else base


@lru_cache(maxsize=1024)
def _cached(base: RiskLimits, limits_json: str, symbol: str | None) -> RiskLimits:
    return effective(base, LimitOverrides.from_json(json.loads(limits_json)), symbol)


def limits_for(base: RiskLimits, limits_json: str | None, symbol: str | None) -> RiskLimits:
    """``effective`` from the stored JSON, memoised: the order path calls this for every order."""
    return base if limits_json is None else _cached(base, limits_json, symbol)
