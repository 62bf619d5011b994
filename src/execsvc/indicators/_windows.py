"""Sliding windows with O(1) amortised updates that do not drift: sums, mean and variance, highest and lowest.

A running sum that adds the newest value and subtracts the oldest accumulates rounding error for ever, and when a
large value leaves the window the error it left behind can dwarf what remains. So the sums here are
Neumaier-compensated (the rounding error of every addition is carried in a second float), and every ``size``
pushes both floats are recomputed exactly from the window with ``math.fsum``, which bounds the error by what a
single window's worth of compensated updates can add: far below a unit in the last place of the window's sum.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

# Below this ratio of variance to mean squared deviation from the shift, the one-pass variance has lost more than
# six of its sixteen digits to cancellation, and ``RollingMoments`` recomputes it in two passes instead.
_CANCELLATION_RATIO = 1e-6


def _exact_sum(values: Iterable[float]) -> tuple[float, float]:
    """The sum of ``values`` as a rounded float and the rounding error it left (what the compensation carries)."""
    terms = list(values)
    total = math.fsum(terms)
    terms.append(-total)
    return total, math.fsum(terms)


class RollingSum:
    """Sum of the last ``size`` values pushed."""

    __slots__ = ("_comp", "_pushes", "_size", "_sum", "_values")

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._comp = 0.0
        self._pushes = 0

    @property
    def full(self) -> bool:
        """Whether ``size`` values have been pushed."""
        return len(self._values) == self._size

    @property
    def total(self) -> float:
        """The sum of the values in the window."""
        return self._sum + self._comp

    def push(self, value: float) -> None:
        """Add ``value`` to the window, dropping the oldest value once the window is full."""
        values = self._values
        leaving = values[0] if len(values) == self._size else None
        values.append(value)
        # Neumaier's compensated addition, written out twice because a helper call would double the cost.
        total = self._sum
        new = total + value
        if abs(total) >= abs(value):
            self._comp += (total - new) + value
        else:
            self._comp += (value - new) + total
        if leaving is not None:
            total = new
            value = -leaving
            new = total + value
            if abs(total) >= abs(value):
                self._comp += (total - new) + value
            else:
                self._comp += (value - new) + total
        self._sum = new
        self._pushes += 1
        if self._pushes == self._size:
            self._pushes = 0
            self._sum, self._comp = _exact_sum(values)


class RollingMoments:
    """Mean and population variance of the last ``size`` values pushed."""

    # The sums are of deviations from a shift, a recent value of the window, so that the one-pass formula
    # E[d^2] - E[d]^2 does not subtract two huge, nearly equal numbers (at a price of 60,000 the squares are
    # 3.6e9 and a variance of 1e-4 would have only three digits left).
    __slots__ = ("_comp1", "_comp2", "_pushes", "_shift", "_size", "_sum1", "_sum2", "_values")

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: deque[float] = deque(maxlen=size)
        self._shift = 0.0
        self._sum1 = self._comp1 = 0.0
        self._sum2 = self._comp2 = 0.0
        self._pushes = 0

    @property
    def full(self) -> bool:
        """Whether ``size`` values have been pushed."""
        return len(self._values) == self._size

    def push(self, value: float) -> None:
        """Add ``value`` to the window, dropping the oldest value once the window is full."""
        values = self._values
        if not values:
            self._shift = value
        leaving = values[0] if len(values) == self._size else None
        values.append(value)
        shift = self._shift
        self._add(value - shift)
        if leaving is not None:
            self._add(shift - leaving, sign=-1.0)
        self._pushes += 1
        if self._pushes == self._size:
            self._anchor()

    def mean_and_variance(self) -> tuple[float, float]:
        """The window's mean and population variance (divided by ``size``); call only when ``full``."""
        n = len(self._values)
        m1 = (self._sum1 + self._comp1) / n
        m2 = (self._sum2 + self._comp2) / n
        if m2 == 0.0:
            return self._shift + m1, 0.0
        variance = m2 - m1 * m1
        if variance > m2 * _CANCELLATION_RATIO:
            return self._shift + m1, variance
        return self._exact()

    def _add(self, deviation: float, sign: float = 1.0) -> None:
        # Adds ``deviation`` to the first sum and ``sign * deviation**2`` to the second, both compensated.
        total = self._sum1
        new = total + deviation
        if abs(total) >= abs(deviation):
            self._comp1 += (total - new) + deviation
        else:
            self._comp1 += (deviation - new) + total
        self._sum1 = new
        square = sign * deviation * deviation
        total = self._sum2
        new = total + square
        if abs(total) >= abs(square):
            self._comp2 += (total - new) + square
        else:
            self._comp2 += (square - new) + total
        self._sum2 = new

    def _anchor(self) -> None:
        # Move the shift to the newest value and recompute both sums exactly from the window.
        values = self._values
        shift = self._shift = values[-1]
        deviations = [x - shift for x in values]
        self._sum1, self._comp1 = _exact_sum(deviations)
        self._sum2, self._comp2 = _exact_sum([d * d for d in deviations])
        self._pushes = 0

    def _exact(self) -> tuple[float, float]:
        # A flat or nearly flat window: two passes over it, then re-anchor so the next pushes are cheap again.
        values = self._values
        n = len(values)
        self._anchor()
        low, high = min(values), max(values)
        if low == high:
            return low, 0.0
        mean = math.fsum(values) / n
        return mean, math.fsum((x - mean) * (x - mean) for x in values) / n


class RollingExtremes:
    """Highest high and lowest low of the last ``size`` bars, by monotonic deques of ``(bar index, price)``."""

    __slots__ = ("_count", "_highs", "_lows", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._count = 0
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()

    @property
    def full(self) -> bool:
        """Whether ``size`` bars have been pushed."""
        return self._count >= self._size

    @property
    def highest(self) -> float:
        """The highest high in the window."""
        return self._highs[0][1]

    @property
    def lowest(self) -> float:
        """The lowest low in the window."""
        return self._lows[0][1]

    def push(self, high: float, low: float) -> None:
        """Add one bar's high and low, dropping the bar that leaves the window."""
        index = self._count
        self._count = index + 1
        expired = index - self._size
        highs = self._highs
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((index, high))
        if highs[0][0] <= expired:
            highs.popleft()
        lows = self._lows
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((index, low))
        if lows[0][0] <= expired:
            lows.popleft()
