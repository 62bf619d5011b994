"""Inbound signals' pure parts (``signals/inbound.py``): derived ids, level checks, take-profit order, reasons."""

from __future__ import annotations

from decimal import Decimal

from execsvc.core import tokens
from execsvc.core.values import Side
from execsvc.signals.inbound import inbound_signal_id, level_problems, nearest_first, reason_problems

D = Decimal


def test_a_signal_id_names_the_same_signal_in_its_account_only() -> None:
    assert inbound_signal_id("acct-a", "tv-1") == inbound_signal_id("acct-a", "tv-1")
    assert inbound_signal_id("acct-a", "tv-1") != inbound_signal_id("acct-b", "tv-1")
    assert inbound_signal_id("acct-a", "tv-1") != inbound_signal_id("acct-a", "tv-2")
    assert inbound_signal_id("acct-a", None) != inbound_signal_id("acct-a", None)  # no id: a fresh one each time


def test_levels_on_their_sides_of_the_entry_pass() -> None:
    assert level_problems(Side.BUY, D(100), D(95), [D(105), D(110)]) == []
    assert level_problems(Side.SELL, D(100), D(105), [D(95), D(90)]) == []
    assert level_problems(Side.BUY, D(100), None, []) == []


def test_levels_on_the_wrong_side_or_at_zero_name_their_field() -> None:
    assert [f for f, _ in level_problems(Side.BUY, D(100), D(100), [D(99), D(101)])] == ["stop_loss", "take_profits.0"]
    assert [f for f, _ in level_problems(Side.SELL, D(100), D(99), [D(100)])] == ["stop_loss", "take_profits.0"]
    assert [f for f, _ in level_problems(Side.BUY, D(100), D(0), [])] == ["stop_loss"]
    assert [f for f, _ in level_problems(Side.SELL, D(100), None, [D(0)])] == ["take_profits.0"]


def test_take_profits_are_ordered_nearest_first() -> None:
    assert nearest_first(Side.BUY, [D(110), D(105)]) == (D(105), D(110))
    assert nearest_first(Side.SELL, [D(90), D(95)]) == (D(95), D(90))


def test_only_non_finite_numbers_are_bad_reasons() -> None:
    assert reason_problems({"rsi": 30.5, "note": "x", "n": 3}) == []
    assert [f for f, _ in reason_problems({"a": float("inf"), "b": float("nan")})] == ["reasons.a", "reasons.b"]


def test_signals_write_is_a_scope_that_grants_only_itself() -> None:
    assert tokens.parse_scopes("signals:write") == {"signals:write"}
    assert tokens.grants(frozenset({"signals:write"}), "signals:write")
    assert not tokens.grants(frozenset({"signals:write"}), "orders:write")
    assert tokens.grants(frozenset({"admin"}), "signals:write")
