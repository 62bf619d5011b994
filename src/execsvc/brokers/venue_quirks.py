"""What differs between venues, in one small table: nothing venue-specific lives anywhere else.

Each entry gives the ccxt ``options`` the adapter sets for the venue under the account's own options (an account's
options win), how the venue is asked about an order by its client order id, and whether it takes our stop orders.
Venues without an entry get ``DEFAULT``: spot markets, lookup by the unified ``clientOrderId`` parameter, no stop
orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class VenueQuirks:
    """One venue's departures from ccxt's defaults."""

    # ccxt options set for the venue before the account's own.
    options: Mapping[str, Any] = field(default_factory=dict)
    # The venue looks orders up by client order id through ``fetch_order(None, symbol, {"clientOrderId": ...})``;
    # False: search the open and recent orders instead.
    fetch_by_client_id: bool = True
    # The order's trades come from ``fetch_order_trades``; False: ``fetch_my_trades`` filtered by order id.
    order_trades: bool = True
    # Texts in a venue's answer that mean the credentials were refused, whatever ccxt's class says.
    auth_failures: tuple[str, ...] = ()
    # The venue takes our ``stop`` order (stop-market: a buy triggers at or above its stop, a sell at or below, then
    # trades as a market order) as ccxt's unified trigger order, ``create_order(symbol, "market", side, amount, None,
    # {"triggerPrice": stop})``, checked in ccxt's source for the venue. ccxt's ``has`` flags alone cannot say it:
    # they are set unevenly (binance: ``createTriggerOrder`` true but ``createStopMarketOrder`` false, though its
    # ``createOrder`` maps exactly that call to a spot STOP_LOSS), and a venue's trigger order need not fire in a
    # stop's direction (some fire whichever way the price crosses, or want a direction parameter), which would turn
    # a buy stop below the market into a buy-the-dip order instead of a refusal.
    stop_market: bool = False


# ccxt options every venue gets, and the account cannot override: order creation is never retried by ccxt itself.
FORCED_OPTIONS: Mapping[str, Any] = {"maxRetriesOnFailure": 0}

DEFAULT = VenueQuirks(options={"defaultType": "spot"})

QUIRKS: Mapping[str, VenueQuirks] = {
    # Binance: load spot markets only (not futures and margin, which need other hosts and keys); no currencies call
    # (a private wallet endpoint the testnet lacks); FULL answers so a market order's fills come back at once.
    "binance": VenueQuirks(
        options={
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
            "newOrderRespType": {"market": "FULL", "limit": "FULL"},
            # Open orders of every symbol in one request (weighted more, but one per round instead of one a symbol).
            "fetchOpenOrders": {"warnWithoutSymbol": False},
        },
        # -2015 "Invalid API-key, IP, or permissions": ccxt reads it as a temporary ban (DDoSProtection) once the
        # client has been let in before; for a key revoked or stripped of its trading permission meanwhile, it is not.
        auth_failures=('"code":-2015',),
        # ccxt 4.5 binance.create_order_request: a "market" order with params.triggerPrice (or stopPrice) becomes
        # type STOP_LOSS with stopPrice on spot markets (STOP_MARKET on contracts), no price, no timeInForce; spot
        # STOP_LOSS triggers a buy at or above the stop and a sell at or below. The symbol must list STOP_LOSS among
        # its orderTypes, else ccxt refuses it (InvalidOrder) before sending: a rejected order, not a 422.
        stop_market=True,
    ),
}


def quirks_for(venue: str) -> VenueQuirks:
    """The venue's entry, or the default."""
    return QUIRKS.get(venue, DEFAULT)
