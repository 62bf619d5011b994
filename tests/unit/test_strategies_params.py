"""Strategy parameters and the registry: the issue's defaults, typed errors listing every problem, schemas, docs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from execsvc.strategies import (
    KINDS,
    AdxRegimeParams,
    EmaRsiParams,
    EmaRsiRule,
    InvalidStrategyParams,
    MacdBbParams,
    MacdBbRule,
    Regime,
    RegimeSettings,
    RegimeThresholds,
    UnknownStrategy,
    build_strategy,
    params_schema,
    parse_params,
    strategy_kinds,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"
TICK = Decimal("0.01")


def field_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every parameter as a dotted path, nested models' fields included."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from field_paths(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def problems(kind: str, params: Any) -> dict[str, str]:
    with pytest.raises(InvalidStrategyParams) as caught:
        build_strategy(kind, params, TICK)
    assert caught.value.kind == kind
    return dict(caught.value.errors)


# -- defaults -----------------------------------------------------------------------------------------------------


def test_shared_exit_defaults_are_the_issues() -> None:
    for kind, cls in KINDS.items():
        params = cls.params_model()
        assert (params.atr_period, params.stop_atr, params.take_profit_atr) == (14, 1.5, (2.0, 3.0, 4.0)), kind


def test_ema_rsi_defaults_are_the_issues() -> None:
    params = EmaRsiParams()
    assert (params.fast_period, params.slow_period, params.rsi_period) == (12, 26, 14)
    assert (params.rsi_buy_below, params.rsi_sell_above) == (70.0, 30.0)
    assert params.cooldown_seconds == 0


def test_macd_bb_defaults_are_the_issues() -> None:
    params = MacdBbParams()
    assert (params.macd_fast, params.macd_slow, params.macd_signal) == (12, 26, 9)
    assert (params.bb_period, params.bb_std) == (20, 2.0)


def test_adx_regime_defaults_are_the_issues() -> None:
    params = AdxRegimeParams()
    assert (params.adx_period, params.adx_smoothing) == (14, 3)
    thresholds = params.thresholds
    assert (thresholds.weak_from, thresholds.trend_from, thresholds.firm_from, thresholds.strong_from) == (
        18.0,
        23.0,
        32.0,
        42.0,
    )
    assert params.regimes.strong.debounce_factor == 0.5
    assert params.regimes.none.debounce_factor == 1.8
    assert {params.regimes[r].debounce_factor for r in (Regime.WEAK, Regime.TREND, Regime.FIRM)} == {1.0}
    assert (params.vote_threshold, params.confidence_threshold, params.cooldown_seconds) == (0.35, 0.6, 180)
    # The votes' indicators default to the built-ins' own.
    assert params.ema_rsi == EmaRsiRule()
    assert params.ema_rsi.model_dump() == EmaRsiParams().model_dump(include=set(EmaRsiRule.model_fields))
    assert params.macd_bb == MacdBbRule()
    assert params.macd_bb.model_dump() == MacdBbParams().model_dump(include=set(MacdBbRule.model_fields))


def test_regime_weights_sum_to_at_most_one_by_default() -> None:
    table = AdxRegimeParams().regimes
    for regime in Regime:
        settings = table[regime]
        assert 0.0 < settings.ema_rsi + settings.macd_bb <= 1.0 + 1e-9
    # Trend following weighs more the stronger the trend.
    weights = [table[regime].ema_rsi for regime in Regime]
    assert weights == sorted(weights)


def test_missing_fields_take_their_defaults_and_given_ones_are_kept() -> None:
    params = parse_params("ema_rsi", {"fast_period": 9, "rsi_buy_below": 65})
    assert isinstance(params, EmaRsiParams)
    assert (params.fast_period, params.slow_period, params.rsi_buy_below) == (9, 26, 65.0)


def test_params_round_trip_through_their_json_dump() -> None:
    for kind, cls in KINDS.items():
        dumped = cls.params_model().model_dump(mode="json")
        assert parse_params(kind, dumped) == cls.params_model()


def test_params_are_frozen() -> None:
    params = EmaRsiParams()
    with pytest.raises(ValidationError):
        params.fast_period = 5  # type: ignore[misc]


# -- invalid parameters -------------------------------------------------------------------------------------------


def test_every_problem_is_listed_with_its_field_path() -> None:
    found = problems(
        "ema_rsi",
        {
            "fast_period": 30,
            "slow_period": 20,  # not slower than fast
            "rsi_period": "14",  # a string is not an integer
            "stop_atr": -1,  # out of range
            "take_profit_atr": [3, 2, 4],  # not increasing
            "atr_period": True,  # a boolean is not an integer
            "rsi_buy_below": float("nan"),
            "bogus": 1,  # unknown field
        },
    )
    assert set(found) == {
        "slow_period",
        "rsi_period",
        "stop_atr",
        "take_profit_atr",
        "atr_period",
        "rsi_buy_below",
        "bogus",
    }
    assert found["slow_period"] == "must be greater than fast_period (30)"
    assert "integer" in found["rsi_period"]
    assert "greater than 0" in found["stop_atr"]
    assert "increasing" in found["take_profit_atr"]
    assert "Extra inputs" in found["bogus"]


def test_fast_equal_to_slow_is_refused() -> None:
    assert set(problems("ema_rsi", {"fast_period": 26})) == {"slow_period"}
    assert set(problems("macd_bb", {"macd_fast": 26, "macd_slow": 26})) == {"macd_slow"}


def test_an_out_of_range_fast_period_is_reported_once_not_again_as_a_cross_field_problem() -> None:
    assert set(problems("ema_rsi", {"fast_period": 0, "slow_period": 5})) == {"fast_period"}


def test_nested_problems_carry_the_whole_path() -> None:
    found = problems(
        "adx_regime",
        {
            "thresholds": {"trend_from": 17.0},
            "regimes": {"firm": {"ema_rsi": 0.9, "macd_bb": 0.5}, "strong": {"ema_rsi": 1.5, "macd_bb": 0}},
            "ema_rsi": {"slow_period": 5},
            "take_profit_atr": [2, 3],
        },
    )
    assert set(found) == {
        "thresholds.trend_from",
        "regimes.firm.macd_bb",
        "regimes.strong.ema_rsi",
        "ema_rsi.slow_period",
        "take_profit_atr.2",
    }
    assert found["thresholds.trend_from"] == "must be greater than weak_from (18.0)"


def test_the_signal_window_must_hold_the_longest_debounce() -> None:
    # 4 bars x 1.8 in a range is 7.2, so 8 bars.
    found = problems("adx_regime", {"debounce_bars": 4, "signal_window_bars": 7})
    assert found == {
        "signal_window_bars": "must be at least the longest debounce (8 bars), or that regime never signals"
    }
    assert parse_params("adx_regime", {"debounce_bars": 4, "signal_window_bars": 8})


def test_params_that_are_not_an_object_are_refused() -> None:
    found = problems("ema_rsi", [1, 2])
    assert list(found) == [""]


def test_the_error_message_names_every_problem() -> None:
    with pytest.raises(InvalidStrategyParams) as caught:
        parse_params("ema_rsi", {"fast_period": 1, "bogus": 2})
    message = str(caught.value)
    assert message.startswith("invalid ema_rsi parameters: ")
    assert "fast_period: " in message
    assert "bogus: " in message


def test_an_unknown_kind_is_a_typed_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownStrategy) as caught:
        build_strategy("martingale", {}, TICK)
    assert caught.value.kind == "martingale"
    assert caught.value.known == ("adx_regime", "ema_cross", "ema_rsi", "macd_bb")
    with pytest.raises(UnknownStrategy):
        params_schema("martingale")


# -- regimes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adx", "regime"),
    [
        (0.0, Regime.NONE),
        (17.99, Regime.NONE),
        (18.0, Regime.WEAK),
        (22.99, Regime.WEAK),
        (23.0, Regime.TREND),
        (31.99, Regime.TREND),
        (32.0, Regime.FIRM),
        (41.99, Regime.FIRM),
        (42.0, Regime.STRONG),
        (100.0, Regime.STRONG),
    ],
)
def test_regime_boundaries_belong_to_the_regime_they_start(adx: float, regime: Regime) -> None:
    assert RegimeThresholds().classify(adx) is regime


@pytest.mark.parametrize(
    ("base", "factor", "bars"),
    [(3, 1.0, 3), (3, 0.5, 2), (3, 1.8, 6), (5, 1.8, 9), (1, 0.5, 1), (2, 0.5, 1), (10, 0.05, 1), (4, 1.8, 8)],
)
def test_debounce_is_scaled_rounded_up_and_at_least_one_bar(base: int, factor: float, bars: int) -> None:
    assert RegimeSettings(ema_rsi=0.5, macd_bb=0.5, debounce_factor=factor).debounce_bars(base) == bars


# -- schemas and docs ---------------------------------------------------------------------------------------------


def _schema_paths(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, prop in node["properties"].items():
        ref = prop.get("$ref") or next((item["$ref"] for item in prop.get("allOf", []) if "$ref" in item), None)
        if ref is not None:
            yield from _schema_paths(schema, schema["$defs"][ref.split("/")[-1]], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", prop


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_json_schema_lists_every_parameter_with_a_description(kind: str) -> None:
    schema = params_schema(kind)
    assert schema["additionalProperties"] is False
    listed = dict(_schema_paths(schema, schema))
    assert set(listed) == set(field_paths(KINDS[kind].params_model))
    for path, prop in listed.items():
        assert prop.get("description"), path
        if path.count(".") < 2:  # a regime's weights are required inside it; the table has their defaults
            assert "default" in prop, path


def test_kinds_are_listed_with_summaries_and_schemas() -> None:
    kinds = strategy_kinds()
    assert [k.kind for k in kinds] == ["adx_regime", "ema_cross", "ema_rsi", "macd_bb"]
    for entry in kinds:
        assert entry.summary
        assert entry.params_schema == params_schema(entry.kind)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_docs_list_every_parameter_with_its_default(kind: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert f"## `{kind}`" in text
    section = text.split(f"## `{kind}`", 1)[1].split("\n## ", 1)[0]
    defaults = KINDS[kind].params_model().model_dump(mode="json")
    for path in field_paths(KINDS[kind].params_model):
        assert f"`{path}`" in section, f"{kind}: {path} is not in docs/strategies.md"
        value: Any = defaults
        for part in path.split("."):
            value = value[part]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{path}` "))
        assert _cell(value) in row, f"{kind}: {path} default {value!r} not in {row!r}"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value)
    return str(value)
