"""The sweep and papermill commands the chapters show name real chapters and real parameters."""

import re
import shlex
from pathlib import Path

import pytest

from mnistlab import sweep

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CONSOLE = re.compile(r"^```console\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def commands():
    """(chapter, command words) of every `$ ...` line of a console block, continuation lines joined."""
    found = []
    for path in sorted(BOOK.glob("*.md")):
        for block in CONSOLE.finditer(path.read_text()):
            text = re.sub(r"\\\n\s*", " ", block["body"])
            for line in text.splitlines():
                if line.startswith("$ "):
                    words = shlex.split(line[2:], comments=True)
                    if words[:4] == ["python", "-m", "mnistlab", "sweep"] or words[:1] == ["papermill"]:
                        found.append((path.stem, words))
    return found


COMMANDS = commands()


def test_the_book_shows_sweep_commands():
    assert any(words[:4] == ["python", "-m", "mnistlab", "sweep"] for _, words in COMMANDS)


@pytest.mark.parametrize("chapter, words", COMMANDS, ids=[" ".join(w[:6]) for _, w in COMMANDS])
def test_command_names_parameters_of_its_notebook(chapter, words):
    if words[0] == "papermill":  # run from book/: papermill IN OUT -p NAME VALUE ...
        notebook, rest = BOOK / words[1], words[3:]
        grid = {}
        while rest:
            assert rest[0] in ("-p", "--parameters") and len(rest) >= 3, f"{chapter}: {' '.join(words)}"
            grid[rest[1]] = [rest[2]]
            rest = rest[3:]
        sweep.check_parameters(str(notebook), grid)
        return
    arguments = sweep._parser().parse_args(words[4:])  # the command line's own parser
    notebook = ROOT / arguments.notebook
    grid = sweep._grid_from_arguments(arguments.parameter)
    sweep.check_parameters(str(notebook), grid, arguments.seeds)  # raises ValueError if not
