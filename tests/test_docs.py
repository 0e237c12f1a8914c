"""The commands the README and docs/ quote still work as written.

Every `python SCRIPT.py ...` or `python -m PACKAGE.MODULE ...` line quoted in README.md or
docs/*.md (a continued line joined to the next) must name a script or module that exists and
answers --help, and every --option it types must be one that script's --help lists. So moving a
file, or renaming or dropping an option, fails here until the docs follow.
"""

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
DOCS = [TOP / "README.md", *sorted((TOP / "docs").glob("*.md"))]
# python, python3.11 or .venv/bin/python, then a script or -m and a module
COMMAND = re.compile(r"(?:\S*/)?python[0-9.]*\s+(-m\s+[\w.]+|[\w/]+\.py)([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def quoted_commands():
    """[(doc name, line number, target, options)] of every python command in the docs."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            k = number
            while line.rstrip().endswith("\\") and k < len(lines):   # a continued command
                line = line.rstrip()[:-1] + " " + lines[k]
                k += 1
            for match in COMMAND.finditer(line):
                target, rest = match.group(1), match.group(2).split("#")[0]
                found.append((doc.name, number, target, tuple(OPTION.findall(rest))))
    return found


COMMANDS = quoted_commands()


@cache
def help_text(target):
    """What `python TARGET --help` prints, run from the top level as the docs say."""
    argv = ([sys.executable, *target.split()] if target.startswith("-m") else
            [sys.executable, target])
    proc = subprocess.run([*argv, "--help"], cwd=TOP, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} --help failed: {proc.stderr[-2000:]}"
    return proc.stdout


def test_the_docs_quote_commands():
    assert len(COMMANDS) > 30, COMMANDS                        # the pattern finds them
    targets = {target for _, _, target, _ in COMMANDS}
    assert {"chain.py", "oracle.py", "train_input.py", "-m lab.bench"} <= targets, targets


@pytest.mark.parametrize("doc, line, target, options", COMMANDS,
                         ids=[f"{d}:{n}" for d, n, _, _ in COMMANDS])
def test_a_quoted_command_runs_as_written(doc, line, target, options):
    if not target.startswith("-m"):
        assert (TOP / target).is_file(), f"{doc}:{line}: no {target} at the top level"
    text = help_text(target)
    unknown = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}\b", text)]
    assert not unknown, f"{doc}:{line}: {target} has no {', '.join(unknown)} (its --help)"
