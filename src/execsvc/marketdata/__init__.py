"""Market data sources: market rules and mark prices."""
