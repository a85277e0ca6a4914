"""One way to data per domain: resolvers ask their domain's loaders or service, and only
those reach the domain's SQL module (`resolvers/<domain>/sql.py`), which holds all its SQL."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

RESOLVERS = Path(__file__).resolve().parents[2] / "resolvers"
# The modules of a domain that may send its SQL: per-request loaders or a service.
DATA_ACCESS = {"loaders.py", "service.py"}
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|LOCK|SET)\s", re.IGNORECASE)


def modules() -> list[Path]:
    return sorted(RESOLVERS.rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_name(path: Path) -> str:
    """The dotted name of a module (or package folder) under a `resolvers` folder."""
    parts = path.with_suffix("").parts
    start = len(parts) - 1 - parts[::-1].index("resolvers")
    return ".".join(parts[start:])


def sql_imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, sql module, name imported from it or None for the module itself)."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith(".sql"):
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name == "sql":
                    yield node.lineno, f"{node.module}.sql", None
                elif node.module.endswith(".sql"):
                    yield node.lineno, node.module, alias.name


def misplaced_sql_imports(path: Path) -> list[str]:
    """Imports of a SQL module's statements (the module or a function of it) by a module
    that is not its domain's loaders or service; its classes (key types) may be shared."""
    found = []
    for line, module, name in sql_imports(path):
        own = module == f"{_module_name(path.parent)}.sql" and path.name in DATA_ACCESS
        if own:
            continue
        if name is not None and isinstance(getattr(importlib.import_module(module), name), type):
            continue
        found.append(f"{path.name}:{line} imports {module}{'' if name is None else '.' + name}")
    return found


def sql_literals(path: Path) -> list[str]:
    """String constants that read as SQL statements."""
    return [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL_TEXT.match(node.value)
    ]


def connection_calls(path: Path) -> list[str]:
    """Calls of `.connection()`, `.acquire()` or `.pool()`: what only a data module does."""
    return [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"connection", "acquire", "pool"}
    ]


@pytest.mark.parametrize("path", modules(), ids=lambda path: _module_name(path))
def test_only_loaders_and_services_reach_the_sql_modules(path: Path) -> None:
    assert misplaced_sql_imports(path) == []


@pytest.mark.parametrize(
    "path", [p for p in modules() if p.name != "sql.py"], ids=lambda path: _module_name(path)
)
def test_sql_text_lives_in_sql_modules(path: Path) -> None:
    assert sql_literals(path) == []


@pytest.mark.parametrize(
    "path", [p for p in modules() if p.name not in DATA_ACCESS], ids=lambda path: _module_name(path)
)
def test_no_resolver_takes_a_connection(path: Path) -> None:
    assert connection_calls(path) == []


def test_the_checks_see_what_they_forbid(tmp_path: Path) -> None:
    """A planted resolver module that does everything forbidden is caught three times."""
    domain = tmp_path / "resolvers" / "dashboard"
    domain.mkdir(parents=True)
    planted = domain / "queries.py"
    planted.write_text(
        "from resolvers.dashboard import sql as data\n"
        "from resolvers.diary.sql import get_versions\n"
        "_SQL = '''\n  SELECT 1'''\n"
        "async def resolve(service):\n"
        "    async with service.connection() as conn:\n"
        "        return await conn.fetch(_SQL)\n",
        encoding="utf-8",
    )
    assert len(misplaced_sql_imports(planted)) == 2
    assert sql_literals(planted) == ["queries.py:3"]
    assert connection_calls(planted) == ["queries.py:6"]
