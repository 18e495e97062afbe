"""Fresh virtual environments as readers get them run a chapter: Binder's (binder/) and Colab's (TF 2.19, Keras 3.10).

Slow (each installs TensorFlow; the pip cache helps where it is warm): `python3 tasks.py test` runs them as a
step of their own, `pytest -m slow tests/test_environments.py` by hand. Each prints its install size and times.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mnistlab.sweep import glued_values

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402

# A short chapter (a 3-epoch training, seconds), run as stored: its exercises' solutions assert claims worded
# for the default parameters, so smaller ones (epochs=1) would fail them. Its glued values prove it ran to the end.
CHAPTER = "likelihood"
PARAMETERS: list[str] = []
EXPECTED_GLUE = "likelihood_keras_loss"
# What Colab had installed in mid-2025 that the chapters use (versions: the oldest mnistlab supports).
COLAB_PACKAGES = ["tensorflow==2.19.*", "keras==3.10.*", "matplotlib", "ipykernel"]
TENSORFLOW_DISTRIBUTIONS = re.compile(r"^(tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos|tf-nightly\S*)$")
SOURCE = ["pyproject.toml", "README.md", "mnistlab"]


def environment(tmp_path: Path, venv: Path) -> dict:
    """No trace of the developer's environment: this venv first on PATH, no PYTHONPATH, an empty Jupyter data dir."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def call(command, env, cwd, timeout=1800) -> float:
    start = time.perf_counter()
    completed = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=timeout)
    if completed.returncode:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-25:])
        pytest.fail(f"{' '.join(map(str, command))} failed ({completed.returncode}):\n{tail}")
    return time.perf_counter() - start


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def installed(python: Path, env: dict) -> dict[str, str]:
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], env=env, capture_output=True,
                             text=True, check=True).stdout
    return {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(listing)}


def megabytes(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file() and not file.is_symlink()) / 1e6


def copy_source(target: Path, extra: tuple[str, ...] = ()) -> Path:
    """The files pip builds mnistlab from (and `extra`), outside the checkout: nothing is built in the clone."""
    for name in [*SOURCE, *extra]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / name)
    return target


def run_chapter(python: Path, notebook: Path, output: Path, env: dict) -> nbformat.NotebookNode:
    call([python, "-m", "papermill", notebook, output, *PARAMETERS, "--cwd", notebook.parent, "-k", "python3",
          "--no-progress-bar", "--log-level", "WARNING"], env, cwd=notebook.parent)
    executed = nbformat.read(output, as_version=4)
    errors = [output for cell in executed.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert errors == [], errors
    assert EXPECTED_GLUE in glued_values(executed), f"{CHAPTER} did not reach its glued values"
    return executed


def report(capsys, name: str, lines: list[str]) -> None:
    with capsys.disabled():
        print(f"\n[{name}] " + "; ".join(lines))


def test_binder_environment_runs_a_chapter(tmp_path, capsys):
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}", (
        f"binder/runtime.txt asks for {runtime}: run this test with that Python")
    repository = copy_source(tmp_path / "repository", ("binder/requirements.txt", f"book/{CHAPTER}.ipynb"))
    venv = tmp_path / "binder-venv"
    python = make_venv(venv)
    env = environment(tmp_path, venv)
    # repo2docker runs `pip install -r binder/requirements.txt` from the repository's root.
    install = call([python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"], env, cwd=repository)
    packages = installed(python, env)
    for testing in ("pytest", "playwright", "nbval", "jupyter-book"):
        assert testing not in packages, f"the Binder environment has {testing}"
    assert "mnistlab" in packages and "tensorflow-cpu" in packages
    start = time.perf_counter()
    run_chapter(python, repository / "book" / f"{CHAPTER}.ipynb", tmp_path / "out.ipynb", env)
    report(capsys, "binder", [f"install {install:.0f} s", f"venv {megabytes(venv):.0f} MB",
                              f"{CHAPTER} {time.perf_counter() - start:.0f} s"])


def colab_notebook(source_dir: Path, tmp_path: Path) -> Path:
    """The chapter as Colab runs it: google.colab imported at start-up, the first cell installing mnistlab.

    The only change to the cell is where pip finds mnistlab: this checkout's files instead of the repository."""
    url, branch = colab_cell.repository()
    notebook = nbformat.read(ROOT / "book" / f"{CHAPTER}.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert first.source == colab_cell.cell_source(url, branch)
    remote = colab_cell.requirement(url, branch)
    first.source = first.source.replace(remote, f"mnistlab @ {source_dir.as_uri()}")
    assert first.source != colab_cell.cell_source(url, branch)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(
        'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")  # what Colab\'s kernel has'))
    path = tmp_path / "colab" / f"{CHAPTER}.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)
    return path


def test_colab_like_environment_keeps_its_tensorflow_and_runs_a_chapter(tmp_path, capsys):
    venv = tmp_path / "colab-venv"
    python = make_venv(venv)
    env = environment(tmp_path, venv)
    # papermill only drives the notebook here; Colab has its own front end.
    preinstall = call([python, "-m", "pip", "install", "--quiet", *COLAB_PACKAGES, "papermill"], env, cwd=tmp_path)
    before = installed(python, env)
    size_before = megabytes(venv)
    assert before["tensorflow"].startswith("2.19.") and before["keras"].startswith("3.10.")
    assert "mnistlab" not in before
    notebook = colab_notebook(copy_source(tmp_path / "source"), tmp_path)
    start = time.perf_counter()
    executed = run_chapter(python, notebook, tmp_path / "out.ipynb", env)
    seconds = time.perf_counter() - start
    after = installed(python, env)
    assert set(after) - set(before) == {"mnistlab"}, f"the install added {sorted(set(after) - set(before))}"
    changed = {name: (before[name], after[name]) for name in before if after.get(name) != before[name]}
    assert changed == {}, f"installing mnistlab changed Colab's packages: {changed}"
    tensorflows = sorted(name for name in after if TENSORFLOW_DISTRIBUTIONS.match(name))
    assert tensorflows == ["tensorflow"], f"TensorFlow distributions after the install: {tensorflows}"
    install_cell = [cell for cell in executed.cells if cell.cell_type == "code"][1]
    printed = "".join(output.get("text", "") for output in install_cell.outputs)
    assert len(printed.strip().splitlines()) <= 2, f"the install cell is not quiet:\n{printed}"
    report(capsys, "colab-like", [f"preinstalled TF {before['tensorflow']} / Keras {before['keras']} in "
                                  f"{preinstall:.0f} s, {size_before:.0f} MB",
                                  f"first cell's install + {CHAPTER} {seconds:.0f} s",
                                  f"mnistlab adds {megabytes(venv) - size_before:.1f} MB"])
