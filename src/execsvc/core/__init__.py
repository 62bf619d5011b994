"""The pure domain: no framework, no I/O."""
