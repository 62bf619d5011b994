"""Test-support helpers (service provisioning for integration tests)."""
