"""Outgoing webhooks: Standard Webhooks signing and destination URL safety."""
