"""Run the fake Binance until killed: ``python -m tests.support.fake_exchange --port N --account ... --market ...``.

``--account KEY:SECRET:USDT=100000,BTC=1`` (repeatable), ``--market BTC/USDT:tick:step:min_qty:min_notional:price``
with an optional ``:liquidity`` (repeatable; BTC/USDT and ETH/USDT when none is given), ``--fee-bps 10``.
Prints ``listening on http://127.0.0.1:PORT`` once it accepts requests; drive it through ``/_fake/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from decimal import Decimal

from tests.support.fake_exchange.models import FakeMarket
from tests.support.fake_exchange.server import FakeBinance

DEFAULT_MARKETS = [
    FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000"),
    FakeMarket("ETH/USDT", tick="0.01", step="0.0001", min_qty="0.0001", min_notional="5", price="3200"),
]


def parse_market(text: str) -> FakeMarket:
    """``BTC/USDT:tick:step:min_qty:min_notional:price[:liquidity]``."""
    parts = text.split(":")
    if len(parts) not in (6, 7):
        raise argparse.ArgumentTypeError(
            f"--market wants SYMBOL:tick:step:min_qty:min_notional:price[:liquidity]: {text}"
        )
    return FakeMarket(*parts)


def parse_account(text: str) -> tuple[str, str, dict[str, Decimal]]:
    """``KEY:SECRET:USDT=100000,BTC=1``."""
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"--account wants KEY:SECRET:ASSET=AMOUNT,...: {text}")
    key, secret, amounts = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    parsed: dict[str, Decimal] = {}
    for item in filter(None, amounts.split(",")):
        asset, _, amount = item.partition("=")
        parsed[asset] = Decimal(amount)
    return key, secret, parsed


async def serve(args: argparse.Namespace) -> None:
    """Start the fake, announce its URL, and run until SIGINT or SIGTERM."""
    fake = FakeBinance(args.market or DEFAULT_MARKETS, fee_bps=Decimal(args.fee_bps), port=args.port)
    for key, secret, balances in args.account:
        fake.add_account(key, secret, balances)
    await fake.start()
    print(f"listening on {fake.base_url}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """The command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_exchange", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fee-bps", default="10")
    parser.add_argument("--account", type=parse_account, action="append", default=[])
    parser.add_argument("--market", type=parse_market, action="append", default=[])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args(argv)))
    sys.exit(0)


if __name__ == "__main__":
    main()
