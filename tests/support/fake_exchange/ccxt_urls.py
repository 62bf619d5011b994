"""Pointing a ccxt exchange's URLs at the fake (no ccxt import: it works on any ``urls`` mapping).

``ccxt.pro.binance`` keeps its WebSocket URLs under ``urls["api"]["ws"]`` (``"spot"`` for market streams,
``["ws-api"]["spot"]`` for the WebSocket API that carries the spot user data stream), and the testnet and demo
ones under ``urls["test"]["ws"]`` and ``urls["demo"]["ws"]``, which ``set_sandbox_mode(True)`` /
``enable_demo_trading(True)`` copy over ``urls["api"]``. :func:`point_ccxt_at` rewrites all three, the ``ws``
subtrees to ``ws://`` (``wss://`` for an ``https`` base), keeping every path (``/ws``, ``/ws-api/v3``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["point_ccxt_at", "rebase_urls"]

_URL_SETS = ("api", "test", "demo")


def rebase_urls(urls: Any, base_url: str, ws_base_url: str | None = None) -> Any:
    """``urls`` with the ``scheme://host[:port]`` of every string (recursively in dicts) replaced by ``base_url``;
    under a ``"ws"`` key by ``ws_base_url`` when given."""
    if isinstance(urls, dict):
        return {
            key: rebase_urls(value, ws_base_url if key == "ws" and ws_base_url else base_url, ws_base_url)
            for key, value in urls.items()
        }
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        rest = urls[len(f"{parts.scheme}://{parts.netloc}") :]
        return base_url.rstrip("/") + rest
    return urls


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Send every REST request and WebSocket connection of a ccxt ``exchange`` (``ccxt.async_support`` or
    ``ccxt.pro``) to ``base_url`` (``http://127.0.0.1:PORT``): ``urls["api"]``, ``["test"]`` and ``["demo"]``."""
    base = base_url.rstrip("/")
    ws_base = "wss" + base[len("https") :] if base.startswith("https") else "ws" + base[len("http") :]
    for name in _URL_SETS:
        if name in exchange.urls:
            exchange.urls[name] = rebase_urls(exchange.urls[name], base, ws_base)
