"""Pydantic models generated from openapi/execsvc.yaml (never edited by hand)."""
