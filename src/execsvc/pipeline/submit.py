"""The SubmitOrder handler: idempotency, account lock, risk, persist, commit; then the broker, outside the lock."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from execsvc.core.commands import RESERVED_PREFIXES, SubmitOrder
from execsvc.core.errors import (
    AccountNotFound,
    BreaksMarketRules,
    BrokerAuthFailed,
    BrokerCircuitOpen,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    DuplicateClientOrderId,
    ExecsvcError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidOrder,
    OutcomeUnknown,
)
from execsvc.core.ids import new_client_order_id
from execsvc.core.money import ZERO
from execsvc.core.orders import ORDER_SOURCE, Applied, Order, OrderStatus, Transition, apply
from execsvc.core.ports import Broker
from execsvc.core.reports import BrokerReport, OutcomeWasUnknown, Rejected
from execsvc.core.uow import AccountInfo, IdempotencyRecord, UnitOfWork
from execsvc.core.values import OrderType, Symbol, TimeInForce
from execsvc.observability import tracing
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.reports import apply_in, record_transition, settle_batch
from execsvc.pipeline.risk import Assessment, assess, settle_day
from execsvc.pipeline.venue_events import venue_refused_credentials
from execsvc.ratelimit import BatchRate
from execsvc.risk import Denied, RiskDecision, audit
from execsvc.routing.breaker import CircuitBreaker, Claim

log = structlog.get_logger(__name__)

# Checks about the order's fit to the market, as opposed to the account's state: their violations are bad input.
MARKET_RULES = frozenset({"symbol_listed", "qty_step", "min_qty", "price_tick", "min_notional"})


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of a submission: the order and the risk decision, or an earlier answer to replay."""

    order: Order | None = None
    decision: RiskDecision | None = None
    replay: IdempotencyRecord | None = None
    # The first request with this idempotency key died after committing its order: ``order`` is that order now.
    recovered: bool = False


def validate_shape(cmd: SubmitOrder) -> None:
    """Rules about the request itself that hold whatever the market or account."""
    if cmd.qty <= 0:
        raise InvalidOrder("qty must be greater than zero", field="qty", code="invalid_qty")
    if cmd.type is OrderType.LIMIT:
        if cmd.limit_price is None:
            raise InvalidOrder("limit orders need a limit_price", field="limit_price", code="limit_price_required")
        if cmd.limit_price <= 0:
            raise InvalidOrder("limit_price must be greater than zero", field="limit_price", code="invalid_price")
    elif cmd.limit_price is not None:
        message = f"{cmd.type} orders take no limit_price"
        raise InvalidOrder(message, field="limit_price", code="limit_price_not_allowed")
    if cmd.type is OrderType.STOP:
        if cmd.stop_price is None:
            raise InvalidOrder("stop orders need a stop_price", field="stop_price", code="stop_price_required")
        if cmd.stop_price <= 0:
            raise InvalidOrder("stop_price must be greater than zero", field="stop_price", code="invalid_price")
        if cmd.time_in_force is not TimeInForce.GTC:
            message = "stop orders rest until triggered: their time_in_force is gtc"
            raise InvalidOrder(message, field="time_in_force", code="invalid_time_in_force")
    elif cmd.stop_price is not None:
        message = f"{cmd.type} orders take no stop_price"
        raise InvalidOrder(message, field="stop_price", code="stop_price_not_allowed")
    try:
        Symbol.parse(cmd.symbol)
    except ValueError as exc:
        raise InvalidOrder(str(exc), field="symbol", code="invalid_symbol") from exc
    if cmd.source == "rest" and cmd.client_order_id is not None and cmd.client_order_id.startswith(RESERVED_PREFIXES):
        message = f"client order ids starting with {' or '.join(RESERVED_PREFIXES)} are the service's own"
        raise InvalidOrder(message, field="client_order_id", code="reserved_client_order_id")
    if ORDER_SOURCE.fullmatch(cmd.source) is None:  # set by our own callers, never by a client: a bug if it fires
        raise InvalidOrder(f"source {cmd.source!r} is not rest, strategy:<id> or signal:<uuid>", code="invalid_source")


def check_supported(broker: Broker | None, broker_name: str, cmd: SubmitOrder) -> None:
    """The account's broker takes the order's type (a venue without stop orders refuses a stop before it is stored);
    one not bound on this instance yet is answered by the caller."""
    if broker is not None and cmd.type.value not in broker.capabilities.order_types:
        kinds = ", ".join(sorted(broker.capabilities.order_types))
        message = f"the account's broker {broker_name} takes no {cmd.type} orders (it takes {kinds})"
        raise InvalidOrder(message, field="type", code="unsupported_order_type")


async def validate_order(pipeline: Pipeline, cmd: SubmitOrder) -> RiskDecision:
    """What-if: the decision the order would get now. Nothing is written, locked or reserved."""
    validate_shape(cmd)
    async with pipeline.uow() as uow:
        account = await uow.accounts.get(cmd.account_id)
        if account is None:
            raise AccountNotFound(f"account {cmd.account_id!r} does not exist")
        broker = pipeline.router.broker_named(account.broker)
        check_supported(broker, account.broker, cmd)
        now = pipeline.clock.now()
        decision = (await assess(pipeline, uow, account.id, account.broker, cmd, now, record=False)).decision
    if not isinstance(decision, Denied) and broker is None:
        # As a submission would be answered: this instance cannot yet say what the account's venue takes.
        raise BrokerUnavailable(f"broker {account.broker!r} is not ready on this instance yet; retry shortly")
    return decision


@dataclass(frozen=True, slots=True)
class _Admitted:
    """What the lock-holding part of a submission decided: a final answer, or an order to send with its claim."""

    result: SubmitResult
    account: AccountInfo | None = None
    claim: Claim | None = None
    answered: bool = False  # the broker answered in process, inside the admitting transaction


async def submit_order(pipeline: Pipeline, cmd: SubmitOrder) -> SubmitResult:
    """Run one order through the pipeline. Returns once the broker's first answer is recorded.

    The order is admitted together with whatever else its lane has queued, of any accounts (``pipeline.admissions``:
    one transaction and one commit for the batch, each account under its lock, the risk engine deciding each order
    in arrival order, each seeing the ones of its account before it), sent to its broker on its own, and its
    broker's answer applied together with the answers of its account's other orders (``pipeline.settlements``). A
    venue in this process that answers at once (the paper venue) is asked inside the admitting transaction instead,
    and its answer committed with the order.
    """
    if tracing.ENABLED:
        attributes = {"execsvc.account_id": cmd.account_id, "execsvc.client_order_id": cmd.client_order_id or ""}
        with tracing.span("order.submit", attributes) as current, tracing.carried(cmd):
            result = await _submit(pipeline, cmd)
            if result.order is not None:
                tracing.set_attributes(current, {"execsvc.order_id": str(result.order.id)})
            return result
    return await _submit(pipeline, cmd)


class _Busy:
    """The answer of a shared batch to an order whose account was locked elsewhere when the batch began: the order
    is queued in its account's own lane (``future``, its answer there)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[_Admitted] | None = None) -> None:
        self.future = future


_BUSY = _Busy()  # while the batch runs; queued in the own lane once it has committed
# ``Pipeline.admissions``: every account's new orders queue in one of two shared lanes (an account always in the
# same one). One lane's batch runs while the other's waits for the database: measured at eight accounts, two lanes
# kept the process ~0.9 of a core busy against ~0.8 with one (bench/RESULTS.md).
_LANES = ("lane-0", "lane-1")


def _lane(account_id: str) -> str:
    return _LANES[zlib.crc32(account_id.encode()) % len(_LANES)]


async def _submit(pipeline: Pipeline, cmd: SubmitOrder) -> SubmitResult:
    started = time.perf_counter()
    validate_shape(cmd)
    admitted = await pipeline.admissions.submit(_lane(cmd.account_id), cmd, partial(admit_batch, pipeline, wait=False))
    if isinstance(admitted, _Busy):
        # Its account's lock was held (a settlement, another instance): the shared lane never waits for one
        # account, so its batch queued the order in its account's own lane, which waits for the lock.
        assert admitted.future is not None
        # Cancelled with this task: left out of the own lane, unless its batch there has begun (that stands).
        admitted = await admitted.future
    assert isinstance(admitted, _Admitted)
    if admitted.answered:
        pipeline.observer.broker_acknowledged(time.perf_counter() - started)
    if admitted.claim is None:
        return admitted.result
    assert admitted.account is not None
    assert admitted.result.order is not None
    order = await _send(pipeline, admitted.account, admitted.result.order, admitted.claim, started)
    return SubmitResult(order, admitted.result.decision)


async def admit_batch(
    pipeline: Pipeline, lane: str, cmds: Sequence[SubmitOrder], *, wait: bool
) -> list[_Admitted | _Busy | Exception]:
    """Admit the queued orders of one or several accounts under one transaction and one commit, each account under
    its lock.

    The shared lane (not ``wait``) takes the locks that are free at once and answers the orders of an account whose
    lock is held elsewhere with ``_BUSY`` (they go to that account's own lane, which waits for it: ``wait``). Each
    order is checked and decided in turn, as if it had come alone after the ones of its account before it: its
    refusal (a reused key, a duplicate client order id, a market rule, an open circuit) is its own answer and writes
    nothing, and its neighbours go on. A failure while writing fails the whole batch, which is then rolled back whole.
    """
    answers: list[_Admitted | _Busy | Exception] = []
    claims: list[tuple[CircuitBreaker, Claim]] = []
    parent, links = tracing.batch_parent(cmds)  # the batch's shared spans: in its first order's trace
    account_ids = sorted({cmd.account_id for cmd in cmds})
    async with pipeline.uow() as uow:
        with tracing.span("account.lock", parent=parent, links=links):
            if wait:
                locked = {account_id: await uow.accounts.lock(account_id) for account_id in account_ids}
            else:  # an account with orders in its own lane is busy too: its new orders queue behind those
                locked = await uow.accounts.lock_free([a for a in account_ids if a not in pipeline.detours])
        rate = BatchRate(pipeline.rate, [account_id for account_id, info in locked.items() if info is not None])
        brokers: dict[str, Broker | None] = {}
        sent: list[tuple[Broker, Order]] = []  # answered in process: taken off the venue again if the batch fails
        try:
            for cmd in cmds:
                if cmd.account_id not in locked:
                    answers.append(_BUSY)
                    continue
                account = locked[cmd.account_id]
                if account is None:
                    answers.append(AccountNotFound(f"account {cmd.account_id!r} does not exist"))
                    continue
                if account.id not in brokers:
                    brokers[account.id] = pipeline.router.broker_named(account.broker)
                broker = brokers[account.id]
                trace_parent = tracing.parent_of(cmd)
                # This batch runs in a task of its own: its log lines say which order they are about. (Bound in the
                # task's own context, which ends with the batch.)
                structlog.contextvars.bind_contextvars(
                    account_id=account.id,
                    client_order_id=cmd.client_order_id,
                    order_id=None,
                    **tracing.log_ids_of(trace_parent),
                )
                try:
                    with tracing.span("order.check", parent=trace_parent) as checking:
                        checked = await _check(pipeline, uow, account, broker, cmd, rate)
                        if checking is not None:
                            tracing.set_attributes(checking, _check_attributes(checked))
                except ExecsvcError as exc:
                    answers.append(exc)
                    continue
                if isinstance(checked, _Admitted):
                    answers.append(checked)
                    continue
                assessment, claim, now = checked
                breaker = pipeline.breakers(account.broker)
                if claim is not None:
                    claims.append((breaker, claim))
                # A failure while writing is not this order's alone: the unit of work is spoiled; the batch fails.
                with tracing.within(trace_parent):  # its outbox rows keep the order's trace context
                    order = await _record(pipeline, uow, account.id, cmd, assessment, now)
                structlog.contextvars.bind_contextvars(order_id=str(order.id), client_order_id=order.client_order_id)
                if claim is not None and broker is not None and broker.capabilities.answers_in_process:
                    # The venue is in this process and answers at once: its answer goes in this same transaction.
                    claims.remove((breaker, claim))
                    sent.append((broker, order))
                    reports = await _ask_broker(pipeline, account, broker, order, claim, trace_parent)
                    with tracing.span("reports.apply", parent=trace_parent):
                        order = await apply_in(pipeline, uow, order, reports, broker.name)
                    answers.append(_Admitted(SubmitResult(order, assessment.decision), account, None, answered=True))
                    continue
                answers.append(_Admitted(SubmitResult(order, assessment.decision), account, claim))
            with tracing.span("db.commit", parent=parent, links=links):
                await rate.flush()
                await uow.commit()
        except BaseException:
            for breaker, claim in claims:
                breaker.abandon(claim)  # never sent: if it was the probe, another order may be
            for broker, order in sent:  # answered, then not stored: off the venue's book, so it never trades
                with contextlib.suppress(Exception):
                    await broker.cancel(order)
            raise
    for i, (cmd, answer) in enumerate(zip(cmds, answers, strict=True)):
        if isinstance(answer, _Admitted) and isinstance(answer.result.decision, Denied):
            pipeline.observer.risk_denied(answer.result.decision.violations)
        elif isinstance(answer, _Busy):
            answers[i] = _Busy(_detour(pipeline, cmd))
    return answers


def _detour(pipeline: Pipeline, cmd: SubmitOrder) -> asyncio.Future[_Admitted]:
    """Queue an order a shared batch found busy in its account's own lane, now (before the lane's next batch can
    begin), and count it in ``pipeline.detours`` until it is answered there or left out: while any is, the account's
    later orders are busy for the shared lanes and queue behind it, so none is decided before it."""
    account_id = cmd.account_id
    future: asyncio.Future[_Admitted] = pipeline.busy_admissions.enqueue(
        account_id, cmd, partial(admit_batch, pipeline, wait=True)
    )
    pipeline.detours[account_id] = pipeline.detours.get(account_id, 0) + 1

    def done(answered: asyncio.Future[_Admitted]) -> None:
        left = pipeline.detours[account_id] - 1
        if left:
            pipeline.detours[account_id] = left
        else:
            del pipeline.detours[account_id]
        if not answered.cancelled():
            answered.exception()  # retrieved: its caller may have gone (the answer then stands unread)

    future.add_done_callback(done)
    return future


async def _check(
    pipeline: Pipeline, uow: UnitOfWork, account: AccountInfo, broker: Broker | None, cmd: SubmitOrder, rate: BatchRate
) -> _Admitted | tuple[Assessment, Claim | None, datetime]:
    """One order's checks and risk decision under the account lock: a final answer (a replay), or what to record.
    Raises, having written nothing, when the order is refused before it is stored."""
    now = pipeline.clock.now()  # after the lock: waiting for it must not age what we compare with now
    if cmd.idempotency_key is not None:
        record = await uow.idempotency.get(account.id, cmd.idempotency_key)
        if record is not None and record.expires_at <= now:
            await uow.idempotency.delete(account.id, cmd.idempotency_key)
            record = None
        if record is not None:
            if record.fingerprint != cmd.fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
            if record.completed:
                return _Admitted(SubmitResult(replay=record))
            if now - record.created_at < pipeline.idempotency_stale_after or record.order_id is None:
                raise IdempotencyKeyInFlight("the first request with this Idempotency-Key is still in flight")
            # The first request died after committing: answer with the order as it stands.
            return _Admitted(SubmitResult(order=await uow.orders.get(record.order_id, account.id), recovered=True))
    if cmd.client_order_id is not None:
        existing = await uow.orders.by_client_id(account.id, cmd.client_order_id)
        if existing is not None:
            raise DuplicateClientOrderId(cmd.client_order_id, existing.id)
    check_supported(broker, account.broker, cmd)

    assessment = await assess(pipeline, uow, account.id, account.broker, cmd, now, record=True, counter=rate)
    decision = assessment.decision
    if isinstance(decision, Denied):
        broken = tuple(v for v in decision.violations if v.rule in MARKET_RULES)
        if broken:
            # An order that does not fit the market is bad input: answered, never stored, its id not used up.
            pipeline.observer.risk_denied(broken)
            raise BreaksMarketRules(tuple((v.rule, v.limit, v.value, v.message) for v in broken))
    if not isinstance(decision, Denied) and broker is None:
        # The account was bound to a venue on another instance a moment ago and this one has not caught up:
        # refused before anything is stored, so a retry (here, or once this instance binds it) is clean.
        raise BrokerUnavailable(f"broker {account.broker!r} is not ready on this instance yet; retry shortly")
    breaker = pipeline.breakers(account.broker)
    claim = None if isinstance(decision, Denied) else breaker.claim(now)
    circuit = [v for v in decision.violations if v.rule == "broker_circuit"] if isinstance(decision, Denied) else []
    if circuit or (claim is None and not isinstance(decision, Denied)):
        # The broker is failing: a passing condition, so nothing is stored and the client retries later.
        pipeline.observer.risk_denied(tuple(circuit))
        raise BrokerCircuitOpen(account.broker, breaker.blocked_until(now), now)
    return assessment, claim, now


async def _record(
    pipeline: Pipeline, uow: UnitOfWork, account_id: str, cmd: SubmitOrder, assessment: Assessment, now: datetime
) -> Order:
    """Write the order (pending_new, or rejected with the risk engine's reasons), its audit, the idempotency record
    and the day's risk state (committed with the batch); returns the order as written."""
    decision = assessment.decision
    await settle_day(uow, account_id, assessment, now)
    order = Order(
        id=pipeline.ids(),
        client_order_id=cmd.client_order_id or new_client_order_id(),
        account_id=account_id,
        symbol=cmd.symbol,
        side=cmd.side,
        type=cmd.type,
        time_in_force=cmd.time_in_force,
        qty=cmd.qty,
        limit_price=cmd.limit_price,
        status=OrderStatus.PENDING_NEW,
        filled_qty=ZERO,
        avg_fill_price=None,
        fees=ZERO,
        fee_asset=Symbol.parse(cmd.symbol).quote,
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=now,
        updated_at=now,
        risk=audit(decision, assessment.limits),
        source=cmd.source,
        reduce_only=cmd.reduce_only,
        stop_price=cmd.stop_price,
    )
    steps = [Applied(order, Transition(order.id, None, OrderStatus.PENDING_NEW, "submitted", now))]
    if isinstance(decision, Denied):
        reason = "; ".join(v.message for v in decision.violations)
        steps.append(apply(order, Rejected("risk_rejected", reason), now))
    await uow.orders.add(steps[-1].order)
    for step in steps:
        await record_transition(uow, pipeline, step)
    if cmd.idempotency_key is not None and cmd.fingerprint is not None:
        await uow.idempotency.add(
            IdempotencyRecord(
                account_id,
                cmd.idempotency_key,
                cmd.fingerprint,
                order.id,
                None,
                None,
                now,
                now + pipeline.idempotency_retention,
            )
        )
    return steps[-1].order


async def _send(pipeline: Pipeline, account: AccountInfo, order: Order, claim: Claim, started: float) -> Order:
    """Send a committed order to its broker, outside any transaction, and record the answer."""
    broker = pipeline.router.broker_for(account)
    reports = await _ask_broker(pipeline, account, broker, order, claim)
    pipeline.observer.broker_acknowledged(time.perf_counter() - started)
    settlement = (order.id, reports, broker.name)
    with tracing.carried(settlement):
        settled: Order = await pipeline.settlements.submit(
            order.account_id, settlement, partial(settle_batch, pipeline)
        )
    return settled


async def _ask_broker(
    pipeline: Pipeline, account: AccountInfo, broker: Broker, order: Order, claim: Claim, trace_parent: Any = None
) -> list[BrokerReport]:
    """Submit the order to its broker; its answer, or what a failure means, as reports (the breaker told)."""
    breaker = pipeline.breakers(account.broker)
    reports: list[BrokerReport]
    try:
        attributes = {"execsvc.broker": broker.name, "execsvc.order_id": str(order.id)} if tracing.ENABLED else None
        with tracing.span("broker.submit", attributes, parent=trace_parent):
            reports = list(await broker.submit(order))
        breaker.succeeded(pipeline.clock.now())
    except OutcomeUnknown as exc:
        # It may have reached the venue: never resend; reconciliation resolves it.
        breaker.failed(pipeline.clock.now())
        reports = [OutcomeWasUnknown(str(exc))]
    except BrokerAuthFailed as exc:
        # The venue refuses the account's key: nothing else will pass until someone fixes it.
        breaker.trip(pipeline.clock.now())
        reports = [Rejected(exc.code, str(exc))]
        await venue_refused_credentials(pipeline, account.id, account.broker, str(exc))
    except BrokerRejected as exc:
        breaker.succeeded(pipeline.clock.now())  # an answer: the broker is up
        reports = [Rejected(exc.code, str(exc))]
    except BrokerRateLimited as exc:
        # The venue said to slow down (429/418) or is in maintenance: the order was not placed, and no other order
        # is sent until the venue's wait (or the breaker's open period) has passed.
        breaker.trip(pipeline.clock.now(), exc.retry_after)
        reports = [Rejected(exc.code, str(exc))]
    except BrokerUnavailable as exc:
        breaker.failed(pipeline.clock.now())
        reports = [Rejected(exc.code, str(exc))]
    except Exception as exc:  # an adapter bug: we cannot know whether the order reached the venue
        breaker.failed(pipeline.clock.now())
        log.exception("broker_submit_failed", order_id=str(order.id))
        reports = [OutcomeWasUnknown(f"unexpected broker error: {exc!r}")]
    except BaseException:
        breaker.abandon(claim)  # cancelled while waiting: no verdict on the broker
        raise
    return reports


def _check_attributes(checked: _Admitted | tuple[Assessment, Claim | None, datetime]) -> dict[str, Any]:
    """What a trace says of an order's checks: the risk engine's decision and the rules it broke."""
    if isinstance(checked, _Admitted):
        return {"execsvc.idempotent_replay": True}
    decision = checked[0].decision
    if isinstance(decision, Denied):
        return {"execsvc.risk.decision": "denied", "execsvc.risk.violations": [v.rule for v in decision.violations]}
    return {"execsvc.risk.decision": "approved"}


async def complete_request(pipeline: Pipeline, account_id: str, key: str, status: int, body: bytes) -> None:
    """Store the answer of an idempotent request so a retry replays it exactly."""
    async with pipeline.uow() as uow:
        await uow.idempotency.complete(account_id, key, status, body)
        await uow.commit()
