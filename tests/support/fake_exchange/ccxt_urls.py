"""Pointing a ccxt exchange's REST URLs at the fake (no ccxt import: it works on any ``urls`` mapping)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["point_ccxt_at", "rebase_urls"]


def rebase_urls(urls: Any, base_url: str) -> Any:
    """``urls`` with the ``scheme://host[:port]`` of every string (recursively in dicts) replaced by ``base_url``."""
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        rest = urls[len(f"{parts.scheme}://{parts.netloc}") :]
        return base_url.rstrip("/") + rest
    return urls


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Send every REST request of a ccxt ``exchange`` to ``base_url`` (``exchange.urls["api"]`` rewritten)."""
    exchange.urls["api"] = rebase_urls(exchange.urls["api"], base_url)
