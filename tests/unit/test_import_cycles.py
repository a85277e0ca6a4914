"""No module import cycles in the project: every import counts, lazy and TYPE_CHECKING ones too.

lint-imports (./scripts/check) keeps the layers; this test catches cycles inside one layer.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

PROJECT_PACKAGES = ("gateway", "auth", "resolvers", "fixtures")


def import_graph(*packages: str) -> grimp.ImportGraph:
    """Every import in the packages, function-local and `if TYPE_CHECKING:` ones included."""
    return grimp.build_graph(*packages, cache_dir=None, exclude_type_checking_imports=False)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted."""
    placed: set[str] = set()
    cycles: list[list[str]] = []
    for module in sorted(graph.modules):
        if module in placed:
            continue
        imported = graph.find_upstream_modules(module)
        importing = graph.find_downstream_modules(module)
        component = (imported & importing) | {module}
        placed |= component
        if len(component) > 1:
            cycles.append(sorted(component))
    return cycles


def describe_cycle(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """One line per import edge inside the cycle, with the importing lines."""
    members = set(cycle)
    lines = [f"cycle of {len(cycle)} modules:"]
    for importer in cycle:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
            lines.append(f"  {importer} -> {imported} ({where})")
    return "\n".join(lines)


def test_project_has_no_import_cycles() -> None:
    graph = import_graph(*PROJECT_PACKAGES)
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(describe_cycle(graph, cycle) for cycle in cycles)


SAMPLE_MODULES = {
    "__init__.py": "",
    "base.py": "from cyclesample import top\n",
    "top.py": "def later() -> None:\n    from cyclesample import base  # noqa: F401\n",
    "plans.py": "from cyclesample.codegen import generate\n",
    "codegen.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from cyclesample.plans import Plan\n"
        "def generate() -> None: ...\n"
    ),
    "leaf.py": "from cyclesample import base\n",
}


def test_lazy_and_type_checking_imports_make_cycles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "cyclesample"
    package.mkdir()
    for name, source in SAMPLE_MODULES.items():
        (package / name).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = import_cycles(import_graph("cyclesample"))
    assert cycles == [
        ["cyclesample.base", "cyclesample.top"],
        ["cyclesample.codegen", "cyclesample.plans"],
    ]
