"""The examples of README.md and docs/api.md run as a reader runs them, against the demo.

One `school-gateway demo` (its embedded database in a temporary data folder, seeded for
2026-11-27 like the documents' figures) serves them; see tests/support/doc_examples.py for
how a document becomes one shell session and how shown output is compared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest

from gateway.core.settings import PROJECT_ROOT
from tests.support.cli_process import COMMAND
from tests.support.doc_examples import Example, documents, examples, masked, run
from tests.support.serve_process import free_port, stop, wait_until_healthy

DEMO_TODAY: Final = "2026-11-27"
DEMO_START_TIMEOUT_S: Final = 240
GUIDES: Final = ("README.md", "docs/api.md")


@dataclass(frozen=True, slots=True)
class Demo:
    port: int
    data_dir: Path
    env: dict[str, str]  # what a reader's shell has: the demo's data folder, no other setting


def _clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SCHOOL_GATEWAY_", "OTEL_", "DATABASE_"))
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo-data")
    port = free_port()
    env = {**_clean_env(), "SCHOOL_GATEWAY_DATA_DIR": str(data_dir)}
    log_path = data_dir / "demo.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [COMMAND, "demo", "--port", str(port)],
        env={**env, "SCHOOL_GATEWAY_TODAY": DEMO_TODAY},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(process, port, ended=log_path.read_text, timeout=DEMO_START_TIMEOUT_S)
        yield Demo(port, data_dir, env)
    finally:
        stop(process, timeout=30)
        log.close()


def _runnable(guide: str) -> list[Example]:
    found = examples((PROJECT_ROOT / guide).read_text(encoding="utf-8"))
    return [example for example in found if example.not_run is None]


@pytest.mark.parametrize("guide", GUIDES)
def test_examples_run_and_print_what_the_guide_shows(demo: Demo, guide: str) -> None:
    runnable = _runnable(guide)
    outputs = run(runnable, port=demo.port, python=sys.executable, cwd=PROJECT_ROOT, env=demo.env)
    compared = 0
    for example, output in zip(runnable, outputs, strict=True):
        if example.expected is None:
            continue
        shown = masked(documents(example.expected))
        printed = masked(documents(output))
        assert printed == shown, f"{guide}, example at line {example.line}:\n{example.code}"
        compared += 1
    assert compared >= 1


@pytest.mark.parametrize("guide", GUIDES)
def test_every_left_out_example_says_why(guide: str) -> None:
    found = examples((PROJECT_ROOT / guide).read_text(encoding="utf-8"))
    assert found, f"{guide} has no sh or python example"
    for example in found:
        if example.not_run is not None:
            assert len(example.not_run) > 10, f"{guide}:{example.line}: say why it is not run"


APOLLO: Final = PROJECT_ROOT / "examples" / "apollo"
_APOLLO_QUERY: Final = re.compile(r"graphql\(`(.*?)`\)", re.DOTALL)


def _node_or_skip() -> None:
    if shutil.which("node") and shutil.which("npm"):
        return
    if os.environ.get("REQUIRE_NODE_TESTS") == "1":
        pytest.fail("REQUIRE_NODE_TESTS=1 but node/npm are not on PATH")
    pytest.skip("node and npm are needed for the Apollo Client example")


def test_the_apollo_example_prints_what_the_api_answers(demo: Demo) -> None:
    """examples/apollo/run (npm ci from the lock file, codegen, tsc --strict, node) prints
    the same data as the API gives for its query."""
    _node_or_skip()
    token = _dev_token(demo, "parent-two-schools")
    url = f"http://127.0.0.1:{demo.port}/graphql"
    variables = {"from": "2026-11-23", "to": "2026-11-27"}
    completed = subprocess.run(
        [str(APOLLO / "run")],
        env={
            **demo.env,
            "GRAPHQL_URL": url,
            "TOKEN": token,
            "FROM": variables["from"],
            "TO": variables["to"],
        },
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for step in ("==> codegen", "==> tsc --strict", "==> run"):
        assert step in completed.stderr
    printed = json.loads(completed.stdout)
    source = (APOLLO / "src" / "diary.ts").read_text(encoding="utf-8")
    query = _APOLLO_QUERY.search(source)
    assert query is not None
    answer = httpx.post(
        url,
        json={"query": query[1], "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert "errors" not in answer
    assert printed == answer["data"]
    lessons = [day["lessons"] for child in printed["myChildren"] for day in child["diary"]["days"]]
    assert sum(map(len, lessons)) > 10


def _dev_token(demo: Demo, account: str) -> str:
    completed = subprocess.run(
        [COMMAND, "dev-token", account],
        env={**demo.env, "SCHOOL_GATEWAY_DEV": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()
