"""The operator commands: a running instance's accounts, orders, risk state and webhooks over its REST API."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from execsvc.clitools import output
from execsvc.clitools.exits import ExitCode
from execsvc.clitools.rest import DEFAULT_URL, ServiceClient

Handler = Callable[[argparse.Namespace, ServiceClient], int]

ORDER_STATUSES = (
    "pending_new",
    "open",
    "partially_filled",
    "filled",
    "pending_cancel",
    "canceled",
    "rejected",
    "expired",
    "unknown",
)


def connection_options() -> argparse.ArgumentParser:
    """--url, --token and --json, shared by every operator command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=None,
        help=f"the instance's base URL (default: $EXECSVC_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=None,
        help="bearer token (default: $EXECSVC_TOKEN); prefer the variable: options show in the process list",
    )
    group.add_argument("--json", action="store_true", help="print the service's JSON instead of a table")
    return common


def run(args: argparse.Namespace) -> int:
    """Run the operator command ``args`` names against the instance."""
    url = args.url or os.environ.get("EXECSVC_URL") or DEFAULT_URL
    client = ServiceClient(url, args.token or os.environ.get("EXECSVC_TOKEN"))
    try:
        handler: Handler = args.handler
        return handler(args, client)
    finally:
        client.close()


def _seg(value: str) -> str:
    return quote(value, safe="")


# -- accounts --------------------------------------------------------------------------------------------------------

ACCOUNT_COLUMNS = [
    ("id", "ID"),
    ("venue", "VENUE"),
    ("mode", "MODE"),
    ("broker", "BROKER"),
    ("credentials", "CREDENTIALS"),
    ("valuation_asset", "VALUATION"),
    ("created_at", "CREATED"),
]


def _account_row(account: dict[str, Any]) -> dict[str, Any]:
    creds = account.get("credentials") or {}
    shown = f"…{creds['key_hint']}" if creds.get("key_hint") else ("yes" if creds.get("present") else "none")
    return {**account, "credentials": shown}


def accounts_list(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/accounts."""
    doc = client.request("GET", "/v1/accounts")
    if args.json:
        output.as_json(doc)
    else:
        output.table(ACCOUNT_COLUMNS, [_account_row(a) for a in doc["items"]])
    return ExitCode.OK


def accounts_show(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/accounts/{account_id}."""
    doc = client.request("GET", f"/v1/accounts/{_seg(args.account_id)}")
    if args.json:
        output.as_json(doc)
    else:
        row = _account_row(doc)
        shown = [(header.lower(), row.get(key)) for key, header in ACCOUNT_COLUMNS]
        output.fields([*shown, ("venue options", doc.get("venue_options")), ("updated", doc.get("updated_at"))])
    return ExitCode.OK


# -- orders ----------------------------------------------------------------------------------------------------------

ORDER_COLUMNS = [
    ("id", "ID"),
    ("created_at", "CREATED"),
    ("symbol", "SYMBOL"),
    ("side", "SIDE"),
    ("type", "TYPE"),
    ("qty", "QTY"),
    ("limit_price", "LIMIT"),
    ("stop_price", "STOP"),
    ("status", "STATUS"),
    ("filled_qty", "FILLED"),
    ("avg_fill_price", "AVG PRICE"),
]


ORDER_FIELDS = (
    "id",
    "client_order_id",
    "account_id",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "qty",
    "limit_price",
    "stop_price",
    "status",
    "filled_qty",
    "avg_fill_price",
    "fees",
    "fee_asset",
    "reduce_only",
    "source",
    "reject_code",
    "reject_reason",
    "created_at",
    "updated_at",
)


def orders_list(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/orders, newest first."""
    params = {"status": args.status, "symbol": args.symbol, "side": args.side, "limit": args.limit}
    doc = client.request("GET", "/v1/orders", params={**params, "cursor": args.cursor})
    if args.json:
        output.as_json(doc)
        return ExitCode.OK
    output.table(ORDER_COLUMNS, doc["items"])
    if doc.get("next_cursor"):
        print(f"(more: add --cursor {doc['next_cursor']})")
    return ExitCode.OK


def orders_show(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/orders/{order_id}."""
    doc = client.request("GET", f"/v1/orders/{_seg(args.order_id)}")
    if args.json:
        output.as_json(doc)
        return ExitCode.OK
    names = ORDER_FIELDS
    output.fields([*((name, doc.get(name)) for name in names), ("exit plans", len(doc.get("exits") or []))])
    return ExitCode.OK


def orders_cancel(args: argparse.Namespace, client: ServiceClient) -> int:
    """DELETE /v1/orders/{order_id}."""
    doc = client.request("DELETE", f"/v1/orders/{_seg(args.order_id)}")
    if args.json:
        output.as_json(doc)
    else:
        print(f"order {doc['id']}: {doc['status']} (filled {doc['filled_qty']} of {doc['qty']})")
    return ExitCode.OK


# -- risk ------------------------------------------------------------------------------------------------------------


def _scope_line(name: str, scope: dict[str, Any]) -> str:
    reason = f" ({scope['reason']})" if scope.get("reason") else ""
    return f"{name}: {scope['state']}{reason}"


def risk_state(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/risk/state."""
    doc = client.request("GET", "/v1/risk/state", params={"account_id": args.account})
    if args.json:
        output.as_json(doc)
        return ExitCode.OK
    pnl = doc["pnl"]
    output.fields(
        [
            ("account", doc["account_id"]),
            ("trading state", doc["state"]),
            ("manual (account)", _scope_line("account", doc["account"]).split(": ", 1)[1]),
            ("manual (service)", _scope_line("global", doc["global"]).split(": ", 1)[1]),
            ("pnl today", f"{output.cell(pnl['today'])} {pnl['currency']}"),
            ("daily loss limit", pnl["daily_loss_limit"]),
            ("open orders", doc["open_orders"]["total"]),
        ]
    )
    if doc["restrictions"]:
        print()
        output.table(
            [("rule", "RULE"), ("state", "STATE"), ("reason", "REASON"), ("until", "UNTIL")], doc["restrictions"]
        )
    print()
    output.table(
        [("rule", "LIMIT"), ("symbol", "SYMBOL"), ("limit", "MAX"), ("used", "USED"), ("remaining", "REMAINING")],
        doc["headroom"],
    )
    return ExitCode.OK


def _state_change(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    if args.json:
        output.as_json(doc)
    else:
        who = "the whole service" if doc["scope"] == "global" else f"account {doc['account_id']}"
        print(f"{_scope_line(who, doc['state'])}; canceled {len(doc['canceled_order_ids'])} open orders")
        for failure in doc["cancel_failures"]:
            print(f"not canceled: {failure['account_id']} {failure['order_id'] or '-'}: {failure['error']}")
    return ExitCode.FAILED if doc["cancel_failures"] else ExitCode.OK


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    return {"scope": "global" if args.all_accounts else "account", "account_id": args.account}


def risk_halt(args: argparse.Namespace, client: ServiceClient) -> int:
    """POST /v1/risk/halt: the kill switch."""
    body = {
        **_scope(args),
        "reason": args.reason,
        "state": "reducing" if args.reducing else "halted",
        "cancel_open_orders": args.cancel_open_orders,
    }
    return _state_change(args, client.request("POST", "/v1/risk/halt", body=body))


def risk_resume(args: argparse.Namespace, client: ServiceClient) -> int:
    """POST /v1/risk/resume."""
    body = {**_scope(args), "reason": args.reason, "reset_restrictions": args.reset_restrictions}
    return _state_change(args, client.request("POST", "/v1/risk/resume", body=body))


# -- webhooks --------------------------------------------------------------------------------------------------------


def webhooks_list(args: argparse.Namespace, client: ServiceClient) -> int:
    """GET /v1/webhooks."""
    doc = client.request("GET", "/v1/webhooks")
    if args.json:
        output.as_json(doc)
    else:
        columns = [
            ("id", "ID"),
            ("url", "URL"),
            ("events", "EVENTS"),
            ("enabled", "ENABLED"),
            ("disabled_reason", "DISABLED BECAUSE"),
            ("description", "DESCRIPTION"),
        ]
        output.table(columns, doc["items"])
    return ExitCode.OK


# -- the parsers -----------------------------------------------------------------------------------------------------


def add_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``accounts``, ``orders``, ``risk`` and ``webhooks`` to the ``execsvc`` subcommands."""
    common = connection_options()

    def leaf(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, help=help_text, description=help_text, parents=[common], formatter_class=formatter
        )
        parser.set_defaults(handler=handler)
        return parser

    def branch(name: str, help_text: str) -> Any:
        parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    accounts = branch("accounts", "accounts of a running instance (admin sees all, others their own)")
    leaf(accounts, "list", accounts_list, "list the accounts with their venue, mode and broker")
    show = leaf(accounts, "show", accounts_show, "one account's venue settings (never its credentials)")
    show.add_argument("account_id", metavar="ID", help="the account id")

    orders = branch("orders", "the token's account's orders on a running instance")
    listing = leaf(orders, "list", orders_list, "list orders, newest first")
    listing.add_argument("--status", choices=ORDER_STATUSES, help="only orders in this status")
    listing.add_argument("--symbol", help="only this market, e.g. BTC/USDT")
    listing.add_argument("--side", choices=("buy", "sell"), help="only this side")
    listing.add_argument("--limit", type=int, default=100, help="how many orders (1 to 500)")
    listing.add_argument("--cursor", help="the next page: the cursor the previous page printed")
    show = leaf(orders, "show", orders_show, "one order: status, fills so far, fees, the risk decision's outcome")
    show.add_argument("order_id", metavar="ID", help="the order id (UUID)")
    cancel = leaf(orders, "cancel", orders_cancel, "cancel an order (scope orders:write)")
    cancel.add_argument("order_id", metavar="ID", help="the order id (UUID)")

    risk = branch("risk", "trading state and the kill switch of a running instance")
    state = leaf(risk, "state", risk_state, "trading state, today's PnL, restrictions and headroom on every limit")
    state.add_argument("--account", help="another account (admin token); default: the token's own")
    for name, handler, help_text in (
        ("halt", risk_halt, "halt trading (admin): no new orders, or --reducing for reduce-only"),
        ("resume", risk_resume, "lift a halt (admin)"),
    ):
        parser = leaf(risk, name, handler, help_text)
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--account", help="the account (default: the token's own)")
        where.add_argument(
            "--global", dest="all_accounts", action="store_true", help="the whole service, every account"
        )
        if name == "halt":
            parser.add_argument("--reason", required=True, help="why (kept in the audit trail; 1 to 500 characters)")
            parser.add_argument(
                "--reducing", action="store_true", help="reduce-only: allow only orders that shrink a position"
            )
            parser.add_argument(
                "--cancel-open-orders", action="store_true", help="also cancel every open order of the scope"
            )
        else:
            parser.add_argument("--reason", help="why (kept in the audit trail)")
            parser.add_argument(
                "--reset-restrictions",
                action="store_true",
                help="also lift the automatic restrictions (daily loss, losing streak) of an account",
            )

    webhooks = branch("webhooks", "webhook subscriptions of a running instance (admin)")
    leaf(webhooks, "list", webhooks_list, "list the subscriptions (never their secrets)")
