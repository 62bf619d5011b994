"""execsvc: a self-hosted, contract-first order-execution service for crypto trading."""

__version__ = "0.1.0"
