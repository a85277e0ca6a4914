"""`school-gateway --version` prints the installed package's version and exits 0."""

from __future__ import annotations

import re
import tomllib

import pytest

from gateway.cli.main import main
from gateway.core.settings import PROJECT_ROOT


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    printed = capsys.readouterr().out.strip()
    assert printed == f"school-gateway {declared}"
    assert re.fullmatch(r"school-gateway \d+\.\d+\.\d+", printed)
