"""Exit codes of the ``execsvc`` command and the one error type that carries them (docs/cli.md lists them)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a script can tell from ``$?``."""

    OK = 0
    FAILED = 1  # the service refused or reported a problem, a doctor check failed, the port is taken, ...
    USAGE = 2  # a bad option or argument (argparse's own code), or a required setting missing
    UNREACHABLE = 3  # the database or the service cannot be reached
    UNAUTHORIZED = 4  # the token is missing from the service's view, unknown, revoked or lacks the scope
    SCHEMA = 5  # the database schema is not at the newest migration: run `execsvc db upgrade`


class CliError(Exception):
    """A failure the command reports as one line on stderr (``error: ...``) and an exit code; never a traceback."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
