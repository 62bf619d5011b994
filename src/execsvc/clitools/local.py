"""The commands that run or administer this installation directly: serve, strategies, worker, db upgrade, tokens."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import signal
import socket
import sys

from execsvc import admin
from execsvc.clitools import output
from execsvc.clitools.database import describe, reaching, require_current_schema
from execsvc.clitools.exits import CliError, ExitCode
from execsvc.config import Settings
from execsvc.db import migrate
from execsvc.db.engine import make_engine

FIRST_RUN_ACCOUNT = "main"


async def tokens(args: argparse.Namespace, settings: Settings) -> int:
    """``execsvc tokens create|list|revoke``."""
    await require_current_schema(settings)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if args.tokens_command == "create":
            try:
                token = await admin.issue_token(engine, settings, args.account, args.scopes, args.name)
            except ValueError as exc:
                raise CliError(ExitCode.USAGE, str(exc)) from exc
            print(f"token id: {token.token_id}  account: {args.account}  scopes: {args.scopes}")
            print("store this token now; it is not shown again:")
            print(token.plaintext)
        elif args.tokens_command == "list":
            rows = [
                {
                    "id": rec.id,
                    "account": rec.account_id,
                    "scopes": ",".join(sorted(rec.scopes)),
                    "state": "revoked" if rec.revoked_at else "active",
                    "created": rec.created_at.isoformat(timespec="seconds"),
                    "name": rec.name,
                }
                for rec in await admin.list_tokens(engine, args.account)
            ]
            if args.json:
                output.as_json(rows)
            else:
                columns = [(k, k.upper()) for k in ("id", "account", "scopes", "state", "created", "name")]
                output.table(columns, rows)
        elif not await admin.revoke_token(engine, args.token_id):
            raise CliError(ExitCode.FAILED, f"no active token {args.token_id}: see `execsvc tokens list`")
        else:
            print(f"revoked {args.token_id}")
    finally:
        await engine.dispose()
    return ExitCode.OK


async def db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """``execsvc db upgrade``."""
    await migrate.upgrade(settings.sqlalchemy_url, args.revision)
    print(f"database at {args.revision} ({describe(settings)})")
    return ExitCode.OK


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


def freeze_startup_heap() -> None:
    """Take what start-up imported and built out of the cyclic garbage collector's way.

    The modules, schemas and venue classes loaded at start live as long as the process (~330,000 objects); every
    full collection walked them all, pausing the event loop for 100-200 ms under load, several times a minute.
    """
    gc.collect()
    gc.freeze()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so that a taken port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                ExitCode.FAILED,
                f"port {port} on {host} is in use: stop the process holding it or pick another with --port",
            ) from exc
        raise CliError(ExitCode.FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def base_url(sock: socket.socket) -> str:
    """The URL a client on this machine reaches the socket at."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """``execsvc serve``: the API and the background loops, until SIGTERM or Ctrl-C."""
    import uvicorn

    from execsvc.bootstrap import build
    from execsvc.streams.server_protocol import FrameProtocol

    sock = bind(args.host, args.port)
    try:
        with reaching(settings):
            asyncio.run(require_current_schema(settings))
            if settings.embedded:
                asyncio.run(_first_run_token(settings))
        container = build(settings)
        config = uvicorn.Config(
            container.app(),
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
            # SIGTERM: no new connections, WebSockets closed with 1001 (FrameProtocol.shutdown), the requests in
            # flight finished (every acknowledged order is committed and sent), then the container stops.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
        server = uvicorn.Server(config)
        freeze_startup_heap()
        url = base_url(sock)
        mode = describe(settings) + (" · Redis" if settings.redis_url else "")
        print(f"execsvc listening on {url} (docs: {url}/docs) · {mode}", file=sys.stderr, flush=True)
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn's start-up failure (the lifespan failed): its log says why
            raise CliError(ExitCode.FAILED, "the service failed to start: see the log lines above") from exc
        if not server.started:
            raise CliError(ExitCode.FAILED, "the service failed to start: see the log lines above")
    finally:
        sock.close()
    return ExitCode.OK


async def strategies(settings: Settings) -> int:
    """``execsvc strategies``: the service's background work, strategy instances included, without HTTP."""
    from execsvc.bootstrap import build

    with reaching(settings):
        await require_current_schema(settings)
    if not settings.run_strategies:
        raise CliError(ExitCode.USAGE, "EXECSVC_RUN_STRATEGIES is off: there is nothing to run")
    container = build(settings)
    freeze_startup_heap()
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
    return ExitCode.OK


async def worker(args: argparse.Namespace, settings: Settings) -> int:
    """``execsvc worker``: relay the outbox and deliver webhooks."""
    from execsvc.bootstrap import build_worker

    with reaching(settings):
        await require_current_schema(settings)
    built, metrics, close = build_worker(settings)
    freeze_startup_heap()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await built.start()
    print("execsvc worker: delivering webhooks", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await built.stop()
        await close()
    return ExitCode.OK
