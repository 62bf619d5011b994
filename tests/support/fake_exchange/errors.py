"""Binance's error answers: an HTTP status and a ``{"code": ..., "msg": ...}`` body, as the venue sends them."""

from __future__ import annotations

__all__ = [
    "VenueError",
    "bad_signature",
    "duplicate_order",
    "filter_failure",
    "illegal_characters",
    "insufficient_balance",
    "invalid_api_key",
    "invalid_side",
    "invalid_symbol",
    "invalid_time_in_force",
    "invalid_type",
    "missing_parameter",
    "order_does_not_exist",
    "stop_would_trigger",
    "timestamp_ahead",
    "timestamp_outside_window",
    "unknown_order",
    "unneeded_parameter",
]


class VenueError(Exception):
    """A request the venue refuses; rendered as ``status`` with ``{"code": code, "msg": msg}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, object]:
        """The JSON body Binance sends."""
        return {"code": self.code, "msg": self.msg}


def invalid_api_key() -> VenueError:
    """An unknown API key (Binance answers 401)."""
    return VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def bad_signature() -> VenueError:
    """The HMAC does not match the parameters sent."""
    return VenueError(-1022, "Signature for this request is not valid.")


def timestamp_ahead() -> VenueError:
    """``timestamp`` is more than a second ahead of the server clock."""
    return VenueError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def timestamp_outside_window() -> VenueError:
    """``timestamp`` is older than ``recvWindow``."""
    return VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def missing_parameter(name: str) -> VenueError:
    """A mandatory parameter is absent or empty."""
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def unneeded_parameter(name: str) -> VenueError:
    """A parameter the order type does not take (e.g. ``timeInForce`` on a market order)."""
    return VenueError(-1106, f"Parameter '{name}' sent when not required.")


def illegal_characters(name: str) -> VenueError:
    """A decimal parameter outside Binance's legal range."""
    return VenueError(
        -1100,
        f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
    )


def invalid_symbol() -> VenueError:
    """A symbol the venue does not list."""
    return VenueError(-1121, "Invalid symbol.")


def invalid_side() -> VenueError:
    """A side other than BUY or SELL."""
    return VenueError(-1117, "Invalid side.")


def invalid_type() -> VenueError:
    """An order type the fake does not trade."""
    return VenueError(-1116, "Invalid orderType.")


def invalid_time_in_force() -> VenueError:
    """A time in force other than GTC, IOC, FOK."""
    return VenueError(-1115, "Invalid timeInForce.")


def filter_failure(name: str) -> VenueError:
    """An order that breaks a symbol filter: PRICE_FILTER, LOT_SIZE or NOTIONAL."""
    return VenueError(-1013, f"Filter failure: {name}")


def insufficient_balance() -> VenueError:
    """Not enough free balance for the order."""
    return VenueError(-2010, "Account has insufficient balance for requested action.")


def duplicate_order() -> VenueError:
    """An open order already carries this ``newClientOrderId``."""
    return VenueError(-2010, "Duplicate order sent.")


def unknown_order() -> VenueError:
    """Cancel of an order that is not open (or does not exist)."""
    return VenueError(-2011, "Unknown order sent.")


def order_does_not_exist() -> VenueError:
    """Query of an order the account never had."""
    return VenueError(-2013, "Order does not exist.")


def stop_would_trigger() -> VenueError:
    """A stop order whose stop price the market is already at or past (a buy at or below the market, a sell at or
    above it)."""
    return VenueError(-2010, "Stop price would trigger immediately.")
