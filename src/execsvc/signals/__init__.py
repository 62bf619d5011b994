"""Signals: explainable records of why to trade, their sizing, and the orders they become."""
