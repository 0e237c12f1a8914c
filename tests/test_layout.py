"""The floor plan of docs/files.md holds: each folder imports only from the floors below it,
the top level holds only the scripts a user runs, and no source file outgrows 500 lines."""

import ast
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
# Each module's floor (docs/files.md); a folder's files share its floor.
FLOORS = {"datasets": 0, "generate": 0, "synthgrad": 0, "sgd": 1, "parts": 2,
          "oracle": 3, "train_output": 3, "train_input": 3, "train_middle": 3, "dni": 3,
          "plot": 3, "runner": 4, "demo": 5, "chain": 5, "live": 5, "lab": 6}
SCRIPTS = {name for name in FLOORS if (TOP / f"{name}.py").is_file()}
DESIGN = {"generate", "sgd", "train_input", "train_output", "oracle", "synthgrad", "plot"}


def sources():
    """Every .py of the project outside tests/, relative to the top."""
    return sorted(p.relative_to(TOP) for p in TOP.rglob("*.py")
                  if p.parts[len(TOP.parts)] not in ("tests", ".venv", ".git"))


def floor_of(path):
    return FLOORS[path.parts[0] if len(path.parts) > 1 else path.stem]


def project_imports(path):
    """The project's top-level names (a script, or a folder) that a file imports, lazily too."""
    names = set()
    for node in ast.walk(ast.parse((TOP / path).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(FLOORS)


def test_every_source_file_has_a_floor():
    assert [p for p in sources() if (p.parts[0] if len(p.parts) > 1 else p.stem)
            not in FLOORS] == []


@pytest.mark.parametrize("path", sources(), ids=str)
def test_nothing_imports_a_floor_above_it(path):
    upward = {name for name in project_imports(path) if FLOORS[name] > floor_of(path)}
    assert not upward, f"{path} (floor {floor_of(path)}) imports {sorted(upward)} from above"


def test_the_top_level_holds_the_scripts_a_user_runs():
    top = {p.stem for p in TOP.glob("*.py")}
    assert DESIGN <= top and len(top) <= 12, sorted(top)
    assert top == SCRIPTS


@pytest.mark.parametrize("path", sources(), ids=str)
def test_no_source_file_is_over_500_lines(path):
    assert len((TOP / path).read_text().splitlines()) <= 500


def test_the_tutorial_stays_a_tutorial():
    """sgd.py is backprop to be read (issue 32): at most 300 lines, as network.py is ~150."""
    assert len((TOP / "sgd.py").read_text().splitlines()) <= 300
