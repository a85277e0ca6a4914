"""One way to data per domain: resolvers ask their domain's loaders or service, and only
those reach the domain's SQL module (`resolvers/<domain>/sql.py`), which holds all its SQL.
Outside resolvers/ (gateway/, auth/) only the allow-listed modules use a domain's SQL."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOLVERS = ROOT / "resolvers"
OUTSIDE = (ROOT / "gateway", ROOT / "auth")
# The modules of a domain that may send its SQL: per-request loaders or a service.
DATA_ACCESS = {"loaders.py", "service.py"}
# What only a domain's data modules (DATA_ACCESS and sql.py) call on a pool or connection.
CONNECTION_METHODS = {"connection", "acquire", "pool"}
STATEMENT_METHODS = {
    "fetch",
    "fetchrow",
    "fetchval",
    "execute",
    "executemany",
    "copy_records_to_table",
}
# The known users of a domain's SQL functions outside resolvers/, each with its reason.
KNOWN_OUTSIDE_USERS: dict[str, set[str]] = {
    # Reads a version token of the viewer's own students (see its module docstring).
    "gateway/http/response_cache.py": {"resolvers.diary.sql.get_versions"},
}
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|LOCK|SET)\s", re.IGNORECASE)


def modules() -> list[Path]:
    return sorted(RESOLVERS.rglob("*.py"))


def outside_modules() -> list[Path]:
    return sorted(path for folder in OUTSIDE for path in folder.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


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


def _is_class(module: str, name: str) -> bool:
    return isinstance(getattr(importlib.import_module(module), name, None), type)


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound to a SQL module (`from x import sql as data`, `import x.sql as d`)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith(".sql"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name == "sql":
                    aliases[alias.asname or "sql"] = f"{node.module}.sql"
    return aliases


def sql_functions_used(path: Path) -> set[str]:
    """The SQL modules' functions (and other non-class names) a module imports or reaches
    through an imported SQL module (`data.get_versions`)."""
    tree = parsed(path)
    used = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".sql")
        for alias in node.names
        if not _is_class(node.module, alias.name)
    }
    aliases = _module_aliases(tree)
    used |= {
        f"{aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and not _is_class(aliases[node.value.id], node.attr)
    }
    return used


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
    """What only a data module does: any `.pool` attribute, calls of `.connection()` or
    `.acquire()`, and statements sent (`.fetch(...)`, `.execute(...)` and the like)."""
    lines = set()
    for node in ast.walk(parsed(path)):
        if (isinstance(node, ast.Attribute) and node.attr == "pool") or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CONNECTION_METHODS | STATEMENT_METHODS
        ):
            lines.add(node.lineno)
    return [f"{path.name}:{line}" for line in sorted(lines)]


@pytest.mark.parametrize("path", modules(), ids=lambda path: _module_name(path))
def test_only_loaders_and_services_reach_the_sql_modules(path: Path) -> None:
    assert misplaced_sql_imports(path) == []


@pytest.mark.parametrize(
    "path", [p for p in modules() if p.name != "sql.py"], ids=lambda path: _module_name(path)
)
def test_sql_text_lives_in_sql_modules(path: Path) -> None:
    assert sql_literals(path) == []


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if p.name not in DATA_ACCESS | {"sql.py"}],
    ids=lambda path: _module_name(path),
)
def test_no_resolver_takes_a_connection(path: Path) -> None:
    assert connection_calls(path) == []


@pytest.mark.parametrize("path", outside_modules(), ids=lambda path: _relative(path))
def test_outside_resolvers_only_the_known_users_reach_the_sql_modules(path: Path) -> None:
    assert sql_functions_used(path) == KNOWN_OUTSIDE_USERS.get(_relative(path), set())


def test_the_known_outside_users_exist() -> None:
    assert all((ROOT / name).is_file() for name in KNOWN_OUTSIDE_USERS)


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
        "        return await conn.fetch(_SQL)\n"
        "def pool_of(info):\n"
        "    return info.context.pool\n"
        "async def count(conn):\n"
        "    return await conn.fetchval(_SQL)\n",
        encoding="utf-8",
    )
    assert len(misplaced_sql_imports(planted)) == 2
    assert sql_literals(planted) == ["queries.py:3"]
    assert connection_calls(planted) == [f"queries.py:{line}" for line in (6, 7, 9, 11)]


def test_the_outside_check_sees_what_it_forbids(tmp_path: Path) -> None:
    """A planted gateway module reaching two domains' SQL functions is caught; the SQL
    modules' classes (key and row types) are not functions and pass."""
    planted = tmp_path / "gateway" / "cli" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "from resolvers.analytics import sql as data\n"
        "from resolvers.diary.sql import get_versions\n"
        "from resolvers.analytics.sql import Freshness\n"
        "async def refresh(conn, today):\n"
        "    fresh: Freshness = await data.refresh(conn, today=today, timeout_ms=1)\n"
        "    return fresh, await get_versions(conn, [1])\n",
        encoding="utf-8",
    )
    assert sql_functions_used(planted) == {
        "resolvers.analytics.sql.refresh",
        "resolvers.diary.sql.get_versions",
    }
