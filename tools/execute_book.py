"""Refresh every chapter's stored outputs: .md -> .ipynb inputs, papermill in place, pair synced again.

Usage: python tools/execute_book.py [CHAPTER ...]   (slugs such as `likelihood`, or book/<slug>.md/.ipynb;
default: every chapter of _toc.yml in order). Prints each chapter's execution time; exits 1 with one
line on the first failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
KERNEL = "python3"


def toc_docnames(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every page of _toc.yml in reading order (root first, parts flattened), as docnames without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return [str(Path(file).with_suffix("")) if Path(file).suffix in (".md", ".ipynb") else file for file in files]


def toc_chapters(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Chapter slugs (`likelihood`, ...) in _toc.yml order."""
    return [Path(name).name for name in toc_docnames(toc_path)]


def slug_of(argument: str) -> str:
    return Path(argument).stem


def jupytext(*arguments: str) -> None:
    completed = subprocess.run([sys.executable, "-m", "jupytext", "--quiet", *arguments], cwd=ROOT,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        message = (completed.stderr.strip() or completed.stdout.strip() or "jupytext failed").splitlines()[-1]
        raise RuntimeError(f"jupytext {' '.join(arguments)}: {message}")


# What a stored notebook's metadata may hold: readers download these files, so nothing of the run that
# made them (papermill writes input_path/output_path, absolute paths of this machine, and timings).
NOTEBOOK_METADATA = ("jupytext", "kernelspec", "language_info")
CELL_METADATA = ("tags", "mystnb")


def strip_run_metadata(path: Path) -> None:
    """Drop every notebook and cell metadata key but those readers need (also keeps git diffs to real changes)."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        # papermill also gives every cell an empty `tags` list, which the .md does not have.
        for key in [key for key in cell.metadata if key not in CELL_METADATA or not cell.metadata[key]]:
            del cell.metadata[key]
    for key in [key for key in notebook.metadata if key not in NOTEBOOK_METADATA]:
        del notebook.metadata[key]
    nbformat.write(notebook, path)


def take_cell_metadata_from(source: Path, notebook_path: Path) -> None:
    # jupytext --update keeps a matched old cell's metadata over the .md's (a new cell inserted before an
    # old one inherited its tags): the .md's cell metadata, like its sources, is what counts.
    import jupytext as jupytext_module

    text = jupytext_module.read(source)
    notebook = nbformat.read(notebook_path, as_version=4)
    if [cell.source for cell in text.cells] != [cell.source for cell in notebook.cells]:
        raise RuntimeError(f"{notebook_path.name}: cells differ from {source.name} after jupytext --update")
    for written, cell in zip(notebook.cells, text.cells):
        written.metadata = nbformat.from_dict({key: value for key, value in cell.metadata.items() if value})
    nbformat.write(notebook, notebook_path)


def execute_chapter(slug: str) -> float:
    """Sync inputs from the .md, run the .ipynb in place with default parameters, sync back; seconds taken."""
    import papermill

    source, notebook = BOOK / f"{slug}.md", BOOK / f"{slug}.ipynb"
    if not source.exists():
        raise RuntimeError(f"{source.relative_to(ROOT)} does not exist")
    # The .md is what authors edit: it overwrites the notebook's inputs, outputs are kept.
    if notebook.exists():
        jupytext("--to", "ipynb", "--update", str(source.relative_to(ROOT)))
        take_cell_metadata_from(source, notebook)
    else:
        jupytext("--to", "ipynb", str(source.relative_to(ROOT)))
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(notebook), cwd=str(BOOK), kernel_name=KERNEL,
                               progress_bar=False, log_output=False)
    seconds = time.perf_counter() - start
    strip_run_metadata(notebook)
    jupytext("--sync", str(notebook.relative_to(ROOT)))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter slugs or paths (default: all of _toc.yml)")
    arguments = parser.parse_args(argv)
    known = toc_chapters()
    slugs = [slug_of(argument) for argument in arguments.chapters] or known
    unknown = [slug for slug in slugs if slug not in known]
    if unknown:
        print(f"execute_book: not in _toc.yml: {', '.join(unknown)} (chapters: {', '.join(known)})",
              file=sys.stderr)
        return 2
    total = 0.0
    for slug in slugs:
        try:
            seconds = execute_chapter(slug)
        except Exception as error:  # one line per failure, not a traceback
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            if type(error).__name__ == "PapermillExecutionError":
                detail = f"{error.ename}: {' '.join(str(error.evalue).split())[:300]}"
            print(f"execute_book: {slug} failed: {detail}", file=sys.stderr)
            return 1
        total += seconds
        print(f"{slug:<16} {seconds:6.1f} s", flush=True)
    print(f"{'total':<16} {total:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
