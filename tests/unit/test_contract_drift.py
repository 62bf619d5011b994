"""scripts/check-contract passes on the repo and fails when the committed models drift from the spec."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = Path("src/execsvc/contract/models.py")
STREAM = Path("src/execsvc/contract/stream.py")
TIMEOUT = 120


def _run(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHON: the copy has no .venv of its own; the interpreter running the tests has the generator.
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture
def repo_copy() -> Iterator[Path]:
    """The inputs of the check, copied into a `.contract-check.*` directory of the repo (ignored by git).

    Inside the repo, not /tmp, for the same reason the script generates there: the formatter's settings come from
    the nearest pyproject.toml.
    """
    root = Path(tempfile.mkdtemp(prefix=".contract-check.test-", dir=REPO))
    try:
        shutil.copytree(REPO / "openapi", root / "openapi")
        shutil.copytree(REPO / "scripts", root / "scripts")
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        (root / MODELS).parent.mkdir(parents=True)
        shutil.copy2(REPO / MODELS, root / MODELS)
        shutil.copy2(REPO / STREAM, root / STREAM)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_committed_models_match_the_spec() -> None:
    result = _run(REPO / "scripts" / "check-contract", REPO)
    assert result.returncode == 0, f"scripts/check-contract failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("generated", [MODELS, STREAM], ids=["rest", "stream"])
def test_check_fails_when_the_models_were_edited(repo_copy: Path, generated: Path) -> None:
    models = repo_copy / generated
    lines = models.read_text(encoding="utf-8").splitlines(keepends=True)
    # Rename the first model field, as a hand edit would.
    field = re.compile(r"^(\s+)([a-z_][a-z0-9_]*)(: )")
    index = next(i for i, line in enumerate(lines) if field.match(line))
    original = lines[index]
    lines[index] = field.sub(r"\1\2_edited\3", original, count=1)
    models.write_text("".join(lines), encoding="utf-8")

    result = _run(repo_copy / "scripts" / "check-contract", repo_copy)

    assert result.returncode != 0, f"the check passed on edited models:\n{result.stdout}\n{result.stderr}"
    assert f"{generated} differs from its document" in result.stderr
    # It failed on the edit, not on something else: the diff shows both sides of the changed line.
    assert f"-{lines[index]}" in result.stdout
    assert f"+{original}" in result.stdout
