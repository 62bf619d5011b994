"""The domain's error hierarchy. The API maps these to problem+json in one place; nothing here knows HTTP."""

from __future__ import annotations

import math
from datetime import datetime
from uuid import UUID


class ExecsvcError(Exception):
    """Base of every error the service raises on purpose."""

    code = "error"


class InvalidOrder(ExecsvcError):
    """The order request is malformed in a way the schema cannot express."""

    code = "invalid_order"

    def __init__(self, message: str, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code:
            self.code = code


class BreaksMarketRules(InvalidOrder):
    """The order does not fit the market's rules (listed symbol, qty step, minimums, tick): bad input, not stored.

    ``violations`` holds ``(rule, limit, value, message)`` for each rule broken.
    """

    code = "invalid_order"

    def __init__(self, violations: tuple[tuple[str, str | None, str | None, str], ...]) -> None:
        super().__init__("; ".join(v[3] for v in violations), code=self.code)
        self.violations = violations


class OrderNotFound(ExecsvcError):
    """No such order in this account."""

    code = "order_not_found"


class DuplicateClientOrderId(ExecsvcError):
    """The client order id was used before in this account."""

    code = "duplicate_client_order_id"

    def __init__(self, client_order_id: str, existing_order_id: UUID) -> None:
        super().__init__(f"client_order_id {client_order_id!r} is already used by order {existing_order_id}")
        self.existing_order_id = existing_order_id


class OrderNotCancelable(ExecsvcError):
    """The order is in a terminal state."""

    code = "order_not_cancelable"

    def __init__(self, order_id: UUID, status: str) -> None:
        super().__init__(f"order {order_id} is {status} and cannot be canceled")
        self.order_id = order_id
        self.status = status


class IdempotencyKeyReused(ExecsvcError):
    """The idempotency key was used with another request body."""

    code = "idempotency_key_reused"


class IdempotencyKeyInFlight(ExecsvcError):
    """The first request with this idempotency key has not finished yet."""

    code = "idempotency_key_in_flight"


class IllegalTransition(ExecsvcError):
    """A report would move an order along an edge the state machine does not have."""

    code = "illegal_transition"


class InvalidFill(ExecsvcError):
    """A fill that cannot belong to its order (overfill, wrong quantity)."""

    code = "invalid_fill"


class AccountNotFound(ExecsvcError):
    """No such account."""

    code = "account_not_found"


class BrokerError(ExecsvcError):
    """Base of the errors broker adapters raise; vendor errors are translated into these at the adapter edge."""

    code = "broker_error"


class BrokerUnavailable(BrokerError):
    """The broker could not be reached and the request certainly did not arrive."""

    code = "broker_unavailable"


class BrokerCircuitOpen(BrokerUnavailable):
    """The broker's circuit breaker is open: recent calls failed, new orders are refused until a probe succeeds."""

    def __init__(self, broker: str, retry_at: datetime | None, now: datetime) -> None:
        when = "shortly" if retry_at is None else retry_at.isoformat()
        super().__init__(f"broker {broker!r} is failing; new orders are refused until {when}")
        wait = 1.0 if retry_at is None else (retry_at - now).total_seconds()
        self.retry_after = max(1, math.ceil(wait))


class BrokerRateLimited(BrokerUnavailable):
    """The venue asked us to slow down (HTTP 429/418, DDoS protection) or is in maintenance: nothing was done.

    ``retry_after`` is the venue's own wait in seconds when it named one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BrokerRejected(BrokerError):
    """The broker refused the request."""

    code = "broker_rejected"


class BrokerAuthFailed(BrokerRejected):
    """The venue refused the account's credentials (a bad key or secret, a missing permission)."""

    code = "broker_auth_failed"


class OutcomeUnknown(BrokerError):
    """The request may or may not have reached the venue; reconciliation must resolve it. Never resend blindly."""

    code = "broker_outcome_unknown"


class CapabilityMissing(BrokerError):
    """The adapter does not support this operation."""

    code = "broker_capability_missing"


class DependencyUnavailable(ExecsvcError):
    """A dependency the service needs (the database) is unreachable."""

    code = "dependency_unavailable"


class Overloaded(DependencyUnavailable):
    """Every connection is busy, or the account's lock could not be had in time; retrying later will work."""

    code = "overloaded"


class InvalidLimits(ExecsvcError):
    """Risk limits that make no sense; ``errors`` are (field, message) pairs."""

    code = "invalid_limits"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors
