"""How many bars an indicator needs before its value no longer depends on where it started.

An EMA or Wilder average started on a later bar is seeded with a different mean than one that has run all
along; the difference then shrinks by a constant factor every bar (1 - 2 / (n + 1) for an EMA, 1 - 1 / n for
Wilder's smoothing). After ``settle`` bars it is below ``SEED_RESIDUAL`` of what it was, far too little to move
any comparison a strategy makes, so a strategy rebuilt by replaying that many bars decides as one that never
stopped. Windowed indicators (SMA, Bollinger Bands) are exact once their window is full.
"""

from __future__ import annotations

import math
from typing import Final

SEED_RESIDUAL: Final = 1e-12


def _settle(decay: float) -> int:
    return math.ceil(math.log(SEED_RESIDUAL) / math.log(decay))


def ema_settle(period: int) -> int:
    """Bars after which an EMA's seed has decayed below ``SEED_RESIDUAL`` (about 14 x the period)."""
    if period == 1:
        return 0  # an EMA of one bar is the bar itself: nothing to forget
    return _settle(1.0 - 2.0 / (period + 1))


def wilder_settle(period: int) -> int:
    """Bars after which a Wilder average's seed has decayed below ``SEED_RESIDUAL`` (about 28 x the period)."""
    return _settle(1.0 - 1.0 / period)
