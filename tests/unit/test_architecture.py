"""The import rules of ARCHITECTURE.md, checked by walking every module's syntax tree.

- ``execsvc.core`` and ``execsvc.risk`` import only the standard library and each other (so no framework, database,
  queue, exchange or validation library ever reaches the pure domain).
- Only ``execsvc.api`` imports ``execsvc.contract`` (the generated pydantic models).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import execsvc

PACKAGE_DIR = Path(execsvc.__file__).resolve().parent
PURE = ("execsvc.core", "execsvc.risk")
FORBIDDEN_IN_PURE = frozenset(
    {
        "fastapi",
        "starlette",
        "sqlalchemy",
        "redis",
        "ccxt",
        "pydantic",
        "pydantic_settings",
        "structlog",
        "asyncpg",
        "aiosqlite",
        "httpx",
        "prometheus_client",
        "uvicorn",
    }
)
CONTRACT = "execsvc.contract"


@dataclass(frozen=True, slots=True)
class Import:
    """One import found in a module: the absolute dotted name it reaches and where."""

    importer: str
    target: str
    line: int


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        assert module is not None
        return module
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_in(source: str, importer: str, is_package: bool = False) -> Iterator[Import]:
    """Every import anywhere in ``source`` (nested, conditional, relative, or by ``import_module``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, is_package, node.module, node.level)
            for alias in node.names:
                # ``from pkg import name`` may import the submodule ``pkg.name``: check the longer name too.
                yield Import(importer, base if alias.name == "*" else f"{base}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                yield Import(importer, node.args[0].value, node.lineno)


def violations(imports: Iterator[Import] | list[Import]) -> list[str]:
    """The broken rules, one message per offending import."""
    found = []
    for imp in imports:
        top = imp.target.split(".")[0]
        where = f"{imp.importer}:{imp.line} imports {imp.target}"
        if any(within(imp.importer, p) for p in PURE):
            if top in FORBIDDEN_IN_PURE:
                found.append(f"{where}: a framework/adapter library in the pure core")
            elif top != "execsvc" and top not in sys.stdlib_module_names:
                found.append(f"{where}: the pure core imports only the standard library")
            elif top == "execsvc" and not any(within(imp.target, p) for p in PURE):
                found.append(f"{where}: the pure core imports only execsvc.core and execsvc.risk")
        if within(imp.target, CONTRACT) and not (within(imp.importer, "execsvc.api") or within(imp.importer, CONTRACT)):
            found.append(f"{where}: only execsvc.api may import the generated contract models")
    return found


def module_name(path: Path) -> tuple[str, bool]:
    relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(relative.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def project_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name, is_package = module_name(path)
        found.extend(imports_in(path.read_text(encoding="utf-8"), name, is_package))
    return found


# -- the rules on the real tree --------------------------------------------------------------------------------


def test_pure_core_and_contract_import_rules_hold() -> None:
    assert violations(project_imports()) == []


def test_walker_sees_the_whole_package() -> None:
    modules = {module_name(p)[0] for p in PACKAGE_DIR.rglob("*.py")}
    assert {"execsvc.core.orders", "execsvc.risk.engine", "execsvc.pipeline.submit", "execsvc.api"} <= modules
    importers = {i.importer for i in project_imports()}
    assert any(within(m, "execsvc.core") for m in importers)
    assert any(within(m, "execsvc.risk") for m in importers)


def test_walker_finds_the_contract_where_it_is_allowed() -> None:
    # The API does import the contract: if the walker missed that, the rule above would pass vacuously.
    contract_users = {i.importer for i in project_imports() if within(i.target, CONTRACT)}
    assert contract_users
    assert all(within(m, "execsvc.api") or within(m, CONTRACT) for m in contract_users)


# -- the walker detects what it should (self-test on synthetic sources) ----------------------------------------


@pytest.mark.parametrize(
    ("source", "importer", "message"),
    [
        ("import sqlalchemy\n", "execsvc.core.orders", "framework/adapter"),
        ("from fastapi import FastAPI\n", "execsvc.risk.engine", "framework/adapter"),
        ("def f():\n    from redis.asyncio import Redis\n    return Redis\n", "execsvc.core.ports", "framework"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pydantic\n", "execsvc.core.x", "framework"),
        ("try:\n    import ccxt\nexcept ImportError:\n    ccxt = None\n", "execsvc.risk.x", "framework"),
        ("import pydantic_settings as ps\n", "execsvc.core.x", "framework"),
        ("import importlib\nimportlib.import_module('structlog')\n", "execsvc.core.x", "framework"),
        ("__import__('httpx')\n", "execsvc.core.x", "framework"),
        ("import yaml\n", "execsvc.core.x", "only the standard library"),
        ("from execsvc.pipeline import deps\n", "execsvc.risk.engine", "only execsvc.core and execsvc.risk"),
        ("from ..db import tables\n", "execsvc.core.orders", "only execsvc.core and execsvc.risk"),
        ("from execsvc.contract import models\n", "execsvc.pipeline.submit", "only execsvc.api"),
        ("from execsvc import contract\n", "execsvc.db.repositories", "only execsvc.api"),
        ("import execsvc.contract.models as m\n", "execsvc.bootstrap", "only execsvc.api"),
        ("from ..contract import models\n", "execsvc.pipeline.submit", "only execsvc.api"),
        ("from . import models\n", "execsvc.webhooks", "nothing"),
    ],
)
def test_walker_detects_violations_in_synthetic_sources(source: str, importer: str, message: str) -> None:
    is_package = importer == "execsvc.webhooks"
    found = violations(list(imports_in(source, importer, is_package)))
    if message == "nothing":
        assert found == []
    else:
        assert found, source
        assert message in found[0]


@pytest.mark.parametrize(
    ("source", "importer"),
    [
        (
            "from __future__ import annotations\nimport decimal\nfrom datetime import UTC\n"
            "from execsvc.core.money import ZERO\nfrom execsvc.risk.decision import Approved\n",
            "execsvc.risk.engine",
        ),
        ("from .money import ZERO\nfrom . import values\n", "execsvc.core.ledger"),
        ("from .decision import Approved\n", "execsvc.risk"),
        ("from execsvc.contract import models\nfrom fastapi import APIRouter\n", "execsvc.api.routes.orders"),
        ("from ..contract import models\n", "execsvc.api.mapping"),
        ("import sqlalchemy\nimport structlog\n", "execsvc.db.repositories"),
    ],
)
def test_walker_accepts_allowed_imports(source: str, importer: str) -> None:
    is_package = importer == "execsvc.risk"
    assert violations(list(imports_in(source, importer, is_package))) == []


def test_relative_imports_resolve_against_the_importing_module() -> None:
    assert [i.target for i in imports_in("from ..db import tables\n", "execsvc.core.orders")] == ["execsvc.db.tables"]
    assert [i.target for i in imports_in("from . import money\n", "execsvc.core", is_package=True)] == [
        "execsvc.core.money"
    ]
    assert [i.target for i in imports_in("from .money import ZERO\n", "execsvc.core.ledger")] == [
        "execsvc.core.money.ZERO"
    ]
