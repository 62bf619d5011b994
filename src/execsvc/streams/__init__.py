"""Streaming updates to WebSocket clients (issue 5): the hub so far."""
