"""Backtests: the same strategies, risk engine and ledger, driven by a historical bar clock."""
