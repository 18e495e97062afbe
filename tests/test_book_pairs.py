"""Every chapter of _toc.yml is a Jupytext pair in sync, with one `parameters` cell where it runs experiments."""

import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
# Chapters that run no experiment: they may have code, but need no parameters cell.
PROSE_CHAPTERS = {"intro", "summary"}
# The chapters the execute tool runs are the chapters checked here: one reading of _toc.yml.
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402

CHAPTERS = execute_book.toc_chapters()


def cells_of(notebook):
    """What a reader edits: cell type, source and tags (outputs and run metadata don't count)."""
    return [(cell.cell_type, cell.source.strip(), sorted(cell.metadata.get("tags", [])))
            for cell in notebook.cells]


def test_toc_lists_the_book_chapters():
    assert CHAPTERS[0] == "intro" and CHAPTERS[-1] == "summary"
    # Every chapter in book/ is in the book, and nothing else (a count would break with each new chapter).
    assert set(CHAPTERS) == {path.stem for path in BOOK.glob("*.md")}
    assert len(CHAPTERS) == len(set(CHAPTERS)), "a chapter is listed twice in _toc.yml"


def test_readme_chapter_table_follows_the_toc_and_the_titles():
    import re

    rows = re.findall(r"^\| `book/(\w+)` \| (.+?) \|$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert [slug for slug, _ in rows] == CHAPTERS, "README's chapter table is not _toc.yml's order"
    for slug, title in rows:
        heading = re.search(r"^# (.+)$", (BOOK / f"{slug}.md").read_text(), re.MULTILINE).group(1).strip()
        assert title == heading, f"README calls {slug} {title!r}; its heading is {heading!r}"


@pytest.mark.parametrize("slug", CHAPTERS)
def test_pair_exists_and_agrees(slug):
    markdown, notebook = BOOK / f"{slug}.md", BOOK / f"{slug}.ipynb"
    assert markdown.exists(), f"{markdown.relative_to(ROOT)} is missing"
    assert notebook.exists(), f"{notebook.relative_to(ROOT)} is missing"
    from_markdown = jupytext.read(markdown)
    from_notebook = jupytext.read(notebook)
    formats = from_markdown.metadata.get("jupytext", {}).get("formats", "")
    assert set(formats.split(",")) == {"ipynb", "md:myst"}, f"{slug}.md pairs formats {formats!r}"
    assert from_markdown.metadata["kernelspec"]["name"] == "python3"
    left, right = cells_of(from_markdown), cells_of(from_notebook)
    assert len(left) == len(right), f"{slug}: {len(left)} cells in the .md, {len(right)} in the .ipynb"
    for index, (a, b) in enumerate(zip(left, right)):
        assert a == b, f"{slug}: cell {index} differs between .md and .ipynb; run jupytext --sync book/{slug}.md"


@pytest.mark.parametrize("slug", CHAPTERS)
def test_parameters_cell(slug):
    notebook = jupytext.read(BOOK / f"{slug}.md")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    tagged = [index for index, cell in enumerate(code) if "parameters" in cell.metadata.get("tags", [])]
    if slug in PROSE_CHAPTERS:
        assert len(tagged) <= 1, f"{slug}: {len(tagged)} cells tagged parameters"
        return
    assert len(tagged) == 1, f"{slug}: {len(tagged)} code cells tagged parameters, need exactly one"
    # Cell 0 is the Colab install cell (tools/colab_cell.py; checked in test_launch.py).
    assert tagged[0] <= 2, f"{slug}: the parameters cell must follow the Colab cell, or it and the imports cell"


def test_execute_book_rejects_an_unknown_chapter(capsys):
    assert execute_book.main(["no_such_chapter"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no_such_chapter" in error
