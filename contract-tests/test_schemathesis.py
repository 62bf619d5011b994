"""Schemathesis against the live server: every built-in check, positive and negative data, then stateful scenarios.

The schema is loaded from the committed ``openapi/execsvc.yaml`` rather than from the live ``/openapi.json``: the
tests are parametrized at collection time, before the session's server exists. ``test_served_spec_is_the_tested_one``
pins that the server serves exactly this document, so nothing is lost. (One OpenAPI link is added for the stateful
phase; see ``_spec_with_test_links``.)

Roughly the same as this CLI run against a server started by hand (``.venv/bin/python contract-tests/live.py``),
which reports the known bugs below unless the per-operation settings of CONFIG go into a ``schemathesis.toml``::

    st run http://127.0.0.1:PORT/openapi.json --checks all --mode all -n 50 -H "Authorization: Bearer $TOKEN"

Knobs: ``EXECSVC_CONTRACT_MAX_EXAMPLES`` (per operation, default 50), ``EXECSVC_CONTRACT_SEED`` (default fixed, so a
run is reproducible; set another to explore).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import yaml
from hypothesis import strategies as st
from live import LiveServer
from schemathesis import Case
from schemathesis.checks import CheckFunction
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.redis]

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "execsvc.yaml"
MAX_EXAMPLES = int(os.environ.get("EXECSVC_CONTRACT_MAX_EXAMPLES", "50"))
SEED = int(os.environ.get("EXECSVC_CONTRACT_SEED", "20240601"))
STATEFUL_SCENARIOS = max(10, MAX_EXAMPLES)
STATEFUL_STEPS = 8
STATEFUL_ROUNDS = 5

# Schemathesis' default `positive_data_acceptance` statuses, which the overrides below extend.
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        # `--mode all`: positive and negative data; no example database, so a run depends on the seed only.
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        # `--checks all`: every built-in check is on (the default), stated so it cannot drift. Two are inert here by
        # their own design: `max_response_time` (no limit set) and `object_level_authorization`, which needs several
        # identities in an `[auth.wfc]` file; account isolation is tested directly in test_live_server instead
        # (`test_other_accounts_orders_are_invisible`).
        "checks": {"enabled": True},
        # Every example is a network round trip, so Hypothesis' "too slow" health check would only flag slow CI.
        "suppress-health-check": ["too_slow"],
        "operations": [
            # `cursor` is an opaque token: the schema can only say "1-200 characters", while the server (as the
            # spec's BadRequest response documents) answers 400 `invalid_cursor` to one it did not issue. A
            # schema-valid but foreign cursor is therefore legitimately refused with 400 on the list operations.
            #
            # Also: schemathesis treats an undeclared query parameter (e.g. `?stauts=open`, or `?=0.0`) as negative
            # data and expects a 4xx. The server ignores unknown query parameters, as most HTTP APIs do, and the spec
            # (OpenAPI cannot say "no other query parameters") does not promise otherwise, so these two operations get
            # no such cases. Only query strings are affected: the order body's `additionalProperties: false` is still
            # negated on POST /v1/orders.
            {
                "include-operation-id": [
                    "listOrders",
                    "listFills",
                    "listOrderEvents",
                    "listSignals",
                    "listStrategies",
                    "listExits",
                    "listBacktests",
                ],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
                "generation": {"allow-extra-parameters": False},
            },
            # DELETE /v1/orders/{order_id} *cancels*: as the spec says, it answers with the order as it stands
            # afterwards, and the order stays readable (status `canceled`) forever. `use_after_free` assumes a DELETE
            # removes the resource and wants 404 afterwards, a premise this API does not have; it is the only DELETE,
            # so the check is turned off where it would fire. test_live_server pins the actual cancel semantics.
            {
                "include-operation-id": ["getOrder", "cancelOrder"],
                "checks": {"use_after_free": {"enabled": False}},
            },
            # A schema-valid order can still break a market rule or a risk limit the schema cannot express (an
            # unlisted symbol, qty off the market's step or below its minimum, a zero price, a market order with a
            # limit price, insufficient balance), or reuse an Idempotency-Key with another body. The spec documents
            # these as 422 (validation, market rules, risk). The extra check `rejections_of_valid_data_name_a_rule`
            # below makes sure such a 422 is never a plain request-validation error, which would mean the server is
            # stricter than the schema.
            {
                "include-operation-id": ["submitOrder", "validateOrder"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            # A schema-valid URL can still be refused: not http(s), or a private, loopback or link-local target
            # (SSRF); 422 `invalid_webhook_url`, and only that code (see `_RULE_CODES`).
            {
                "include-operation-id": ["createWebhook", "updateWebhook"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            # A schema-valid bar query can still name a symbol the account's venue does not list, or a `start` that
            # is not before `end` (422 `unknown_symbol`, `invalid_range`), or carry a foreign cursor (400
            # `invalid_cursor`).
            {
                "include-operation-id": ["listCandles"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400", "422"]}},
                "generation": {"allow-extra-parameters": False},
            },
            # A schema-valid strategy instance can still be refused for what the schema cannot express: parameters the
            # kind does not accept, a sizing amount of zero (or a risk fraction above 1), a symbol the account's venue
            # does not list; and its id may be taken (409, allowed by default). See `_RULE_CODES`.
            {
                "include-operation-id": ["createStrategy", "updateStrategy"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            # A schema-valid backtest can still be refused for what the schema cannot express: parameters the kind does
            # not accept, no symbol at all, markets of two quote assets, an end before its start, limits that make no
            # sense, a walk-forward grid with no valid set (422 `invalid_backtest`; see `_RULE_CODES`).
            {
                "include-operation-id": ["createBacktest"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            # A schema-valid inbound signal can still be refused for what the schema cannot express: neither or both of
            # qty and notional, a zero amount, a level on the wrong side of the mark, an unlisted symbol, a market with
            # no mark yet (422 `invalid_signal`, `unknown_symbol`, `no_market_price`; see `_RULE_CODES`).
            {
                "include-operation-id": ["createSignal"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            {
                "include-operation-id": ["listWebhookDeliveries"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
                "generation": {"allow-extra-parameters": False},
            },
            # The risk reads and the reconciliation findings ignore unknown query parameters like the list operations
            # above (the stateful phase's walk reached the findings with one once the signal operations were added).
            {
                "include-operation-id": [
                    "getRiskState",
                    "getRiskLimits",
                    "getRiskLimitHistory",
                    "listReconciliationFindings",
                ],
                "generation": {"allow-extra-parameters": False},
            },
            # Schema-valid limits can still be inconsistent in ways the schema cannot express (a minimum above its
            # maximum once merged with the defaults, a market that is not listed): 422 `invalid_limits`, and only
            # that code (see `_RULE_CODES`).
            # A schema-valid account can still be refused for what the schema cannot express: a venue the service does
            # not support, a mode the venue does not allow, credentials missing, refused or unreadable, no secrets key
            # configured, a venue that cannot change (see `_RULE_CODES`).
            {
                "include-operation-id": ["createAccount", "updateAccountSettings"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
            },
            {
                "include-operation-id": ["putRiskLimits"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
                "generation": {"allow-extra-parameters": False},
            },
        ],
    }
)


def _spec_with_test_links() -> dict[str, Any]:
    """The contract plus one OpenAPI link, as guidance for the stateful phase only.

    Schemathesis infers the links it can (Location -> GET/DELETE /v1/orders/{order_id}, ...) but cannot tell that
    a created order's `client_order_id` feeds GET /v1/orders/by-client-id/{client_order_id}, which then only ever
    sees random ids and 404s. A link changes no request or response schema, so nothing checked is weakened.
    """
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    created = spec["paths"]["/v1/orders"]["post"]["responses"]["201"]
    created.setdefault("links", {})["GetOrderByClientOrderId"] = {
        "operationId": "getOrderByClientId",
        "parameters": {"client_order_id": "$response.body#/client_order_id"},
    }
    return spec


schema = schemathesis.openapi.from_dict(_spec_with_test_links(), config=CONFIG)


# --------------------------------------------------------------------------- known server limitations
#
# (check, operation) pairs that fail against the current server. The schemathesis tests skip exactly that check on
# exactly those operations; a plain HTTP test reproduces each under xfail(strict=True), so a fix turns it XPASS (a
# failure) and the entry must then be deleted here. (Plain HTTP tests: schemathesis' pytest plugin crashes with
# INTERNALERROR on an XPASS(strict) of one of its own items.) Fixed so far, with their regression tests below:
# an incomplete `Allow` on 405, non-RFC-3339 `since`/`until` accepted, a 500 on out-of-range `since`/`until`.

MALFORMED_FRAMING = (
    "uvicorn answers a request with a malformed framing header (e.g. `Content-Length: z%1,`) itself, before the "
    "app sees it: `400 text/plain` 'Invalid HTTP request received.', not problem+json. Generated cases no longer "
    "carry such headers; see FRAMING_HEADERS."
)

KNOWN_BUGS: dict[str, list[CheckFunction]] = {}


def _known(label: str) -> list[CheckFunction]:
    return KNOWN_BUGS.get(label, [])


# --------------------------------------------------------------------------- data that reaches the happy path
#
# Left alone, generated orders almost never name a listed market with a valid step, so POST /v1/orders would only
# ever answer 422 and the 201 path (the Order schema, Location, the stateful GET/DELETE follow-ups) would go
# untested. For three in four positive fuzzing/stateful cases this swaps in a plausible order; the body stays
# schema-valid, so every check still applies. Negative and coverage cases are never touched.

_MARKETS = {
    # symbol: (qty values on the step, limit prices on the tick well below the mark); every pair clears the
    # minimum notional of 5.
    "BTC/USDT": (["0.001", "0.002", "0.00123"], ["20000", "30000.01", "40000.5"]),
    "ETH/USDT": (["0.01", "0.02", "0.0123"], ["1000", "1500.5", "2000.01"]),
}


@st.composite
def _plausible_order(draw: st.DrawFn) -> dict[str, Any]:
    symbol = draw(st.sampled_from(sorted(_MARKETS)))
    quantities, prices = _MARKETS[symbol]
    order_type = draw(st.sampled_from(["market", "limit"]))
    body: dict[str, Any] = {
        "symbol": symbol,
        # Buys only: the account starts with quote currency, so a sell is a legitimate risk rejection most times.
        "side": draw(st.sampled_from(["buy", "buy", "buy", "sell"])),
        "type": order_type,
        "qty": draw(st.sampled_from(quantities)),
        "time_in_force": draw(st.sampled_from(["gtc", "ioc", "fok"] if order_type == "limit" else ["gtc", "ioc"])),
    }
    if order_type == "limit":
        body["limit_price"] = draw(st.sampled_from(prices))
    if draw(st.booleans()):
        body["client_order_id"] = f"st-{uuid.uuid4().hex}"  # fresh, so no accidental duplicate_client_order_id
    return body


@schema.hook("flatmap_case").apply_to(method="POST", path="/v1/orders")
def plausible_orders(context: schemathesis.HookContext, case: Case) -> st.SearchStrategy[Case]:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or meta.phase.name.value not in ("fuzzing", "stateful"):
        return st.just(case)

    def with_body(body: dict[str, Any] | None) -> Case:
        if body is not None:
            case.body = body
        return case

    # Three in four positive cases get a plausible order; the rest keep the generated body.
    return st.one_of(st.none(), _plausible_order(), _plausible_order(), _plausible_order()).map(with_body)


# --------------------------------------------------------------------------- the kill switch aims elsewhere
#
# A generated halt would stop the session's trading account (or, with scope `global`, every account) and a generated
# limit could forbid every order, leaving the order operations nothing but 422s to be tested with. Positive halts,
# resumes and limit changes are therefore aimed at the reader's account, which places no orders; the bodies and
# answers stay schema-valid and every check still applies. Negative cases are left alone (they change nothing).

SACRIFICIAL_ACCOUNT = "contract-reader"


@schema.hook("map_case").apply_to(path_regex=r"^/v1/risk/(halt|resume|limits)$")
def aim_risk_changes_at_the_reader(context: schemathesis.HookContext, case: Case) -> Case:
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return case
    if case.method.upper() == "PUT":
        case.query = {**(case.query or {}), "account_id": SACRIFICIAL_ACCOUNT}
    elif case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body = {**case.body, "scope": "account", "account_id": SACRIFICIAL_ACCOUNT}
    return case


# --------------------------------------------------------------------------- webhook URLs that can be accepted
#
# Generated URLs are almost never absolute http(s) URLs to a public host, so subscriptions would only ever be refused
# and the 201 path untested. Three in four positive cases get a plausible public URL (nothing is delivered: the
# live server runs no webhook worker).


@schema.hook("map_case").apply_to(method="POST", path="/v1/webhooks")
def plausible_webhook_urls(context: schemathesis.HookContext, case: Case) -> Case:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if uuid.uuid4().int % 4:
        case.body = {**case.body, "url": f"https://hooks.example.com/{uuid.uuid4().hex}"}
    return case


# --------------------------------------------------------------------------- HTTP framing headers
#
# Negative cases may carry arbitrary extra headers, and now and then one is named like an HTTP/1.1 framing header
# (`content-length: z%1,`). Such a request never reaches the application: uvicorn's parser refuses it with a plain
# text 400 and closes the connection (RFC 9112 6.3 makes that mandatory). That is HTTP, not the API's contract, so
# these headers are dropped from generated cases; the behaviour itself is reported, and pinned by
# `test_malformed_framing_is_answered_by_uvicorn_in_plain_text` below.

FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "expect", "te", "trailer", "upgrade", "keep-alive"}
)


@schema.hook("map_case")
def without_framing_headers(context: schemathesis.HookContext, case: Case) -> Case:
    if case.headers:
        for name in [name for name in case.headers if name.lower() in FRAMING_HEADERS]:
            del case.headers[name]
    return case


# --------------------------------------------------------------------------- an extra check

# The only codes the server may answer schema-valid data with, where the statuses above allow a 4xx.
# What a schema-valid account may still break (docs/errors.md).
_ACCOUNT_RULES = frozenset(
    {
        "unsupported_venue",
        "invalid_mode",
        "credentials_required",
        "credentials_refused",
        "credentials_unreadable",
        "secrets_key_missing",
        "venue_immutable",
        "invalid_account",
    }
)
_RULE_CODES = {
    "GET /v1/orders": {400: {"invalid_cursor"}},
    "GET /v1/fills": {400: {"invalid_cursor"}},
    "GET /v1/signals": {400: {"invalid_cursor"}},
    "POST /v1/signals": {422: {"invalid_signal", "unknown_symbol", "no_market_price"}},
    "GET /v1/candles": {400: {"invalid_cursor"}, 422: {"unknown_symbol", "invalid_range"}},
    "GET /v1/strategies": {400: {"invalid_cursor"}},
    "GET /v1/exits": {400: {"invalid_cursor"}},
    "GET /v1/backtests": {400: {"invalid_cursor"}},
    "POST /v1/backtests": {422: {"invalid_backtest"}},
    "POST /v1/strategies": {422: {"invalid_strategy_params", "invalid_sizing", "unknown_symbol"}},
    "PATCH /v1/strategies/{strategy_id}": {422: {"invalid_strategy_params", "invalid_sizing"}},
    "PUT /v1/risk/limits": {422: {"invalid_limits"}},
    "POST /v1/webhooks": {422: {"invalid_webhook_url"}},
    "PATCH /v1/webhooks/{webhook_id}": {422: {"invalid_webhook_url"}},
    "GET /v1/webhooks/{webhook_id}/deliveries": {400: {"invalid_cursor"}},
    "POST /v1/accounts": {422: _ACCOUNT_RULES},
    "PATCH /v1/accounts/{account_id}": {422: _ACCOUNT_RULES},
}
# Codes that mean "your request does not match the schema": never right for schema-valid data.
_SCHEMA_CODES = {"validation_failed", "malformed_json", "invalid_idempotency_key", "unsupported_media_type"}


def rejections_of_valid_data_name_a_rule(ctx: schemathesis.CheckContext, response: Any, case: Case) -> bool | None:
    """Narrows the 400/422 allowances above: schema-valid data may break a rule, never the request schema."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return None
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    allowed = _RULE_CODES.get(case.operation.label, {}).get(response.status_code)
    if code in _SCHEMA_CODES or (allowed is not None and code not in allowed):
        raise AssertionError(
            f"schema-valid request to {case.operation.label} answered {response.status_code} with code {code!r}: "
            f"the server is stricter than the spec\n{response.content[:500]!r}"
        )
    return None


# --------------------------------------------------------------------------- tests


def _call(case: Case, live_server: LiveServer, **kwargs: Any) -> None:
    case.call_and_validate(base_url=live_server.base_url, headers=live_server.auth(), **kwargs)


EXTRA_CHECKS = [rejections_of_valid_data_name_a_rule]


@schema.parametrize()
def test_api(case: Case, live_server: LiveServer) -> None:
    """Examples, coverage and fuzzing phases; every check except the known bugs listed above."""
    _call(case, live_server, additional_checks=EXTRA_CHECKS, excluded_checks=_known(case.operation.label))


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/v1/orders", {"GET", "POST"}), ("/v1/orders/00000000-0000-4000-8000-000000000000", {"GET", "DELETE"})],
    ids=["orders", "order"],
)
def test_405_lists_every_method_of_the_path_in_allow(live_server: LiveServer, path: str, methods: set[str]) -> None:
    response = httpx.request("OPTIONS", f"{live_server.base_url}{path}", headers=live_server.auth(), timeout=10)
    assert response.status_code == 405
    allowed = {m.strip().upper() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert allowed >= methods, f"Allow: {response.headers.get('allow')!r}"


@pytest.mark.parametrize("query", [{"until": "0.5"}, {"since": "1700000000"}], ids=["until", "since"])
def test_fills_time_filters_must_be_rfc3339(live_server: LiveServer, query: dict[str, str]) -> None:
    response = httpx.get(f"{live_server.base_url}/v1/fills", params=query, headers=live_server.auth(), timeout=10)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "query",
    [{"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"}],
    ids=["since-year-0", "until-year-10000"],
)
def test_fills_time_filters_out_of_range_are_422(live_server: LiveServer, query: dict[str, str]) -> None:
    response = httpx.get(f"{live_server.base_url}/v1/fills", params=query, headers=live_server.auth(), timeout=10)
    assert response.status_code == 422, response.text


@pytest.mark.xfail(strict=True, reason=MALFORMED_FRAMING)
def test_malformed_framing_is_answered_by_uvicorn_in_plain_text(live_server: LiveServer) -> None:
    host, port = live_server.base_url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"GET /v1/account HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {live_server.admin_token}\r\n"
        "Content-Length: z%1,\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        head = sock.recv(65536).decode("latin-1").split("\r\n\r\n", 1)[0].lower()
    assert head.startswith("http/1.1 400")
    assert "content-type: application/problem+json" in head, head


def test_stateful(live_server: LiveServer) -> None:
    """Chains of calls along the links Schemathesis infers (e.g. POST -> Location -> GET/DELETE), all checks on.

    Run the way ``st run`` runs its stateful phase. Hypothesis assumes a test can be replayed, which a live server
    whose orders and balances change under it breaks, so: only the generate phase (no shrinking), failures collected
    instead of raised (a replay would end in FlakyStrategyDefinition and hide them), and a round that Hypothesis
    abandons as flaky is followed by a fresh one until the scenario budget is spent. Every distinct failure is
    reported at the end with its curl reproduction.
    """
    failures: dict[tuple[str, str, str], str] = {}
    scenarios = 0

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def __init__(self) -> None:
            nonlocal scenarios
            scenarios += 1
            super().__init__()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": live_server.base_url, "headers": live_server.auth()}

        def validate_response(
            self, response: Any, case: Case, additional_checks: list[CheckFunction] | None = None, **kwargs: Any
        ) -> None:
            try:
                case.validate_response(
                    response,
                    additional_checks=[*EXTRA_CHECKS, *(additional_checks or [])],
                    excluded_checks=_known(case.operation.label),
                    transport_kwargs=kwargs or None,
                    recorder=self.recorder,
                )
            except FailureGroup as group:
                for failure in group.exceptions:
                    key = (case.operation.label, type(failure).__name__, failure.title)
                    failures.setdefault(key, f"{case.operation.label}: {group}")

    for attempt in range(STATEFUL_ROUNDS):
        remaining = STATEFUL_SCENARIOS - scenarios
        if remaining <= 0:
            break
        settings = hypothesis.settings(
            phases=[hypothesis.Phase.generate],
            max_examples=remaining,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        try:
            hypothesis.seed(SEED + attempt)(Workflow).run(settings=settings)
        except hypothesis.errors.Flaky:
            continue  # the server's state changed under a prefix Hypothesis re-drew; start a fresh round
    assert not failures, f"{len(failures)} distinct failure(s):\n\n" + "\n\n".join(failures.values())
    assert scenarios >= min(STATEFUL_SCENARIOS, 10), f"only {scenarios} stateful scenarios ran"


def test_served_spec_is_the_tested_one(live_server: LiveServer) -> None:
    served = httpx.get(f"{live_server.base_url}/openapi.json", timeout=10).json()
    assert served == yaml.safe_load(SPEC.read_text(encoding="utf-8"))
