"""The README's Layout tree names every folder of the repository, and only those."""

from __future__ import annotations

import re
import subprocess

from gateway.core.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def _layout_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```\n(.*?)```", section, re.S)
    assert match is not None, "the Layout section has no tree"
    return match.group(1)


def readme_folders() -> set[str]:
    """Folders the tree names: the first word of a line, when it ends with '/'."""
    folders: set[str] = set()
    for line in _layout_block().splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if first.endswith("/") and not line.startswith(" "):
            folders.add(first.rstrip("/"))
    return folders


def tracked_folders() -> set[str]:
    """Every folder that holds a file in git (the repository root excluded)."""
    listing = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    folders: set[str] = set()
    for path in listing:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return folders


def test_the_layout_tree_matches_git_ls_files() -> None:
    named, tracked = readme_folders(), tracked_folders()
    assert sorted(named - tracked) == [], "the README names folders that are not in git"
    assert sorted(tracked - named) == [], "folders in git that the README's tree does not name"
