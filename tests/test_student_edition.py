"""The student edition holds no solution, a stub after every code/predict exercise, and its notebooks still run."""

import ast
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402
import student_edition  # noqa: E402

CHAPTERS = execute_book.toc_chapters()
# Values that make a chapter quick to run, used for the names its parameters cell defines. A chapter
# whose checks need more (an assert on a trained result) gets its own values here.
SMALL_PARAMETERS = {"epochs": 1, "cnn_epochs": 1, "mlp_epochs": 1, "num_seeds": 2}
MINIMUM_LENGTH = 12  # shorter solution lines ("```", "import numpy as np") are not distinctive
GLUE_KEY = re.compile(r"""glue\(\s*f?["']([\w{}]+)["']""")


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert student_edition.write_sources(out) == CHAPTERS
    return out / "book"


def solution_lines(text: str) -> set[str]:
    """Stripped lines of the chapter's solutions that appear nowhere else in the chapter."""
    _, solutions = student_edition.parse(text)
    inside = {line.strip() for solution in solutions for line in solution.text.splitlines()}
    lines = text.splitlines()
    in_solution = set()
    for solution in solutions:
        in_solution.update(range(solution.start, solution.end + 1))
    outside = {line.strip() for index, line in enumerate(lines) if index not in in_solution}
    return {line for line in inside - outside if len(line) >= MINIMUM_LENGTH}


def notebook_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(parts)


@pytest.mark.parametrize("slug", CHAPTERS)
def test_no_solution_text_is_left(edition, slug):
    original = (BOOK / f"{slug}.md").read_text()
    markdown = (edition / f"{slug}.md").read_text()
    notebook = nbformat.read(edition / f"{slug}.ipynb", as_version=4)
    everything = markdown + "\n" + notebook_text(notebook)
    assert not re.search(r"\{solution", everything), f"{slug}: a solution directive is left"
    leaked = sorted(line for line in solution_lines(original) if line in everything)
    assert leaked == [], f"{slug}: solution text left in the student edition: {leaked[:5]}"
    _, solutions = student_edition.parse(original)
    keys = {key for solution in solutions for key in GLUE_KEY.findall(solution.text)}
    assert not [key for key in keys if key in everything], f"{slug}: keys glued by a solution are left: {keys}"


@pytest.mark.parametrize("slug", CHAPTERS)
def test_stub_cell_after_each_code_and_predict_exercise(edition, slug):
    exercises, _ = student_edition.parse((BOOK / f"{slug}.md").read_text())
    found = student_edition.directives((edition / f"{slug}.md").read_text())
    for index, directive in enumerate(found):
        if directive.name != "exercise":
            continue
        label, kind = directive.options["label"], directive.options["class"]
        following = found[index + 1] if index + 1 < len(found) else None
        has_stub = following is not None and following.name == "code-cell" and following.body == student_edition.STUB
        wanted = kind in student_edition.STUB_KINDS
        assert has_stub == wanted, f"{slug}: {label} ({kind}) {'lacks' if wanted else 'has'} a stub cell after it"
    assert len([d for d in found if d.name == "exercise"]) == len(exercises), f"{slug}: exercises lost"
    notebook = nbformat.read(edition / f"{slug}.ipynb", as_version=4)
    stubs = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source == student_edition.STUB]
    wanted_stubs = [e for e in exercises if e.options["class"] in student_edition.STUB_KINDS]
    assert len(stubs) == len(wanted_stubs), f"{slug}: {len(stubs)} stub cells for {len(wanted_stubs)} exercises"
    assert all(cell.outputs == [] for cell in stubs), f"{slug}: a stub cell carries outputs"


@pytest.mark.parametrize("slug", CHAPTERS)
def test_the_chapter_cells_keep_their_stored_outputs(edition, slug):
    stored = nbformat.read(BOOK / f"{slug}.ipynb", as_version=4)
    student = nbformat.read(edition / f"{slug}.ipynb", as_version=4)
    kept = [cell for cell in student.cells if cell.cell_type == "code" and cell.source != student_edition.STUB]
    _, solutions = student_edition.parse((BOOK / f"{slug}.md").read_text())
    solution_cells = sum(len(re.findall(r"^`{3,}\{code-cell\}", solution.text, re.MULTILINE)) for solution in solutions)
    stored_code = [cell for cell in stored.cells if cell.cell_type == "code"]
    assert len(kept) == len(stored_code) - solution_cells, f"{slug}: code cells lost or gained"
    by_source = {cell.source: cell.outputs for cell in stored_code}
    for cell in kept:
        assert cell.outputs == by_source[cell.source], f"{slug}: outputs differ for cell {cell.source[:60]!r}"
    # The edition's .md and .ipynb are a Jupytext pair, as in the book.
    paired = jupytext.read(edition / f"{slug}.md")
    assert [c.source for c in paired.cells] == [c.source for c in student.cells]


def small_parameters(notebook) -> dict:
    cell = next((cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    defined = {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
               for target in node.targets if isinstance(target, ast.Name)}
    return {name: value for name, value in SMALL_PARAMETERS.items() if name in defined}


def execute(edition: Path, slug: str, out: Path) -> str | None:
    """Run one student notebook with small parameters; None, or the one-line reason it failed."""
    import papermill

    source = edition / f"{slug}.ipynb"
    parameters = small_parameters(nbformat.read(source, as_version=4))
    try:
        # Beside the other student notebooks: the summary reads their glued values.
        papermill.execute_notebook(str(source), str(out / f"{slug}.ipynb"), parameters=parameters,
                                   cwd=str(edition), kernel_name=execute_book.KERNEL, progress_bar=False,
                                   log_output=False)
    except Exception as error:  # reported per chapter below
        return f"{type(error).__name__}: {' '.join(str(error).split())[-600:]}"
    executed = nbformat.read(out / f"{slug}.ipynb", as_version=4)
    stubs = [cell for cell in executed.cells if cell.cell_type == "code" and cell.source == student_edition.STUB]
    if not all(cell.execution_count for cell in stubs):
        return "a stub cell did not run"
    return None


# Chapters without exercises are the book's own notebooks (checked next), which nbval runs already.
WITH_EXERCISES = [slug for slug in CHAPTERS if student_edition.parse((BOOK / f"{slug}.md").read_text())[0]]


@pytest.fixture(scope="module")
def executions(edition, tmp_path_factory) -> dict:
    """Every student notebook with exercises, run with small parameters, two at a time (two cores)."""
    out = tmp_path_factory.mktemp("executed")
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Later chapters run longer: starting them first keeps both workers busy to the end.
        futures = {slug: pool.submit(execute, edition, slug, out) for slug in reversed(WITH_EXERCISES)}
        return {slug: future.result() for slug, future in futures.items()}


@pytest.mark.parametrize("slug", [slug for slug in CHAPTERS if slug not in WITH_EXERCISES])
def test_chapters_without_exercises_are_the_books_own(edition, slug):
    stored = nbformat.read(BOOK / f"{slug}.ipynb", as_version=4)
    student = nbformat.read(edition / f"{slug}.ipynb", as_version=4)
    assert [(c.cell_type, c.source, c.get("outputs")) for c in student.cells] == [
        (c.cell_type, c.source, c.get("outputs")) for c in stored.cells]


@pytest.mark.parametrize("slug", WITH_EXERCISES)
def test_student_notebook_executes(executions, slug):
    assert executions[slug] is None, f"student edition of {slug}, run with {SMALL_PARAMETERS}: {executions[slug]}"


def test_student_edition_builds_with_warnings_as_errors(edition):
    # A {ref} or glue key that only a solution provided would be a warning here.
    student_edition.build_html(edition.parent)
    html = edition.parent / "_build" / "html"
    pages = {slug: (html / "book" / f"{slug}.html").read_text() for slug in WITH_EXERCISES}
    assert all('class="exercise ' in page and 'class="solution ' not in page for page in pages.values())
