"""The student edition: every chapter without its solutions, a stub cell after each code/predict exercise, and its HTML.

Usage: python tools/student_edition.py [--out DIR] [--no-html]

Writes DIR (default _build/student) as a Jupyter Book of its own: book/<slug>.md (MyST) and
book/<slug>.ipynb for every chapter of _toc.yml, with everything from each `{solution-start}` to
its `{solution-end}` removed and, after every exercise of class `code` or `predict`, one code cell
`# your code here`. The notebooks keep the stored outputs of the cells that remain (the book's
glued numbers live there), so the edition builds without executing anything; then
`jupyter-book build DIR -W -n --keep-going` writes DIR/_build/html. Exits 1 with one line when a
chapter breaks the exercise conventions (CONTRIBUTING.md) or the build fails.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
DEFAULT_OUT = ROOT / "_build" / "student"
STUB = "# your code here"
KINDS = ("pencil", "predict", "code")
STUB_KINDS = ("code", "predict")
# A MyST directive opens with 3+ backticks or colons and {name}; it closes with a line of the same
# character at least as long (CommonMark's rule, which lets ```` hold ``` code cells inside).
DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<argument>.*?)[ \t]*$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)[ \t]*$")
SOLUTION_DIRECTIVES = ("solution", "solution-start", "solution-end")
EDITION_FILES = ("_toc.yml", "book/references.bib")

sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402  (one reading of _toc.yml for the project)


class ConventionError(ValueError):
    """A chapter's exercises or solutions do not follow CONTRIBUTING.md."""


@dataclasses.dataclass
class Directive:
    """One MyST directive of a chapter's text: lines [start, end] inclusive, 0-based."""

    name: str
    argument: str
    options: dict
    start: int
    end: int
    body: str


@dataclasses.dataclass
class Solution:
    """A gated solution: from its solution-start line to the closing fence of its solution-end."""

    label: str
    options: dict
    start: int
    end: int
    text: str  # everything between the two directives: prose and code cells


def closing_line(lines: list[str], opening: int, fence: str) -> int:
    for index in range(opening + 1, len(lines)):
        stripped = lines[index].strip()
        if len(stripped) >= len(fence) and set(stripped) == {fence[0]}:
            return index
    raise ConventionError(f"line {opening + 1}: {fence}{{...}} is never closed")


def directives(text: str) -> list[Directive]:
    """Every top-level directive of a MyST text, in order (directives nested in another are skipped)."""
    lines = text.splitlines()
    found, index = [], 0
    while index < len(lines):
        match = DIRECTIVE.match(lines[index])
        if not match:
            index += 1
            continue
        end = closing_line(lines, index, match["fence"])
        options, body_start = {}, index + 1
        while body_start < end and (option := OPTION.match(lines[body_start])):
            options[option["key"]] = option["value"]
            body_start += 1
        found.append(Directive(match["name"], match["argument"], options, index, end,
                               "\n".join(lines[body_start:end]).strip()))
        index = end + 1
    return found


def parse(text: str) -> tuple[list[Directive], list[Solution]]:
    """The exercises and gated solutions of a chapter; ConventionError for a solution form it cannot strip."""
    lines = text.splitlines()
    exercises, solutions, open_solution = [], [], None
    for directive in directives(text):
        where = f"line {directive.start + 1}"
        if directive.name == "exercise":
            if open_solution:
                raise ConventionError(f"{where}: exercise inside the solution to {open_solution.argument}")
            exercises.append(directive)
        elif directive.name == "solution":
            raise ConventionError(f"{where}: use the gated {{solution-start}} ... {{solution-end}} form")
        elif directive.name == "solution-start":
            if open_solution:
                raise ConventionError(f"{where}: solution-start before the solution-end of {open_solution.argument}")
            open_solution = directive
        elif directive.name == "solution-end":
            if not open_solution:
                raise ConventionError(f"{where}: solution-end without a solution-start")
            solutions.append(Solution(open_solution.argument, open_solution.options, open_solution.start,
                                      directive.end,
                                      "\n".join(lines[open_solution.end + 1:directive.start]).strip()))
            open_solution = None
        elif directive.name.startswith(("exercise-", "solution")):
            raise ConventionError(f"{where}: {{{directive.name}}} is not one of the conventions' directives")
    if open_solution:
        raise ConventionError(f"line {open_solution.start + 1}: solution-start of {open_solution.argument} "
                              "has no solution-end")
    return exercises, solutions


def student_text(text: str) -> str:
    """The chapter's MyST text with every solution removed and a stub cell after code/predict exercises."""
    exercises, solutions = parse(text)
    lines = text.splitlines()
    removed = set()
    for solution in solutions:
        end = solution.end
        # The blank lines after a solution go with it when a blank line precedes it, so that
        # the seam is one blank line (code cells elsewhere keep their own blank lines).
        while solution.start > 0 and not lines[solution.start - 1].strip() and end + 1 < len(lines) \
                and not lines[end + 1].strip():
            end += 1
        removed.update(range(solution.start, end + 1))
    stub_after = {exercise.end for exercise in exercises if exercise.options.get("class") in STUB_KINDS}
    kept: list[str] = []
    for index, line in enumerate(lines):
        if index in removed:
            continue
        kept.append(line)
        if index in stub_after:
            kept += ["", "```{code-cell} ipython3", STUB, "```"]
    return "\n".join(kept).rstrip("\n") + "\n"


def with_stored_outputs(student: nbformat.NotebookNode, stored: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give each remaining code cell the outputs of the stored cell with the same source, in order.

    Matched by exact source only (not jupytext's positional fallback), so a stub never inherits the
    outputs of the solution cell it replaces.
    """
    notebook = copy.deepcopy(student)
    stored_code = [cell for cell in stored.cells if cell.cell_type == "code"]
    position = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for index in range(position, len(stored_code)):
            if stored_code[index].source == cell.source:
                cell.outputs = copy.deepcopy(stored_code[index].outputs)
                cell.execution_count = stored_code[index].execution_count
                position = index + 1
                break
        else:
            cell.outputs, cell.execution_count = [], None
    metadata = copy.deepcopy(stored.metadata)
    metadata.pop("papermill", None)
    metadata["jupytext"] = copy.deepcopy(student.metadata.get("jupytext", {}))
    notebook.metadata = metadata
    return notebook


def write_chapter(slug: str, book_out: Path) -> None:
    try:
        text = student_text((BOOK / f"{slug}.md").read_text())
    except ConventionError as error:
        raise ConventionError(f"book/{slug}.md: {error}") from None
    (book_out / f"{slug}.md").write_text(text)
    student = jupytext.reads(text, fmt="md:myst")
    stored = nbformat.read(BOOK / f"{slug}.ipynb", as_version=4)
    nbformat.write(with_stored_outputs(student, stored), book_out / f"{slug}.ipynb")


def write_sources(out: Path = DEFAULT_OUT) -> list[str]:
    """Write the edition's book (chapters, configuration, extensions) into `out`; the chapter slugs."""
    slugs = execute_book.toc_chapters()
    book_out = out / "book"
    if book_out.exists():
        shutil.rmtree(book_out)
    book_out.mkdir(parents=True)
    for slug in slugs:
        write_chapter(slug, book_out)
    for name in EDITION_FILES:
        shutil.copyfile(ROOT / name, out / name)
    shutil.copytree(BOOK / "_ext", book_out / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = f"{config['title']} (student edition)"
    (out / "_config.yml").write_text("# Generated by tools/student_edition.py from the book's _config.yml.\n"
                                     + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return slugs


def build_html(out: Path = DEFAULT_OUT) -> None:
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(out), "-W", "-n", "--keep-going"]
    completed = subprocess.run(command, cwd=out, capture_output=True, text=True)
    if completed.returncode:
        problems = [line for line in (completed.stdout + completed.stderr).splitlines()
                    if "WARNING" in line or "ERROR" in line or "Error" in line]
        detail = problems[0] if problems else (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"jupyter-book build of {out} failed: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: _build/student)")
    parser.add_argument("--no-html", action="store_true", help="write the notebooks and MyST text only")
    arguments = parser.parse_args(argv)
    out = arguments.out.resolve()
    if out == ROOT or ROOT.is_relative_to(out) or out == BOOK or out.is_relative_to(BOOK):
        print(f"student_edition: refusing to write into {out}: choose a folder outside book/", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        slugs = write_sources(out)
        print(f"{len(slugs)} chapters without solutions in {out / 'book'} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        if not arguments.no_html:
            start = time.perf_counter()
            build_html(out)
            print(f"HTML in {out / '_build' / 'html'} ({time.perf_counter() - start:.1f} s)")
    except (ConventionError, RuntimeError, OSError) as error:
        print(f"student_edition: {' '.join(str(error).split())[:400]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
