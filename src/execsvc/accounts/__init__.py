"""Accounts bound to venues: their settings, encrypted credentials, reconciliation findings and use cases."""
