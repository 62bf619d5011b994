"""The risk engine's answer. A denial is a value, not an exception."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which, the limit, the value that broke it, and a message for humans."""

    rule: str
    limit: str | None
    value: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Approved:
    """Every check passed."""

    @property
    def approved(self) -> bool:
        """True."""
        return True


@dataclass(frozen=True, slots=True)
class Denied:
    """At least one check failed."""

    violations: tuple[Violation, ...]

    @property
    def approved(self) -> bool:
        """False."""
        return False


RiskDecision = Approved | Denied
