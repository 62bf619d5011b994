"""The kill switch: halt trading for an account or the whole service (optionally cancelling every open order), and
resume it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from execsvc.core.commands import CancelOrder
from execsvc.core.errors import OrderNotCancelable, OrderNotFound
from execsvc.core.trading import ManualState, TradingState
from execsvc.pipeline.cancel import cancel_order
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.risk import set_state

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a halt or resume did: the scope's new state, and the orders a halt canceled or failed to cancel."""

    scope: str
    state: ManualState
    canceled: tuple[str, ...] = ()
    cancel_failures: tuple[tuple[str, str | None, str], ...] = ()  # (account, order or None, error)


async def halt(
    pipeline: Pipeline,
    scope: str,
    state: TradingState,
    reason: str,
    actor: str,
    cancel_in: Iterable[str] | None,
) -> StateChange:
    """Stop new orders in the scope (``state`` halted or reducing), then cancel the open orders of ``cancel_in``'s
    accounts when given. The state is committed first, so no order can be accepted behind the sweep."""
    manual = await set_state(pipeline, scope, state, reason, actor)
    if cancel_in is None:
        return StateChange(scope, manual)
    canceled, failures = await cancel_open_orders(pipeline, cancel_in)
    return StateChange(scope, manual, tuple(canceled), tuple(failures))


async def resume(pipeline: Pipeline, scope: str, reason: str, actor: str, *, reset: bool = False) -> StateChange:
    """Lift a halt: the scope is active again; ``reset`` lifts an account's automatic restrictions too."""
    return StateChange(scope, await set_state(pipeline, scope, TradingState.ACTIVE, reason, actor, reset=reset))


async def cancel_open_orders(
    pipeline: Pipeline, accounts: Iterable[str]
) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    """Cancel every working order of the accounts; returns the canceled order ids and the failures (account, order
    or None when the account's orders could not be listed, error).

    Each account's working orders are listed under its lock, after the new state was committed: an order checked
    against the old state held that lock until it was written, so it is in the list.
    """
    canceled: list[str] = []
    failures: list[tuple[str, str | None, str]] = []
    for account_id in accounts:
        try:
            async with pipeline.uow() as uow:
                if await uow.accounts.lock(account_id, finishing=True) is None:
                    continue
                working = list(await uow.orders.working(account_id))
                await uow.commit()
        except Exception as exc:  # one busy account must not leave the others' orders open
            log.warning("halt_sweep_failed", account_id=account_id, error=repr(exc))
            failures.append((account_id, None, str(exc) or type(exc).__name__))
            continue
        for order in sorted(working, key=lambda o: o.id):
            try:
                after = await cancel_order(pipeline, CancelOrder(account_id, order.id))
            except (OrderNotCancelable, OrderNotFound):
                continue  # it finished meanwhile
            except Exception as exc:  # one failure must not stop the sweep; it is reported
                log.warning("halt_cancel_failed", order_id=str(order.id), error=repr(exc))
                failures.append((account_id, str(order.id), str(exc) or type(exc).__name__))
                continue
            if after.status.is_working:
                failures.append((account_id, str(order.id), f"the broker left it {after.status.value}"))
            else:
                canceled.append(str(order.id))
    return canceled, failures
