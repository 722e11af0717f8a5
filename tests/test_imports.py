"""The core's modules import in one direction: engine -> state -> deadlines, never back."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "streams" / "core"


def imported_modules(path: Path) -> set[str]:
    """Every module imported anywhere in ``path``, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_state_and_deadlines_do_not_import_the_engine():
    for name in ("state.py", "deadlines.py", "timeutil.py"):
        mods = imported_modules(CORE / name)
        assert not any(m == "streams.core.engine" or m.startswith("streams.core.task") for m in mods), (name, mods)
    assert "streams.core.state" not in imported_modules(CORE / "deadlines.py")
