"""The runnable examples of a Markdown document (README.md, docs/api.md), as a reader runs them.

A document's ```sh blocks run verbatim, in order, in one bash session (variables set in one
block are seen by the next, as in a reader's terminal); its ```python blocks run at their
place with the project's Python, seeing what the shell exported. The only change is the
address: `127.0.0.1:8000` becomes the test server's. A block right after a line
`<!-- not run: why -->` is left out. A ```json block right after a runnable block (only blank
lines between) is what that block prints: a sequence of JSON documents, compared with the
block's output with volatile values (times, cursors, secrets) masked.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

RUNNABLE: Final = ("sh", "python")
DOC_ADDRESS: Final = "127.0.0.1:8000"
# Values that differ from run to run; their keys must be present, their values are not compared.
VOLATILE_KEYS: Final = frozenset(
    {
        "at",
        "refreshedAt",
        "lastUpdatedAt",
        "createdAt",
        "updatedAt",
        "lastAt",
        "cursor",
        "access_token",
        "refresh_token",
        "client_id",
        "client_secret",
        "expires_in",
        "refreshDurationMs",
    }
)
_FENCE: Final = re.compile(r"^```(\w*)\s*$")
_NOT_RUN: Final = re.compile(r"^<!-- not run: (.+) -->$")
_MARKER: Final = "@@doc-example {}@@"


@dataclass(frozen=True, slots=True)
class Example:
    """One fenced block of a document: where it starts, what it is, what it should print."""

    line: int
    language: str
    code: str
    not_run: str | None = None
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class _Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    before: str  # the last non-blank line before the block
    follows_block: bool  # only blank lines since the previous block's closing fence


def examples(markdown: str) -> list[Example]:
    """Every ```sh and ```python block of `markdown`, with its expected output if shown."""
    blocks = list(_fenced_blocks(markdown.splitlines()))
    found: list[Example] = []
    for index, block in enumerate(blocks):
        if block.language not in RUNNABLE:
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = None
        if following is not None and following.language == "json" and following.follows_block:
            expected = following.code
        not_run = _NOT_RUN.match(block.before)
        found.append(
            Example(
                block.line, block.language, block.code, not_run[1] if not_run else None, expected
            )
        )
    return found


def _fenced_blocks(lines: list[str]) -> Iterator[_Block]:
    index, before, follows_block = 0, "", False
    while index < len(lines):
        opened = _FENCE.match(lines[index])
        if opened is None:
            if lines[index].strip():
                before, follows_block = lines[index].strip(), False
            index += 1
            continue
        start, body = index, []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        yield _Block(start + 1, opened[1], "\n".join(body) + "\n", before, follows_block)
        before, follows_block = "", True
        index += 1


def script(runnable: list[Example], port: int, python: str) -> str:
    """One bash script running `runnable` in order, a marker line before each block."""
    address = f"127.0.0.1:{port}"
    parts = ["set -euo pipefail"]
    for number, example in enumerate(runnable):
        code = example.code.replace(DOC_ADDRESS, address)
        parts.append(f"printf '\\n{_MARKER.format(number)}\\n'")
        if example.language == "python":
            parts.append(f"{python} - <<'DOC_EXAMPLE_PY'\n{code}DOC_EXAMPLE_PY")
        else:
            parts.append(code)
    return "\n".join(parts) + "\n"


def run(
    runnable: list[Example], *, port: int, python: str, cwd: Path, env: dict[str, str]
) -> list[str]:
    """The stdout of each block of `runnable`, run as one bash session."""
    completed = subprocess.run(
        ["bash", "-c", script(runnable, port, python)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    outputs = _split(completed.stdout, len(runnable))
    failed_at = len(outputs) - 1
    assert completed.returncode == 0, (
        f"example at line {runnable[failed_at].line} failed ({completed.returncode}):\n"
        f"{runnable[failed_at].code}\nstdout: {outputs[-1]}\nstderr: {completed.stderr}"
    )
    assert len(outputs) == len(runnable)
    return outputs


def _split(stdout: str, count: int) -> list[str]:
    outputs: list[str] = []
    rest = stdout
    for number in range(count):
        head, found, rest = rest.partition(f"\n{_MARKER.format(number)}\n")
        if not found:
            break
        if number:
            outputs.append(head)
    outputs.append(rest)
    return outputs[:count] if len(outputs) >= count else outputs


def documents(text: str) -> list[Any]:
    """The JSON documents `text` holds one after another (whitespace between)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


def masked(value: Any) -> Any:
    """`value` with the values of VOLATILE_KEYS replaced (the keys kept)."""
    if isinstance(value, dict):
        return {
            key: "<volatile>" if key in VOLATILE_KEYS else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value
