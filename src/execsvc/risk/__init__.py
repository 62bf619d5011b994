"""The pre-trade risk engine: pure functions of their inputs."""

from execsvc.risk.decision import Approved, Denied, RiskDecision, Violation
from execsvc.risk.engine import (
    AccountSnapshot,
    MarketSnapshot,
    OrderIntent,
    RiskLimits,
    audit,
    evaluate,
    market_buy_price,
    reserved_funds,
)

__all__ = [
    "AccountSnapshot",
    "Approved",
    "Denied",
    "MarketSnapshot",
    "OrderIntent",
    "RiskDecision",
    "RiskLimits",
    "Violation",
    "audit",
    "evaluate",
    "market_buy_price",
    "reserved_funds",
]
