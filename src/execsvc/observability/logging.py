"""Structured JSON logs with the request id bound to every line of a request."""

from __future__ import annotations

import logging
import sys
import time

import structlog


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Route structlog and the standard library through one JSON (or console) renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


class OutageLog:
    """How a retrying loop reports a failure that lasts: the first with its traceback, then one line every ``every``
    seconds while it goes on, and the recovery. A loop that retries ten times a second through a Redis or database
    outage would otherwise spend its event loop formatting tracebacks, and slow every request of the process."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger, event: str, every: float = 30.0) -> None:
        self.logger = logger
        self.event = event
        self.every = every
        self.since: float | None = None
        self._last = 0.0
        self.failures = 0

    def failed(self, **context: object) -> None:
        """Call from the ``except`` block of a failed attempt."""
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = self._last = now
            self.logger.warning(self.event, exc_info=True, **context)
        elif now - self._last >= self.every:
            self._last = now
            error = repr(sys.exc_info()[1])
            self.logger.warning(self.event, failing_for_s=round(now - self.since, 1), error=error, **context)

    def ok(self, **context: object) -> None:
        """Call after an attempt that worked."""
        if self.since is not None:
            seconds = round(time.monotonic() - self.since, 1)
            self.logger.info(f"{self.event}_recovered", after_s=seconds, failures=self.failures, **context)
            self.since = None
            self.failures = 0

    def backoff(self, base: float, cap: float) -> float:
        """A pause that doubles with each failure in a row, from ``base`` to ``cap``."""
        return min(cap, base * 2 ** max(0, self.failures - 1)) if self.failures else base
