"""The parameter models' shared base: the exit levels and the cooldown every strategy takes.

Each strategy's ``params_model`` is a frozen pydantic model that refuses unknown fields, coerces nothing (``"12"`` is
not an integer, ``true`` is not a number) and describes every field, so its JSON schema documents it. Checks
between fields are field validators on the later field, so a problem is reported under the field it concerns
and every problem is reported at once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

StrictInt = Annotated[int, Field(strict=True)]
StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Period = Annotated[StrictInt, Field(ge=2, le=1000)]


class ParamsModel(BaseModel):
    """A frozen model that refuses unknown fields: the base of every parameter model."""

    # Defaults are validated too, so a check between fields also runs when only one of them is given.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StrategyParams(ParamsModel):
    """Parameters every strategy has: ATR-based exits and the cooldown between signals."""

    atr_period: Period = Field(14, description="ATR period (Wilder) for the stop-loss and take-profit distances.")
    stop_atr: Annotated[StrictFloat, Field(gt=0, le=100)] = Field(
        1.5, description="Stop-loss distance from the entry, in ATRs (rounded away from the entry)."
    )
    take_profit_atr: tuple[
        Annotated[StrictFloat, Field(gt=0, le=100)],
        Annotated[StrictFloat, Field(gt=0, le=100)],
        Annotated[StrictFloat, Field(gt=0, le=100)],
    ] = Field(
        (2.0, 3.0, 4.0),
        description="The three take-profit distances from the entry, in ATRs, strictly increasing "
        "(each rounded toward the entry).",
    )
    cooldown_seconds: Annotated[StrictInt, Field(ge=0, le=7 * 86_400)] = Field(
        0, description="Minimum time between two signals of the instance, measured on bar close times."
    )

    @field_validator("take_profit_atr")
    @classmethod
    def _ladder_increases(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not value[0] < value[1] < value[2]:
            raise PydanticCustomError("not_increasing", "the take-profit multiples must be strictly increasing")
        return value


def must_exceed(value: float, info: ValidationInfo, other: str) -> None:
    """Raise a validation error under the current field unless ``value`` exceeds the field ``other``."""
    # ``info.data`` holds only the fields before this one that validated: a bad ``other`` is reported on its own.
    bound = info.data.get(other)
    if bound is not None and not value > bound:
        raise PydanticCustomError(
            "must_exceed", "must be greater than {other} ({bound})", {"other": other, "bound": bound}
        )
