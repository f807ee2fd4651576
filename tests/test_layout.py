"""docs/layout.md names every module of the repository's code, and only modules that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "docs" / "layout.md"
CODE_FOLDERS = ("verl_xrpo", "hydra_plugins", "benchmarks", "recipe", "scripts")


def documented_modules() -> set[str]:
    """Paths of the .py files in the layout's block: folders end in '/', two spaces a level."""
    block = LAYOUT.read_text().split("```\n")[1]
    folders: list[str] = []
    found = set()
    for line in block.splitlines():
        indent = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        folders = folders[:indent]
        if name.endswith("/"):
            folders.append(name)
        elif name.endswith(".py"):
            found.add("".join(folders) + name)
    return found


def repository_modules() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", *CODE_FOLDERS], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    # a package's __init__ is a module only where it holds code (a plugin package)
    return {
        path
        for path in listed
        if path.endswith(".py") and (not path.endswith("__init__.py") or (REPO / path).stat().st_size > 0)
    }


def test_the_layout_names_every_module_and_no_other():
    documented, present = documented_modules(), repository_modules()
    assert sorted(present - documented) == [], "modules missing from docs/layout.md"
    assert sorted(documented - present) == [], "docs/layout.md names modules that do not exist"


def test_the_layout_block_parses_as_a_tree():
    modules = documented_modules()
    assert "verl_xrpo/core/planner.py" in modules
    assert "recipe/xrpo/scale_model/train.py" in modules
    assert all(re.fullmatch(r"[\w/]+\.py", m) for m in modules)
