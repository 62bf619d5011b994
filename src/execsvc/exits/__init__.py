"""Exits the service manages: the stop-loss and take-profit plans of signals' entries (``records``, ``service``)."""
