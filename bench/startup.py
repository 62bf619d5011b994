"""Shared start-up of the bench scripts: run under the project's virtualenv, with the repo importable.

Standard library only, so a script can call ``ensure_venv()`` before importing anything of the project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def ensure_venv() -> None:
    """Re-run under the project's virtualenv when started with another interpreter; put the repo on the path."""
    try:
        import execsvc  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise
    for path in (ROOT, BENCH):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
