"""The ``execsvc`` command: serve, strategies, worker, db upgrade, tokens create|list|revoke."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Sequence

from execsvc import admin
from execsvc.backtest import cli as backtest_cli
from execsvc.config import Settings
from execsvc.db import migrate
from execsvc.db.engine import make_engine
from execsvc.observability.logging import configure_logging
from execsvc.observability.tracing import configure_tracing

FIRST_RUN_ACCOUNT = "main"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="execsvc", description="Self-hosted order-execution service.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API and the background loops")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    sub.add_parser(
        "strategies",
        help="an instance without the HTTP API: runs the strategy instances it holds the lease of (several may run)",
    )

    worker = sub.add_parser("worker", help="relay the outbox and deliver webhooks (several may run)")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("--revision", default="head")

    backtest = sub.add_parser(
        "backtest",
        help="backtest a strategy on historical bars (offline: generated data by default)",
        description="Run a built-in strategy over historical bars through the risk engine, the order pipeline, the "
        "exit plans and the ledger, on a simulated broker. Options override the same keys of --spec.",
    )
    backtest_cli.add_arguments(backtest)

    tokens = sub.add_parser("tokens", help="API tokens")
    tok_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tok_sub.add_parser("create", help="create a token (printed once, as the last line)")
    create.add_argument("--account", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: orders:read,orders:write,signals:write,admin")
    create.add_argument("--name")
    listing = tok_sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--account")
    revoke = tok_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token_id")
    return parser


async def _prepare_schema(settings: Settings) -> None:
    """On the embedded default the schema is created (and kept current) automatically."""
    url = settings.sqlalchemy_url
    if settings.embedded:
        await migrate.upgrade(url)
    elif not await migrate.is_up_to_date(url):
        raise SystemExit("the database schema is not current: run `execsvc db upgrade` first")


async def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    await _prepare_schema(settings)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if args.tokens_command == "create":
            try:
                token = await admin.issue_token(engine, settings, args.account, args.scopes, args.name)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"token id: {token.token_id}  account: {args.account}  scopes: {args.scopes}")
            print("store this token now; it is not shown again:")
            print(token.plaintext)
        elif args.tokens_command == "list":
            for rec in await admin.list_tokens(engine, args.account):
                state = "revoked" if rec.revoked_at else "active"
                scopes = ",".join(sorted(rec.scopes))
                print(f"{rec.id}\t{rec.account_id}\t{scopes}\t{state}\t{rec.created_at.isoformat()}\t{rec.name}")
        elif not await admin.revoke_token(engine, args.token_id):
            print(f"error: no active token {args.token_id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.token_id}")
    finally:
        await engine.dispose()
    return 0


async def _first_run_token(settings: Settings) -> None:
    """On the embedded default, with no token yet, make one admin token and print it once."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if await admin.has_tokens(engine):
            return
        token = await admin.issue_token(engine, settings, FIRST_RUN_ACCOUNT, "admin", "first-run admin token")
    finally:
        await engine.dispose()
    print(
        f"created account {FIRST_RUN_ACCOUNT!r} and an admin token (shown only now):\n{token.plaintext}",
        file=sys.stderr,
        flush=True,
    )


def _freeze_startup_heap() -> None:
    """Take what start-up imported and built out of the cyclic garbage collector's way.

    The modules, schemas and venue classes loaded at start live as long as the process (~330,000 objects); every
    full collection walked them all, pausing the event loop for 100-200 ms under load, several times a minute.
    """
    gc.collect()
    gc.freeze()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from execsvc.bootstrap import build
    from execsvc.streams.server_protocol import FrameProtocol

    asyncio.run(_prepare_schema(settings))
    if settings.embedded:
        asyncio.run(_first_run_token(settings))
    container = build(settings)
    _freeze_startup_heap()
    uvicorn.run(
        container.app(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # A stream client that answers no ping is dropped within interval + timeout.
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_timeout_seconds,
        ws_per_message_deflate=settings.ws_compression,
        # Writes each update's frame, built once, straight to every socket with nothing queued (streams/hub.py).
        ws=FrameProtocol,
        ws_max_size=settings.ws_max_message_bytes,
        # SIGTERM: no new connections, WebSockets closed with 1001 (FrameProtocol.shutdown), the requests in flight
        # finished (every acknowledged order is committed and sent), then the container stops.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    return 0


async def _strategies(settings: Settings) -> int:
    """Run the service's background work, strategy instances included, without serving HTTP."""
    from execsvc.bootstrap import build

    await _prepare_schema(settings)
    if not settings.run_strategies:
        print("error: EXECSVC_RUN_STRATEGIES is off: there is nothing to run", file=sys.stderr)
        return 2
    container = build(settings)
    _freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await container.start()
    print("execsvc strategies: running the strategy instances this process holds", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await container.stop()
    return 0


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from execsvc.bootstrap import build_worker

    await _prepare_schema(settings)
    worker, metrics, close = build_worker(settings)
    _freeze_startup_heap()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    print("execsvc worker: delivering webhooks", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.command == "backtest":
        return backtest_cli.main(args)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing()  # only when the OTEL_* variables ask for it (observability/tracing.py)
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "strategies":
        return asyncio.run(_strategies(settings))
    if args.command == "worker":
        return asyncio.run(_worker(args, settings))
    if args.command == "db":
        asyncio.run(migrate.upgrade(settings.sqlalchemy_url, args.revision))
        print(f"database at {args.revision}")
        return 0
    return asyncio.run(_tokens(args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
