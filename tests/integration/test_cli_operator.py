"""The execsvc command as an operator runs it: against a served instance over REST, doctor, help and exit codes.

One embedded instance is served (as a subprocess) for the module; every command runs as a subprocess too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.services import (
    PostgresServer,
    RedisServer,
    create_database,
    drop_database,
    free_port,
    wait_ready,
)

EXECSVC = [sys.executable, "-m", "execsvc.cli"]

# Exit codes as docs/cli.md documents them.
OK, FAILED, USAGE, UNREACHABLE, UNAUTHORIZED, SCHEMA = 0, 1, 2, 3, 4, 5


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXECSVC, *args], env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


def field(text: str, name: str) -> str:
    """The value of the ``name  value`` line of a shown object."""
    for line in text.splitlines():
        if line.startswith(f"{name}  "):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} in:\n{text}")


@dataclass
class Served:
    """A running embedded instance, its admin token and its SQLite file."""

    base: str
    admin: str
    sqlite_path: Path
    banner: str

    def env(self, token: str | None = None) -> dict[str, str]:
        return clean_env(EXECSVC_URL=self.base, EXECSVC_TOKEN=token or self.admin)

    def token(self, scopes: str, account: str = "main") -> str:
        env = clean_env(EXECSVC_SQLITE_PATH=str(self.sqlite_path))
        created = run(["tokens", "create", "--account", account, "--scopes", scopes], env)
        assert created.returncode == OK, created.stderr
        return created.stdout.strip().splitlines()[-1]

    def limit_order(self, price_factor: str = "0.97") -> str:
        """A buy limit below the market that rests open; its id."""
        headers = {"Authorization": f"Bearer {self.admin}"}
        markets = httpx.get(f"{self.base}/v1/markets", headers=headers).json()["items"]
        mark = Decimal(next(m for m in markets if m["symbol"] == "BTC/USDT")["mark_price"])
        price = (mark * Decimal(price_factor)).quantize(Decimal("0.01"))
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.001", "limit_price": str(price)}
        answer = httpx.post(f"{self.base}/v1/orders", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def _wait_for(path: Path, seconds: float, *needles: str) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if all(n in text for n in needles):
            return text
        time.sleep(0.1)
    raise AssertionError(f"not seen in time: {needles}; stderr so far:\n{text[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("served")
    sqlite_path = home / "svc.db"
    port = free_port()
    env = clean_env(
        EXECSVC_SQLITE_PATH=str(sqlite_path),
        EXECSVC_FEED_INTERVAL_SECONDS="0.2",
        EXECSVC_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        EXECSVC_RUN_STRATEGIES="false",
        EXECSVC_RUN_BACKTESTS="false",
    )
    err = home / "stderr.txt"
    with err.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            [*EXECSVC, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=sink, text=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        text = _wait_for(err, 30, "execsvc listening on", "exs_")
        assert wait_ready(base), err.read_text(encoding="utf-8")
        admin = next(line for line in text.splitlines() if line.startswith("exs_"))
        banner = next(line for line in text.splitlines() if line.startswith("execsvc listening on"))
        yield Served(base, admin, sqlite_path, banner)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- serve, version, help ------------------------------------------------------------------------------------------


@pytest.mark.live
def test_serve_prints_its_url_docs_and_mode_at_start(served: Served) -> None:
    assert served.banner == (
        f"execsvc listening on {served.base} (docs: {served.base}/docs) · embedded SQLite {served.sqlite_path}"
    )
    assert httpx.get(f"{served.base}/docs").status_code == 200


def test_version_prints_the_package_version() -> None:
    from execsvc import __version__

    result = run(["--version"], clean_env())
    assert result.returncode == OK
    assert result.stdout.strip() == f"execsvc {__version__}"


COMMANDS = [
    [],
    ["serve"],
    ["strategies"],
    ["worker"],
    ["db"],
    ["db", "upgrade"],
    ["doctor"],
    ["backtest"],
    ["tokens"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
    ["accounts"],
    ["accounts", "list"],
    ["accounts", "show"],
    ["orders"],
    ["orders", "list"],
    ["orders", "show"],
    ["orders", "cancel"],
    ["risk"],
    ["risk", "state"],
    ["risk", "halt"],
    ["risk", "resume"],
    ["webhooks"],
    ["webhooks", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "execsvc")
def test_every_command_has_help(command: list[str]) -> None:
    result = run([*command, "--help"], clean_env())
    assert result.returncode == OK, result.stderr
    assert result.stdout.startswith(f"usage: execsvc {' '.join(command)}".rstrip())
    assert len(result.stdout.splitlines()) > 3


def test_help_shows_the_defaults_and_where_the_token_comes_from() -> None:
    serve = " ".join(run(["serve", "--help"], clean_env()).stdout.split())
    assert "(default: 127.0.0.1)" in serve
    assert "(default: 8000)" in serve
    orders = " ".join(run(["orders", "list", "--help"], clean_env()).stdout.split())
    assert "(default: 100)" in orders
    assert "EXECSVC_TOKEN" in orders
    assert "http://127.0.0.1:8000" in orders


def test_help_never_shows_the_token_from_the_environment() -> None:
    result = run(["orders", "list", "--help"], clean_env(EXECSVC_TOKEN="exs_secret_value"))
    assert "exs_secret_value" not in result.stdout


def test_a_bad_option_is_a_usage_error() -> None:
    result = run(["orders", "list", "--status", "nonsense"], clean_env())
    assert result.returncode == USAGE
    assert "invalid choice" in result.stderr


# -- operator commands ---------------------------------------------------------------------------------------------


@pytest.mark.live
def test_accounts_list_and_show_print_tables_and_json(served: Served) -> None:
    listed = run(["accounts", "list"], served.env())
    assert listed.returncode == OK, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "VENUE", "MODE", "BROKER"]
    assert any(row.split()[:3] == ["main", "paper", "paper"] for row in rows)

    as_json = run(["accounts", "list", "--json"], served.env())
    assert {"main"} <= {a["id"] for a in json.loads(as_json.stdout)["items"]}

    shown = run(["accounts", "show", "main"], served.env())
    assert shown.returncode == OK, shown.stderr
    assert "venue" in shown.stdout
    assert "paper" in shown.stdout
    assert json.loads(run(["accounts", "show", "main", "--json"], served.env()).stdout)["id"] == "main"


@pytest.mark.live
def test_accounts_show_of_an_unknown_account_prints_the_problem_code(served: Served) -> None:
    result = run(["accounts", "show", "nobody"], served.env())
    assert_one_line_error(result, FAILED, "account_not_found")


@pytest.mark.live
def test_orders_list_show_and_cancel(served: Served) -> None:
    order_id = served.limit_order()

    listed = run(["orders", "list", "--status", "open", "--symbol", "BTC/USDT", "--limit", "5"], served.env())
    assert listed.returncode == OK, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "CREATED", "SYMBOL", "SIDE"]
    assert any(row.startswith(order_id) and " open " in row for row in rows)
    assert run(["orders", "list", "--status", "filled", "--symbol", "ETH/USDT"], served.env()).stdout == "(none)\n"
    page = json.loads(run(["orders", "list", "--json", "--limit", "1"], served.env()).stdout)
    assert len(page["items"]) == 1

    shown = run(["orders", "show", order_id], served.env())
    assert shown.returncode == OK, shown.stderr
    assert field(shown.stdout, "id") == order_id
    assert field(shown.stdout, "status") == "open"
    assert json.loads(run(["orders", "show", order_id, "--json"], served.env()).stdout)["status"] == "open"

    canceled = run(["orders", "cancel", order_id], served.env())
    assert canceled.returncode == OK, canceled.stderr
    assert canceled.stdout.strip().startswith(f"order {order_id}: canceled")

    again = run(["orders", "cancel", order_id], served.env())
    assert_one_line_error(again, FAILED, "order_not_cancelable")


@pytest.mark.live
def test_orders_list_and_show_print_a_stop_orders_stop_price(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.admin}"}
    markets = httpx.get(f"{served.base}/v1/markets", headers=headers).json()["items"]
    mark = Decimal(next(m for m in markets if m["symbol"] == "BTC/USDT")["mark_price"])
    stop_price = str((mark * Decimal("1.03")).quantize(Decimal("0.01")))
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "stop", "qty": "0.001", "stop_price": stop_price}
    answer = httpx.post(f"{served.base}/v1/orders", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    order = answer.json()

    listed = run(["orders", "list", "--status", "open", "--symbol", "BTC/USDT"], served.env())
    assert listed.returncode == OK, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[4:8] == ["TYPE", "QTY", "LIMIT", "STOP"]
    (row,) = [r.split() for r in rows if r.startswith(order["id"])]
    assert row[4:8] == ["stop", "0.001", "-", order["stop_price"]]
    shown = run(["orders", "show", order["id"]], served.env())
    assert field(shown.stdout, "stop_price") == order["stop_price"]
    assert run(["orders", "cancel", order["id"]], served.env()).returncode == OK


@pytest.mark.live
def test_orders_show_of_an_unknown_order_prints_code_and_detail(served: Served) -> None:
    result = run(["orders", "show", "00000000-0000-4000-8000-000000000000"], served.env())
    assert_one_line_error(result, FAILED, "order_not_found", "00000000-0000-4000-8000-000000000000")


@pytest.mark.live
def test_risk_halt_reducing_state_and_resume(served: Served) -> None:
    state = run(["risk", "state"], served.env())
    assert state.returncode == OK, state.stderr
    assert field(state.stdout, "trading state") == "active"
    assert "LIMIT" in state.stdout  # the headroom table's header

    halted = run(["risk", "halt", "--reason", "maintenance", "--reducing"], served.env())
    assert halted.returncode == OK, halted.stderr
    assert halted.stdout.strip() == "account main: reducing (maintenance); canceled 0 open orders"
    assert json.loads(run(["risk", "state", "--json"], served.env()).stdout)["state"] == "reducing"

    stopped = run(["risk", "halt", "--reason", "incident", "--cancel-open-orders", "--json"], served.env())
    assert json.loads(stopped.stdout)["state"]["state"] == "halted"
    assert field(run(["risk", "state"], served.env()).stdout, "manual (account)") == "halted (incident)"

    resumed = run(["risk", "resume", "--reason", "done"], served.env())
    assert resumed.returncode == OK, resumed.stderr
    assert resumed.stdout.startswith("account main: active")
    assert json.loads(run(["risk", "state", "--json"], served.env()).stdout)["state"] == "active"


def test_risk_halt_needs_a_reason() -> None:
    result = run(["risk", "halt"], clean_env())
    assert result.returncode == USAGE
    assert "--reason" in result.stderr


@pytest.mark.live
def test_webhooks_list_prints_a_table(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.admin}"}
    body = {"url": "http://127.0.0.1:9/hook", "events": ["risk.halted"], "description": "pager"}
    created = httpx.post(f"{served.base}/v1/webhooks", json=body, headers=headers)
    assert created.status_code == 201, created.text
    listed = run(["webhooks", "list"], served.env())
    assert listed.returncode == OK, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "URL", "EVENTS"]
    assert any(created.json()["id"] in row and "risk.halted" in row for row in rows)
    assert created.json()["secret"] not in listed.stdout
    assert json.loads(run(["webhooks", "list", "--json"], served.env()).stdout)["items"]


@pytest.mark.live
def test_a_token_without_the_scope_is_refused_with_exit_4(served: Served) -> None:
    reader = served.token("orders:read")
    result = run(["risk", "halt", "--reason", "x"], served.env(reader))
    assert_one_line_error(result, UNAUTHORIZED, "insufficient_scope", "admin")
    assert reader not in result.stdout + result.stderr
    assert run(["orders", "list"], served.env(reader)).returncode == OK


@pytest.mark.live
def test_a_bad_token_is_one_line_and_exit_4_and_never_printed(served: Served) -> None:
    bad = "exs_0123456789abcdef_notarealsecretnotarealsecret"
    for command in (["accounts", "list"], ["orders", "list"], ["risk", "state"], ["webhooks", "list"]):
        result = run(command, served.env(bad))
        assert_one_line_error(result, UNAUTHORIZED, "unauthorized", "EXECSVC_TOKEN")
        assert bad not in result.stdout + result.stderr
        assert bad.split("_", 2)[2] not in result.stdout + result.stderr
    via_option = run(["orders", "list", "--token", bad], clean_env(EXECSVC_URL=served.base))
    assert_one_line_error(via_option, UNAUTHORIZED)
    assert bad not in via_option.stderr


def test_no_token_is_a_usage_error() -> None:
    result = run(["orders", "list"], clean_env())
    assert_one_line_error(result, USAGE, "EXECSVC_TOKEN")


def test_an_unreachable_service_is_one_line_and_exit_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["accounts", "list"], ["orders", "cancel", "x"], ["risk", "resume"]):
        result = run([*command, "--url", url, "--token", "exs_a_b"], clean_env())
        assert_one_line_error(result, UNREACHABLE, url, "execsvc serve")
        assert "exs_a_b" not in result.stderr


@pytest.mark.live
def test_the_url_comes_from_the_environment(served: Served) -> None:
    result = run(["orders", "list", "--json"], served.env())
    assert result.returncode == OK
    assert "items" in json.loads(result.stdout)


@pytest.mark.live
def test_tokens_list_has_a_header(served: Served) -> None:
    result = run(["tokens", "list"], clean_env(EXECSVC_SQLITE_PATH=str(served.sqlite_path)))
    assert result.returncode == OK, result.stderr
    assert result.stdout.splitlines()[0].split() == ["ID", "ACCOUNT", "SCOPES", "STATE", "CREATED", "NAME"]
    rows = json.loads(run(["tokens", "list", "--json"], clean_env(EXECSVC_SQLITE_PATH=str(served.sqlite_path))).stdout)
    assert {"main"} <= {r["account"] for r in rows}


# -- local failures ------------------------------------------------------------------------------------------------


def test_an_unreachable_database_is_one_line_and_exit_3() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    for command in (["tokens", "list"], ["db", "upgrade"], ["serve", "--port", str(free_port())], ["worker"]):
        result = run(command, clean_env(EXECSVC_DATABASE_URL=url))
        assert_one_line_error(result, UNREACHABLE, "cannot reach the database", "EXECSVC_DATABASE_URL")


async def test_an_unmigrated_database_says_run_db_upgrade_with_exit_5(pg_server: PostgresServer) -> None:
    dsn = await create_database(pg_server.admin_dsn)
    try:
        for command in (["tokens", "list"], ["serve", "--port", str(free_port())]):
            result = run(command, clean_env(EXECSVC_DATABASE_URL=dsn))
            assert_one_line_error(result, SCHEMA, "execsvc db upgrade")
    finally:
        await drop_database(pg_server.admin_dsn, dsn)


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["serve", "--port", str(port)], clean_env(EXECSVC_SQLITE_PATH=str(tmp_path / "x.db")))
    assert_one_line_error(result, FAILED, f"port {port}", "in use", "--port")
    assert not (tmp_path / "x.db").exists()  # nothing was started


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    result = run(["tokens", "list"], clean_env(EXECSVC_DB_POOL_SIZE="lots"))
    assert_one_line_error(result, USAGE, "EXECSVC_DB_POOL_SIZE")


# -- doctor --------------------------------------------------------------------------------------------------------


def _lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each check's status, by check name."""
    found = {}
    for line in result.stdout.splitlines()[:-1]:
        status, name = line.split()[:2]
        found[name if name != "venue" else line.split()[2]] = status
    return found


def test_doctor_passes_on_a_good_setup(pg_only_url: str, redis_srv: RedisServer) -> None:
    result = run(["doctor"], clean_env(EXECSVC_DATABASE_URL=pg_only_url, EXECSVC_REDIS_URL=redis_srv.url))
    assert result.returncode == OK, result.stdout + result.stderr
    assert _lines(result) == {"database": "OK", "migrations": "OK", "clock": "OK", "redis": "OK", "venues": "OK"}
    assert "no venue accounts" in result.stdout
    assert result.stdout.splitlines()[-1] == "all checks passed"


@pytest.mark.live
def test_doctor_passes_on_the_embedded_database(served: Served) -> None:
    result = run(["doctor"], clean_env(EXECSVC_SQLITE_PATH=str(served.sqlite_path)))
    assert result.returncode == OK, result.stdout + result.stderr
    statuses = _lines(result)
    assert statuses["database"] == statuses["migrations"] == statuses["venues"] == "OK"
    assert statuses["redis"] == "SKIP"


def test_doctor_fails_on_a_wrong_database_url() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    result = run(["doctor"], clean_env(EXECSVC_DATABASE_URL=url))
    assert result.returncode == FAILED
    assert "Traceback" not in result.stderr
    assert _lines(result)["database"] == "FAIL"
    assert "EXECSVC_DATABASE_URL" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 check(s) failed"


async def test_doctor_fails_on_an_unmigrated_database(pg_server: PostgresServer) -> None:
    dsn = await create_database(pg_server.admin_dsn)
    try:
        result = run(["doctor"], clean_env(EXECSVC_DATABASE_URL=dsn))
    finally:
        await drop_database(pg_server.admin_dsn, dsn)
    assert result.returncode == FAILED, result.stdout
    statuses = _lines(result)
    assert (statuses["database"], statuses["migrations"], statuses["venues"]) == ("OK", "FAIL", "SKIP")
    assert "run `execsvc db upgrade`" in result.stdout


def test_doctor_fails_on_an_unreachable_redis(pg_only_url: str) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    result = run(["doctor"], clean_env(EXECSVC_DATABASE_URL=pg_only_url, EXECSVC_REDIS_URL=redis_url))
    assert result.returncode == FAILED
    assert _lines(result)["redis"] == "FAIL"
    assert "EXECSVC_REDIS_URL" in result.stdout


def test_the_clis_order_statuses_are_the_services() -> None:
    # The CLI keeps its own list so `execsvc --help` imports no service code; it must not drift from the model.
    from execsvc.clitools.operator import ORDER_STATUSES
    from execsvc.core.orders import OrderStatus

    assert tuple(s.value for s in OrderStatus) == ORDER_STATUSES
