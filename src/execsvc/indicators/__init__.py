"""Technical indicators, pure Python: each one incremental (``update`` per bar, O(1)) and over a whole series.

Every indicator is a small class whose ``update`` takes one bar's inputs and returns the new value, or ``None``
while it is warming up; ``ready`` says whether values have started and ``lookback`` is how many leading bars
return ``None``. Each has a ``*_series`` function that feeds a whole series through the class, so the two give
identical values. Values and warm-up match TA-Lib (default settings, unstable period 0) to within 1e-9 relative
(1e-9 absolute where the exact value is 0); VWAP, which TA-Lib lacks, matches a direct cumulative computation.

Warm-up is the 0-based index of the first value, which equals TA-Lib's lookback.

=========================  ===================  ===============================  ===============================
class (series function)    inputs per bar       output                           first value at bar
=========================  ===================  ===============================  ===============================
Sma(period)                close                float                            period - 1
  (sma_series)
Ema(period)                close                float; seeded with the SMA of    period - 1
  (ema_series)                                  the first ``period`` closes
Rsi(period=14)             close                float, 0..100 (Wilder)           period
  (rsi_series)
Macd(12, 26, 9)            close                MacdValue(macd, signal,          slow + signal - 2 (33)
  (macd_series)                                 histogram)
BollingerBands(period=20,  close                BollingerValue(upper, middle,    period - 1
  num_std=2.0)                                  lower); population std-dev
  (bollinger_series)
Atr(period=14)             high, low, close     float (Wilder)                   period
  (atr_series)
DirectionalMovement(14)    high, low, close     DirectionalValue(plus_di,        period
  (directional_series)                          minus_di), each 0..100
Adx(period=14)             high, low, close     AdxValue(adx, plus_di,           2 * period - 1 (27)
  (adx_series)                                  minus_di)
Stochastic(5, 3, 3)        high, low, close     StochasticValue(k, d): slow %K   fastk + slowk + slowd - 3 (8)
  (stochastic_series)                           and %D, SMA-smoothed
Obv()                      close, volume        float; starts at the first       0
  (obv_series)                                  bar's volume
Vwap()                     high, low, close,    float: sum(typical * volume) /   the first bar of the session
  (vwap_series)            volume (and          sum(volume) since the session    with volume > 0
                           new_session)         began, typical = (h + l + c) / 3
=========================  ===================  ===============================  ===============================

Where this package and TA-Lib part ways:

- Windowed sums (SMA, the Bollinger moments, the stochastic's smoothing) are compensated and re-summed exactly
  once per window, so they do not drift; TA-Lib's plain running sums do (a slow %K of -5e-14 where the exact
  value is 0; an SMA 1.6e-6 off, relatively, after prices fall from 1e6 to 1).
- Parameters TA-Lib takes but these classes refuse with ``ValueError``: MACD with fast >= slow (TA-Lib swaps
  them), RSI or +DI/-DI/ADX with period 1 (TA-Lib returns the input, or a ratio instead of a percentage).
  Bollinger Bands accept period 1 (bands of zero width), which TA-Lib refuses.

Floats are fine here: indicator values are signals, never money.
"""

from execsvc.indicators.atr import Atr, atr_series, true_range
from execsvc.indicators.bollinger import BollingerBands, BollingerValue, bollinger_series
from execsvc.indicators.directional import (
    Adx,
    AdxValue,
    DirectionalMovement,
    DirectionalValue,
    adx_series,
    directional_series,
)
from execsvc.indicators.macd import Macd, MacdValue, macd_series
from execsvc.indicators.moving_averages import Ema, Sma, ema_series, sma_series
from execsvc.indicators.rsi import Rsi, rsi_series
from execsvc.indicators.stochastic import Stochastic, StochasticValue, stochastic_series
from execsvc.indicators.volume import Obv, Vwap, obv_series, vwap_series

__all__ = [
    "Adx",
    "AdxValue",
    "Atr",
    "BollingerBands",
    "BollingerValue",
    "DirectionalMovement",
    "DirectionalValue",
    "Ema",
    "Macd",
    "MacdValue",
    "Obv",
    "Rsi",
    "Sma",
    "Stochastic",
    "StochasticValue",
    "Vwap",
    "adx_series",
    "atr_series",
    "bollinger_series",
    "directional_series",
    "ema_series",
    "macd_series",
    "obv_series",
    "rsi_series",
    "sma_series",
    "stochastic_series",
    "true_range",
    "vwap_series",
]
