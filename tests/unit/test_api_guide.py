"""docs/api.md keeps up with the code: its error table names every `extensions.code`, and
the code generation config it shows is the one examples/apollo runs."""

from __future__ import annotations

import re
from typing import Final

from gateway.core.errors import ErrorCode
from gateway.core.settings import PROJECT_ROOT

GUIDE: Final = PROJECT_ROOT / "docs" / "api.md"
CODEGEN: Final = PROJECT_ROOT / "examples" / "apollo" / "codegen.ts"


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_error_table_names_every_code() -> None:
    errors = _section(GUIDE.read_text(encoding="utf-8"), "Errors")
    tabled = set(re.findall(r"^\| `([A-Z_]+)`", errors, re.MULTILINE))
    assert tabled == {code.value for code in ErrorCode}


def test_the_shown_codegen_config_is_the_examples() -> None:
    section = _section(GUIDE.read_text(encoding="utf-8"), "Code generation and Apollo Client")
    shown = re.findall(r"^```ts\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert CODEGEN.read_text(encoding="utf-8") in shown
