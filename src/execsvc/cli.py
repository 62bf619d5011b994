"""The ``execsvc`` command: run the service (serve, strategies, worker), look after it (db upgrade, tokens, doctor),
backtest, and operate a running instance over its REST API (accounts, orders, risk, webhooks).

Heavy modules are imported by the command that needs them, so ``execsvc --help`` and the operator commands start
quickly. Every expected failure ends as one ``error: ...`` line on stderr and an exit code (clitools/exits.py,
docs/cli.md); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from execsvc import __version__
from execsvc.clitools import operator
from execsvc.clitools.exits import CliError, ExitCode

if TYPE_CHECKING:
    from execsvc.config import Settings

EPILOG = """\
environment:
  EXECSVC_DATABASE_URL  postgresql://... (unset: the embedded SQLite file EXECSVC_SQLITE_PATH, ./execsvc.db)
  EXECSVC_REDIS_URL     redis://... (optional)
  EXECSVC_URL           the instance the operator commands talk to (default http://127.0.0.1:8000)
  EXECSVC_TOKEN         the bearer token of the operator commands

exit codes: 0 ok, 1 failed, 2 usage, 3 database or service unreachable, 4 token refused, 5 schema not current.
Every command has --help; docs/cli.md has examples."""


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (when it has a meaningful one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, argparse.SUPPRESS)
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        return f"{text} (default: %(default)s)"


class TopHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The top-level help: the epilog's table keeps its layout."""


def _parser(with_backtest: bool = True) -> argparse.ArgumentParser:
    """The whole command line. ``with_backtest=False`` leaves out the backtest options (and their slow imports)."""
    parser = argparse.ArgumentParser(
        prog="execsvc",
        description="Self-hosted order-execution service for crypto trading.",
        epilog=EPILOG,
        formatter_class=TopHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"execsvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description or help_text, formatter_class=HelpFormatter)

    serve = command(
        "serve",
        "run the API and the background loops",
        "Run the REST API, the WebSocket streams and the background loops until SIGTERM or Ctrl-C. On the embedded "
        "default (no EXECSVC_DATABASE_URL) the SQLite schema is created and the first start prints an admin token.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="the TCP port to listen on")

    command(
        "strategies",
        "an instance without the HTTP API: runs the strategy instances it holds the lease of (several may run)",
    )

    worker = command("worker", "relay the outbox and deliver webhooks (several may run)")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")

    db = command("db", "database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = db_sub.add_parser(
        "upgrade",
        help="apply migrations",
        description="Apply the schema migrations to the configured database (EXECSVC_DATABASE_URL).",
        formatter_class=HelpFormatter,
    )
    up.add_argument("--revision", default="head", help="the revision to migrate to")

    command(
        "doctor",
        "check this installation: database, migrations, clock, Redis, venues",
        "Check what the service needs, one line per check (OK, WARN, FAIL or SKIP) with what to do; exit 1 when a "
        "check fails. Reads the same EXECSVC_* settings as `execsvc serve`.",
    )

    backtest = command(
        "backtest",
        "backtest a strategy on historical bars (offline: generated data by default)",
        "Run a built-in strategy over historical bars through the risk engine, the order pipeline, the exit plans "
        "and the ledger, on a simulated broker. Options override the same keys of --spec.",
    )
    if with_backtest:
        from execsvc.backtest import cli as backtest_cli

        backtest_cli.add_arguments(backtest)

    tokens = command("tokens", "API tokens (on the database directly)")
    tok_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    create = tok_sub.add_parser(
        "create",
        help="create a token (printed once, as the last line)",
        description="Create a token, and its account if it is new (paper broker, the starting balances).",
        formatter_class=HelpFormatter,
    )
    create.add_argument("--account", required=True, help="the account id (letters, digits, '-', '_', '.')")
    create.add_argument("--scopes", required=True, help="comma-separated: orders:read,orders:write,signals:write,admin")
    create.add_argument("--name", help="a label to tell tokens apart (default: '<account> token')")
    listing = tok_sub.add_parser(
        "list", help="list tokens (never their secrets)", description="List tokens.", formatter_class=HelpFormatter
    )
    listing.add_argument("--account", help="only this account's tokens")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    revoke = tok_sub.add_parser(
        "revoke", help="revoke a token at once", description="Revoke a token.", formatter_class=HelpFormatter
    )
    revoke.add_argument("token_id", help="the token id (the part after exs_ and before the next _)")

    operator.add_commands(sub, HelpFormatter)
    return parser


def _settings() -> Settings:
    """The EXECSVC_* settings; a bad value is a usage error naming the variable."""
    from pydantic import ValidationError

    from execsvc.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"EXECSVC_{'_'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(ExitCode.USAGE, f"invalid setting: {problems}") from exc


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "backtest":
        from execsvc.backtest import cli as backtest_cli

        return backtest_cli.main(args)
    if getattr(args, "handler", None) is not None:
        return operator.run(args)
    settings = _settings()
    if args.command == "doctor":
        from execsvc.clitools import doctor

        return doctor.run(settings)

    from execsvc.clitools import local
    from execsvc.clitools.database import reaching
    from execsvc.observability.logging import configure_logging
    from execsvc.observability.tracing import configure_tracing

    configure_logging(settings.log_level, settings.log_json)
    configure_tracing()  # only when the OTEL_* variables ask for it (observability/tracing.py)
    if args.command == "serve":
        return local.serve(args, settings)
    if args.command == "strategies":
        return asyncio.run(local.strategies(settings))
    if args.command == "worker":
        return asyncio.run(local.worker(args, settings))
    with reaching(settings):
        if args.command == "db":
            return asyncio.run(local.db_upgrade(args, settings))
        return asyncio.run(local.tokens(args, settings))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = _parser(with_backtest="backtest" in words).parse_args(words)
    try:
        return int(_dispatch(args))
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
