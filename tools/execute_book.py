"""Refresh every chapter's stored outputs: .md -> .ipynb inputs, papermill in place, pair synced again.

Usage: python tools/execute_book.py [--jobs N] [CHAPTER ...]   (slugs such as `likelihood`, or
book/<slug>.md/.ipynb; default: every chapter of _toc.yml). Chapters run N at a time (default 2), each
in a process of its own, the long ones first (LONGEST_FIRST), then in _toc.yml order; a chapter that quotes another's stored outputs
(`other.ipynb::` in its text, as the summary does) starts when that one has finished. Prints each
chapter's execution time as it finishes and the wall time of the whole; exits 1 with one line per
failure (chapters already running finish, none starts after a failure).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
KERNEL = "python3"
# Chapters at a time: the CI machines have 2 cores, and each chapter's TensorFlow runs on one thread.
JOBS = 2
# Started first, longest first, so that the short chapters fill the gaps at the end instead of a
# long one starting last (chapter times measured 2026-11-29 on 2 cores, two at a time:
# what_went_wrong 60 s, validation 48 s, cnn 41 s, depth_l2 38 s, learning_speed 20 s, others 5-12 s;
# 184 s of wall time in _toc.yml order). what_went_wrong quotes depth_l2, so depth_l2 goes first.
LONGEST_FIRST = ("depth_l2", "validation", "what_went_wrong", "cnn", "learning_speed")


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
    # jupytext's command line in this process: a subprocess per call cost 1.7 s of start-up, two or three
    # times per chapter.
    from jupytext.cli import jupytext as jupytext_main

    messages = io.StringIO()
    try:
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
            code = jupytext_main(["--quiet", *arguments])
    except SystemExit as error:  # argparse and jupytext's own checks exit
        code = error.code
    except Exception as error:
        raise RuntimeError(f"jupytext {' '.join(arguments)}: {error}") from error
    if code:
        message = (messages.getvalue().strip() or "jupytext failed").splitlines()[-1]
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


def chapters_quoted(slug: str, among) -> set[str]:
    """The chapters among `among` whose stored outputs `slug`'s text quotes (`other.ipynb::key`)."""
    source = BOOK / f"{slug}.md"
    text = source.read_text() if source.exists() else ""
    return {name for name in re.findall(r"(\w+)\.ipynb::", text) if name in among and name != slug}


def _failure(slug: str, error: BaseException) -> str:
    detail = " ".join(str(error).split())[:300] or type(error).__name__
    if type(error).__name__ == "PapermillExecutionError":
        detail = f"{error.ename}: {' '.join(str(error.evalue).split())[:300]}"
    return f"execute_book: {slug} failed: {detail}"


def run_one(slug: str) -> int:
    """Execute one chapter in this process; prints its seconds (the line the parent reads) or one failure line."""
    try:
        seconds = execute_chapter(slug)
    except Exception as error:  # one line per failure, not a traceback
        print(_failure(slug, error), file=sys.stderr, flush=True)
        return 1
    print(f"{seconds:.3f}", flush=True)
    return 0


def run_all(slugs: list[str], jobs: int) -> int:
    """Every chapter in a process of its own, `jobs` at a time, each after the chapters it quotes."""
    waiting = {slug: chapters_quoted(slug, slugs) for slug in slugs}
    running: dict[str, subprocess.Popen] = {}
    done, failed, total = set(), [], 0.0
    start = time.perf_counter()
    while waiting or running:
        if not failed:
            for slug in [slug for slug, needs in waiting.items() if needs <= done][:max(0, jobs - len(running))]:
                del waiting[slug]
                running[slug] = subprocess.Popen([sys.executable, __file__, "--one", slug], cwd=ROOT,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        elif not running:
            break
        if not running:  # only chapters whose quoted chapters failed or were not run are left
            failed.append(f"execute_book: cannot run {', '.join(waiting)}: the chapters they quote did not finish")
            break
        time.sleep(0.2)
        for slug, process in list(running.items()):
            if process.poll() is None:
                continue
            del running[slug]
            out, err = process.communicate()
            if process.returncode == 0:
                seconds = float(out.strip().splitlines()[-1])
                total += seconds
                done.add(slug)
                print(f"{slug:<16} {seconds:6.1f} s", flush=True)
            else:
                lines = [line for line in err.strip().splitlines() if line.startswith("execute_book:")]
                failed.append(lines[-1] if lines else f"execute_book: {slug} failed (exit code {process.returncode})")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        return 1
    wall = time.perf_counter() - start
    print(f"{'total':<16} {wall:6.1f} s wall, {jobs} at a time (the chapters' own times add up to {total:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter slugs or paths (default: all of _toc.yml)")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"chapters executed at a time (default {JOBS})")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a worker: one chapter, here
    arguments = parser.parse_args(argv)
    known = toc_chapters()
    slugs = [slug_of(argument) for argument in arguments.chapters] or known
    unknown = [slug for slug in slugs if slug not in known]
    if unknown:
        print(f"execute_book: not in _toc.yml: {', '.join(unknown)} (chapters: {', '.join(known)})",
              file=sys.stderr)
        return 2
    if arguments.jobs < 1:
        print(f"execute_book: --jobs must be >= 1, got {arguments.jobs}", file=sys.stderr)
        return 2
    if arguments.one:
        return run_one(slugs[0])
    slugs = list(dict.fromkeys(slugs))  # once each, in the order given
    slugs.sort(key=lambda slug: LONGEST_FIRST.index(slug) if slug in LONGEST_FIRST else len(LONGEST_FIRST))
    return run_all(slugs, arguments.jobs)


if __name__ == "__main__":
    sys.exit(main())
