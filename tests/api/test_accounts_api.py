"""/v1/accounts and /v1/reconciliation on SQLite and PostgreSQL: venue accounts, their rules, secrets kept secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select

from execsvc.accounts.secrets import CredentialsUnreadable, SecretBox
from execsvc.accounts.service import AccountService
from execsvc.accounts.store import AccountStore
from execsvc.core.errors import BrokerAuthFailed, BrokerUnavailable
from execsvc.core.ids import new_id
from execsvc.core.venues import AccountMode, Credentials, Finding, VenueAccount, VenueOptions
from execsvc.db import tables as t
from tests.conftest import Harness

D = Decimal
API_KEY = "LIVEKEY-a1b2c3d4e5f6-K9Z7"
SECRET = "top-secret-9f8e7d6c5b4a-never-shown"
PASSPHRASE = "pass-phrase-0246"
KEY1 = Fernet.generate_key().decode()
KEY2 = Fernet.generate_key().decode()
WALLET = {"USDT": D("1234.5"), "BTC": D("0.25")}


@dataclass
class FakeVenues:
    """A venue layer for tests: binance is supported, a secret starting with "bad" is refused."""

    wallet: dict[str, Decimal] = field(default_factory=lambda: dict(WALLET))
    down: bool = False
    checks: list[tuple[str, VenueOptions, Credentials]] = field(default_factory=list)
    binds: list[VenueAccount] = field(default_factory=list)

    def supports(self, venue: str) -> bool:
        return venue in ("paper", "binance")

    def check_options(self, venue: str, options: VenueOptions) -> str | None:
        return "no testnet" if options.sandbox and venue != "binance" else None

    async def check_credentials(
        self, venue: str, options: VenueOptions, credentials: Credentials
    ) -> Mapping[str, Decimal]:
        self.checks.append((venue, options, credentials))
        if self.down:
            raise BrokerUnavailable(f"{venue} is unreachable")
        if credentials.secret.startswith("bad"):
            # Venues sometimes echo what they were sent: the service must not pass it on.
            raise BrokerAuthFailed(
                f"binance Invalid API-key, IP, or permissions for action ({credentials.api_key}/{credentials.secret})"
            )
        return dict(self.wallet)

    async def bind(self, account: VenueAccount) -> None:
        self.binds.append(account)


@dataclass
class Env:
    h: Harness
    venues: FakeVenues
    service: AccountService
    admin: dict[str, str]
    bodies: list[str] = field(default_factory=list)

    def use(self, keys: str | None) -> AccountService:
        """Serve accounts with another EXECSVC_SECRETS_KEY."""
        self.service = make_service(self.h, self.venues, keys)
        self.h.container.services.accounts = self.service
        return self.service

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        r = await self.h.client.request(method, url, **kwargs)
        self.bodies.append(r.text)
        return r


def make_service(h: Harness, venues: FakeVenues, keys: str | None) -> AccountService:
    container = h.container
    write_lock = None if container.sqlite is None else container.sqlite.write_lock
    store = AccountStore(container.engine, SecretBox.from_setting(keys), write_lock)
    settings = container.settings
    return AccountService(
        store,
        container.pipeline,
        venues,
        container.clock,
        starting_balances=settings.starting_balances,
        valuation_asset=settings.valuation_asset,
        base_assets=frozenset(m.symbol.split("/")[0] for m in settings.listed_markets()),
    )


@pytest.fixture
async def env(harness: Harness) -> Env:
    venues = FakeVenues()
    service = make_service(harness, venues, KEY1)
    harness.container.services.accounts = service
    return Env(harness, venues, service, await harness.auth("desk", "admin"))


def live_body(account_id: str = "live-1", secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    body = {
        "id": account_id,
        "venue": "binance",
        "mode": "live",
        "credentials": {"api_key": API_KEY, "secret": secret, "passphrase": PASSPHRASE},
    }
    body.update(extra)
    return body


async def balances(h: Harness, account_id: str) -> dict[str, Decimal]:
    async with h.container.engine.connect() as conn:
        rows = await conn.execute(
            select(t.balances.c.asset, t.balances.c.total).where(t.balances.c.account_id == account_id)
        )
        return {r.asset: r.total for r in rows}


async def account_row(h: Harness, account_id: str) -> dict[str, Any] | None:
    async with h.container.engine.connect() as conn:
        row = (await conn.execute(select(t.accounts).where(t.accounts.c.id == account_id))).first()
    return None if row is None else dict(row._mapping)


async def count_accounts(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.accounts))).scalar_one())


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


async def add_working_order(h: Harness, account_id: str) -> None:
    now = datetime.now(UTC)
    async with h.container.engine.begin() as conn:
        await conn.execute(
            insert(t.orders).values(
                id=new_id(),
                account_id=account_id,
                client_order_id="resting-1",
                symbol="BTC/USDT",
                side="buy",
                type="limit",
                time_in_force="gtc",
                qty=D("0.01"),
                limit_price=D("60000"),
                status="open",
                filled_qty=D(0),
                fees=D(0),
                fee_asset="USDT",
                created_at=now,
                updated_at=now,
            )
        )


# -- create ------------------------------------------------------------------------------------------------------


async def test_a_paper_account_starts_with_the_service_balances(env: Env) -> None:
    r = await env.call("POST", "/v1/accounts", json={"id": "paper-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == "/v1/accounts/paper-1"
    assert body["venue"] == "paper"
    assert body["mode"] == "paper"
    assert body["broker"] == "paper"
    assert body["credentials"] == {"present": False, "key_hint": None}
    assert body["venue_options"] == {"options": {}, "sandbox": False, "api_base_url": None, "urls": {}}
    assert body["valuation_asset"] == "USDT"
    assert await balances(env.h, "paper-1") == {"USDT": D(100000)}
    assert [b.account_id for b in env.venues.binds] == ["paper-1"]
    # The new account trades at once.
    trader = await env.h.auth("paper-1")
    order = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    assert (await env.h.client.post("/v1/orders", json=order, headers=trader)).status_code == 201


async def test_a_shadow_account_takes_its_starting_balances_and_venue_options(env: Env) -> None:
    body = {
        "id": "shadow-1",
        "venue": "binance",
        "mode": "shadow",
        "starting_balances": {"USDT": "2500.125", "EUR": "10"},
        "venue_options": {
            "options": {"defaultType": "spot"},
            "sandbox": True,
            "api_base_url": "http://127.0.0.1:9999",
            "urls": {"public": "https://api.example.test/v3"},
        },
    }
    r = await env.call("POST", "/v1/accounts", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["broker"].startswith("paper@binance#")  # its own endpoint: its own market data
    assert out["mode"] == "shadow"
    assert out["venue_options"] == {**body["venue_options"]}
    assert await balances(env.h, "shadow-1") == {"USDT": D("2500.125"), "EUR": D(10)}
    assert env.venues.checks == []  # shadow sends nothing to the venue
    bound = env.venues.binds[-1]
    assert bound.options.sandbox
    assert bound.options.urls == {"public": "https://api.example.test/v3"}


async def test_a_live_account_is_checked_at_the_venue_and_takes_its_wallet(env: Env) -> None:
    r = await env.call("POST", "/v1/accounts", json=live_body())
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["mode"] == "live"
    assert out["broker"].startswith("live@binance")
    assert out["credentials"] == {"present": True, "key_hint": "K9Z7"}
    assert await balances(env.h, "live-1") == WALLET
    venue, _, creds = env.venues.checks[-1]
    assert venue == "binance"
    assert creds == Credentials(API_KEY, SECRET, PASSPHRASE)
    bound = env.venues.binds[-1]
    assert bound.broker == out["broker"]
    assert bound.credentials == Credentials(API_KEY, SECRET, PASSPHRASE)
    row = await account_row(env.h, "live-1")
    assert row is not None
    assert row["broker"] == out["broker"]
    assert row["mode"] == "live"


async def test_an_existing_id_answers_account_exists(env: Env) -> None:
    assert (await env.call("POST", "/v1/accounts", json={"id": "twice"})).status_code == 201
    problem(await env.call("POST", "/v1/accounts", json={"id": "twice"}), 409, "account_exists")
    problem(await env.call("POST", "/v1/accounts", json={"id": "desk"}), 409, "account_exists")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"id": "x", "venue": "kraken"}, 422, "unsupported_venue", "body.venue"),
        ({"id": "x", "venue": "paper", "mode": "shadow"}, 422, "invalid_mode", "body.mode"),
        ({"id": "x", "venue": "binance", "mode": "live"}, 422, "credentials_required", "body.credentials"),
        ({"id": "bad id!"}, 422, "validation_failed", None),
        ({"id": "x", "starting_balances": {"USDT": 100.5}}, 422, "validation_failed", None),
        ({"id": "x", "starting_balances": {"USDT": "-1"}}, 422, "validation_failed", None),
        ({"id": "x", "starting_balances": {"BTC": "1"}}, 422, "invalid_account", "body.starting_balances.BTC"),
        ({"id": "x", "valuation_asset": "EUR"}, 422, "invalid_account", "body.valuation_asset"),
        ({"id": "x", "mode": "paper", "venue_options": {"sandbox": True}}, 422, "invalid_account", None),
        (
            {"id": "x", "venue": "binance", "mode": "shadow", "venue_options": {"api_base_url": "ftp://h/x"}},
            422,
            "invalid_account",
            "body.venue_options.api_base_url",
        ),
        (
            {"id": "x", "venue": "binance", "mode": "shadow", "venue_options": {"api_base_url": "http:///path"}},
            422,
            "invalid_account",
            "body.venue_options.api_base_url",
        ),
        (
            {"id": "x", "venue": "binance", "mode": "shadow", "venue_options": {"urls": {"public": "nope"}}},
            422,
            "invalid_account",
            "body.venue_options.urls.public",
        ),
        ({"id": "x", "mode": "demo"}, 422, "validation_failed", None),
        ({"id": "x", "extra": 1}, 422, "validation_failed", None),
        (
            live_body("x", starting_balances={"USDT": "1"}),
            422,
            "invalid_account",
            "body.starting_balances",
        ),
    ],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    env: Env, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    before = await count_accounts(env.h)
    r = await env.call("POST", "/v1/accounts", json=body)
    out = problem(r, status, code)
    if field is not None:
        assert field in [e["field"] for e in out["errors"]], out
    assert await count_accounts(env.h) == before
    assert env.venues.checks == []
    assert env.venues.binds == []


async def test_unreadable_and_non_json_bodies_are_problems(env: Env) -> None:
    headers = {**env.admin, "content-type": "application/json"}
    problem(await env.call("POST", "/v1/accounts", content=b"{nope", headers=headers), 400, "malformed_json")
    problem(await env.call("POST", "/v1/accounts", content=b"id=x", headers=env.admin), 415, "unsupported_media_type")


async def test_credentials_need_the_secrets_key(env: Env) -> None:
    env.use(None)
    for body in (
        live_body(),
        {"id": "s", "venue": "binance", "mode": "shadow", "credentials": {"api_key": "k", "secret": "s"}},
    ):
        out = problem(await env.call("POST", "/v1/accounts", json=body), 422, "secrets_key_missing")
        assert "EXECSVC_SECRETS_KEY" in out["detail"]
    assert env.venues.checks == []
    assert await account_row(env.h, "live-1") is None


async def test_refused_credentials_store_nothing_and_never_echo_the_secret(env: Env) -> None:
    r = await env.call("POST", "/v1/accounts", json=live_body(secret="bad-" + SECRET))
    out = problem(r, 422, "credentials_refused")
    assert "Invalid API-key" in out["reason"]
    assert SECRET not in r.text
    assert API_KEY not in r.text
    assert await account_row(env.h, "live-1") is None
    assert await balances(env.h, "live-1") == {}
    assert env.venues.binds == []


async def test_an_unreachable_venue_answers_503_and_stores_nothing(env: Env) -> None:
    env.venues.down = True
    r = await env.call("POST", "/v1/accounts", json=live_body())
    problem(r, 503, "broker_unavailable")
    assert int(r.headers["retry-after"]) >= 1
    assert await account_row(env.h, "live-1") is None


async def test_only_admins_create_and_change_accounts(env: Env) -> None:
    trader = await env.h.auth("desk")
    problem(await env.call("POST", "/v1/accounts", json={"id": "p"}, headers=trader), 403, "insufficient_scope")
    problem(await env.call("PATCH", "/v1/accounts/desk", json={}, headers=trader), 403, "insufficient_scope")
    r = await env.h.client.get("/v1/accounts")
    problem(r, 401, "unauthorized")


# -- read ----------------------------------------------------------------------------------------------------------


async def test_admins_see_every_account_others_only_their_own(env: Env) -> None:
    assert (await env.call("POST", "/v1/accounts", json=live_body())).status_code == 201
    assert (await env.call("POST", "/v1/accounts", json={"id": "other"})).status_code == 201
    listed = (await env.call("GET", "/v1/accounts")).json()["items"]
    assert [a["id"] for a in listed] == ["desk", "live-1", "other"]
    desk = listed[0]
    assert desk["venue"] == "paper"
    assert desk["mode"] == "paper"
    assert desk["broker"] == "paper"

    trader = await env.h.auth("other")
    mine = (await env.call("GET", "/v1/accounts", headers=trader)).json()["items"]
    assert [a["id"] for a in mine] == ["other"]
    assert (await env.call("GET", "/v1/accounts/other", headers=trader)).status_code == 200
    problem(await env.call("GET", "/v1/accounts/live-1", headers=trader), 404, "account_not_found")
    problem(await env.call("GET", "/v1/accounts/nobody"), 404, "account_not_found")
    one = (await env.call("GET", "/v1/accounts/live-1")).json()
    assert one["credentials"] == {"present": True, "key_hint": "K9Z7"}
    problem(await env.call("GET", "/v1/accounts/bad%20id"), 422, "validation_failed")


# -- change --------------------------------------------------------------------------------------------------------


async def test_the_venue_cannot_change(env: Env) -> None:
    await env.call("POST", "/v1/accounts", json={"id": "s1", "venue": "binance", "mode": "shadow"})
    r = await env.call("PATCH", "/v1/accounts/s1", json={"venue": "paper"})
    problem(r, 422, "venue_immutable")
    same = await env.call("PATCH", "/v1/accounts/s1", json={"venue": "binance"})
    assert same.status_code == 200, same.text
    problem(await env.call("PATCH", "/v1/accounts/nobody", json={"mode": "paper"}), 404, "account_not_found")
    problem(await env.call("PATCH", "/v1/accounts/s1", json={"mode": None}), 422, "validation_failed")


async def test_going_live_checks_the_key_and_sets_the_wallet(env: Env) -> None:
    await env.call(
        "POST",
        "/v1/accounts",
        json={"id": "s1", "venue": "binance", "mode": "shadow", "starting_balances": {"EUR": "5"}},
    )
    problem(await env.call("PATCH", "/v1/accounts/s1", json={"mode": "live"}), 422, "credentials_required")
    creds = {"api_key": API_KEY, "secret": SECRET}
    r = await env.call("PATCH", "/v1/accounts/s1", json={"mode": "live", "credentials": creds})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["mode"] == "live"
    assert out["broker"].startswith("live@binance")
    assert out["credentials"] == {"present": True, "key_hint": "K9Z7"}
    assert await balances(env.h, "s1") == {**WALLET, "EUR": D(0)}  # the wallet is the truth
    row = await account_row(env.h, "s1")
    assert row is not None
    assert row["broker"] == out["broker"]
    assert env.venues.binds[-1].mode is AccountMode.LIVE

    # Back to shadow: the broker goes back to the paper book at binance's prices.
    back = (await env.call("PATCH", "/v1/accounts/s1", json={"mode": "shadow"})).json()
    assert back["broker"] == "paper@binance"
    assert back["credentials"]["present"]


async def test_new_credentials_while_live_are_checked_and_refused_ones_change_nothing(env: Env) -> None:
    created = (await env.call("POST", "/v1/accounts", json=live_body())).json()
    checks = len(env.venues.checks)
    bad = {"api_key": "OTHERKEY-0000", "secret": "bad-other-secret-xyz"}
    r = await env.call("PATCH", "/v1/accounts/live-1", json={"credentials": bad})
    problem(r, 422, "credentials_refused")
    assert "bad-other-secret-xyz" not in r.text
    assert len(env.venues.checks) == checks + 1
    now = (await env.call("GET", "/v1/accounts/live-1")).json()
    assert now["broker"] == created["broker"]
    assert now["credentials"]["key_hint"] == "K9Z7"

    env.venues.wallet = {"USDT": D(7)}
    good = {"api_key": "OTHERKEY-0000-AB12", "secret": "other-secret-xyz"}
    changed = (await env.call("PATCH", "/v1/accounts/live-1", json={"credentials": good})).json()
    assert changed["credentials"]["key_hint"] == "AB12"
    assert changed["broker"] != created["broker"]  # another key, another client
    assert await balances(env.h, "live-1") == {"USDT": D(7), "BTC": D(0)}

    problem(await env.call("PATCH", "/v1/accounts/live-1", json={"credentials": None}), 422, "credentials_required")
    env.venues.down = True
    r = await env.call("PATCH", "/v1/accounts/live-1", json={"venue_options": {"sandbox": True}})
    problem(r, 503, "broker_unavailable")
    assert (await env.call("GET", "/v1/accounts/live-1")).json()["venue_options"]["sandbox"] is False


async def test_credentials_can_be_removed_from_a_shadow_account(env: Env) -> None:
    body = {"id": "s1", "venue": "binance", "mode": "shadow", "credentials": {"api_key": API_KEY, "secret": SECRET}}
    assert (await env.call("POST", "/v1/accounts", json=body)).json()["credentials"]["present"] is True
    out = (await env.call("PATCH", "/v1/accounts/s1", json={"credentials": None})).json()
    assert out["credentials"] == {"present": False, "key_hint": None}
    row = await account_row(env.h, "s1")
    assert row is not None
    assert row["credentials"] is None


async def test_moving_into_or_out_of_live_with_working_orders_is_refused(env: Env) -> None:
    await env.call("POST", "/v1/accounts", json={"id": "s1", "venue": "binance", "mode": "shadow"})
    await add_working_order(env.h, "s1")
    creds = {"api_key": API_KEY, "secret": SECRET}
    r = await env.call("PATCH", "/v1/accounts/s1", json={"mode": "live", "credentials": creds})
    problem(r, 409, "account_has_working_orders")
    row = await account_row(env.h, "s1")
    assert row is not None
    assert row["mode"] == "shadow"
    assert row["broker"] == "paper@binance"
    assert row["credentials"] is None
    # shadow -> paper does not cross live: allowed with working orders.
    assert (await env.call("PATCH", "/v1/accounts/s1", json={"mode": "paper"})).status_code == 200

    await env.call("POST", "/v1/accounts", json=live_body())
    await add_working_order(env.h, "live-1")
    problem(await env.call("PATCH", "/v1/accounts/live-1", json={"mode": "shadow"}), 409, "account_has_working_orders")
    assert (await account_row(env.h, "live-1") or {})["mode"] == "live"


# -- secrets -------------------------------------------------------------------------------------------------------


async def test_keys_rotate_and_a_wrong_key_hides_the_hint(env: Env) -> None:
    await env.call("POST", "/v1/accounts", json=live_body())
    await env.call("POST", "/v1/accounts", json={"id": "p1"})
    rotated = env.use(f"{KEY2},{KEY1}")  # the new key first, the old one still opens
    assert (await env.call("GET", "/v1/accounts/live-1")).json()["credentials"]["key_hint"] == "K9Z7"
    [bound] = await rotated.store.venue_accounts()
    assert bound.credentials == Credentials(API_KEY, SECRET, PASSPHRASE)
    assert await rotated.store.reseal_all() == 1  # sealed again with KEY2: KEY1 can go

    only_new = env.use(KEY2)
    reopened = await only_new.store.get_venue_account("live-1")
    assert reopened is not None
    assert reopened.credentials == Credentials(API_KEY, SECRET, PASSPHRASE)

    wrong = env.use(KEY1)  # replaced, not rotated
    out = (await env.call("GET", "/v1/accounts/live-1")).json()
    assert out["credentials"] == {"present": True, "key_hint": None}
    assert await wrong.store.venue_accounts() == []  # left out (and logged); the other accounts bind
    with pytest.raises(CredentialsUnreadable):
        await wrong.store.get_venue_account("live-1")
    # Going live again on stored credentials no key opens is a clear problem, not a 500; new ones fix it.
    assert (await env.call("PATCH", "/v1/accounts/live-1", json={"mode": "shadow"})).status_code == 200
    problem(await env.call("PATCH", "/v1/accounts/live-1", json={"mode": "live"}), 422, "credentials_unreadable")
    again = {"mode": "live", "credentials": {"api_key": API_KEY, "secret": SECRET}}
    assert (await env.call("PATCH", "/v1/accounts/live-1", json=again)).status_code == 200


async def test_the_secret_never_appears_in_answers_logs_or_the_database(
    env: Env, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        await env.call("POST", "/v1/accounts", json=live_body())
        await env.call("POST", "/v1/accounts", json=live_body("live-2", secret="bad-" + SECRET))
        await env.call("GET", "/v1/accounts")
        await env.call("GET", "/v1/accounts/live-1")
        await env.call("PATCH", "/v1/accounts/live-1", json={"credentials": {"api_key": API_KEY, "secret": SECRET}})
        await env.call("PATCH", "/v1/accounts/live-1", json={"mode": "shadow"})
        env.venues.down = True
        await env.call("PATCH", "/v1/accounts/live-1", json={"mode": "live"})
    captured = capsys.readouterr()
    logged = [json.dumps(e, default=str) for e in events] + [r.getMessage() for r in caplog.records]
    logged += [captured.out, captured.err]
    assert any("account_created" in line for line in logged)
    for text in [*env.bodies, *logged]:
        for secret in (SECRET, API_KEY, PASSPHRASE):
            assert secret not in text
    async with env.h.container.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(t.accounts))]
    stored = json.dumps(rows, default=str)
    assert "live-1" in stored
    for secret in (SECRET, API_KEY, PASSPHRASE):
        assert secret not in stored


# -- reconciliation ------------------------------------------------------------------------------------------------


async def test_findings_are_kept_refreshed_resolved_and_listed(env: Env) -> None:
    await env.call("POST", "/v1/accounts", json=live_body())
    store = env.service.store
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    drift = Finding("live-1", "binance", "balance_drift", "USDT", {"ledger": "10", "venue": "12.5"}, t0)
    external = Finding("live-1", "binance", "external_order", "v-77", {"symbol": "BTC/USDT", "side": "buy"}, t0)
    assert await store.record_finding(drift) is True
    assert await store.record_finding(external) is True
    later = Finding("live-1", "binance", "balance_drift", "USDT", {"ledger": "10", "venue": "13"}, t0 + timedelta(1))
    assert await store.record_finding(later) is False

    items = (await env.call("GET", "/v1/reconciliation?account_id=live-1")).json()["items"]
    assert {(i["kind"], i["key"]) for i in items} == {("balance_drift", "USDT"), ("external_order", "v-77")}
    usdt = next(i for i in items if i["key"] == "USDT")
    assert usdt["detail"] == {"ledger": "10", "venue": "13"}
    assert usdt["first_seen_at"] == "2026-03-01T12:00:00Z"
    assert usdt["last_seen_at"] == "2026-03-02T12:00:00Z"
    assert usdt["resolved_at"] is None
    assert usdt["venue"] == "binance"
    assert usdt["account_id"] == "live-1"

    assert await store.resolve_missing("live-1", "balance_drift", {"BTC"}, t0 + timedelta(2)) == 1
    assert await store.resolve_missing("live-1", "external_order", {"v-77"}, t0 + timedelta(2)) == 0
    open_ = (await env.call("GET", "/v1/reconciliation?account_id=live-1")).json()["items"]
    assert [i["key"] for i in open_] == ["v-77"]
    every = (await env.call("GET", "/v1/reconciliation?account_id=live-1&include_resolved=true")).json()["items"]
    assert len(every) == 2
    one = (await env.call("GET", "/v1/reconciliation?account_id=live-1&include_resolved=true&limit=1")).json()
    assert len(one["items"]) == 1
    # Seen again after it was resolved: a new finding.
    assert await store.record_finding(later) is True
    stored = await store.open_finding("live-1", "balance_drift", "USDT")
    assert stored is not None
    assert stored.finding.detail == {"ledger": "10", "venue": "13"}

    # A token sees its own account's findings; another account needs admin.
    trader = await env.h.auth("live-1")
    assert len((await env.call("GET", "/v1/reconciliation", headers=trader)).json()["items"]) == 2
    problem(await env.call("GET", "/v1/reconciliation?account_id=desk", headers=trader), 403, "insufficient_scope")
    problem(await env.call("GET", "/v1/reconciliation?account_id=nobody"), 404, "account_not_found")
    assert (await env.call("GET", "/v1/reconciliation")).json()["items"] == []
    problem(await env.call("GET", "/v1/reconciliation?limit=0"), 422, "validation_failed")


async def test_venue_accounts_lists_every_account_not_on_the_paper_venue(env: Env) -> None:
    await env.call("POST", "/v1/accounts", json=live_body())
    await env.call("POST", "/v1/accounts", json={"id": "s1", "venue": "binance", "mode": "shadow"})
    await env.call("POST", "/v1/accounts", json={"id": "p1"})
    accounts = await env.service.store.venue_accounts()
    assert [(a.account_id, a.mode, a.credentials is not None) for a in accounts] == [
        ("live-1", AccountMode.LIVE, True),
        ("s1", AccountMode.SHADOW, False),
    ]
    paper = await env.service.store.get_venue_account("p1")
    assert paper is not None
    assert paper == VenueAccount("p1", "paper", AccountMode.PAPER, updated_at=paper.updated_at)
    assert paper.updated_at is not None


async def test_subscriptions_may_ask_for_the_new_event_types(env: Env) -> None:
    body = {"url": "https://hooks.example.com/x", "events": ["order.external", "balance.drift", "broker.auth_failed"]}
    r = await env.call("POST", "/v1/webhooks", json=body)
    assert r.status_code == 201, r.text


async def test_without_an_account_service_the_routes_are_not_found(env: Env) -> None:
    env.h.container.services.accounts = None
    problem(await env.call("GET", "/v1/accounts"), 404, "not_found")
