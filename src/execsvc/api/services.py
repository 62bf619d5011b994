"""What the routes need, handed to ``create_app`` by bootstrap (the API never builds adapters itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from execsvc.db.admin import TokenRecord
from execsvc.db.queries import ReadModel, RiskReads
from execsvc.observability.metrics import Metrics
from execsvc.pipeline.deps import Pipeline


@dataclass(slots=True)
class Services:
    """The API's dependencies."""

    pipeline: Pipeline
    reads: ReadModel
    risk_reads: RiskReads
    metrics: Metrics
    valuation_asset: str
    max_body_bytes: int
    spec_path: Path
    # Bearer token -> the live token it stands for, or None.
    authenticate: Callable[[str], Awaitable[TokenRecord | None]]
    # Checks run by /readyz, by name; each raises when its dependency is unreachable. None: not configured.
    readiness: dict[str, Callable[[], Awaitable[None]] | None]
