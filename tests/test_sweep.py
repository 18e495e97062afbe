"""Sweeps: parameter checks, a tiny papermill grid, resuming after a kill, the Dask path."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest

import mnistlab as ml  # noqa: F401  (import as users do; the sweep modules are not re-exported)
from mnistlab import sweep_report
from mnistlab.cli import main as cli_main
from mnistlab.sweep import check_parameters, glued_values, main, run_id, sweep

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "fixtures" / "tiny_chapter.ipynb")


def read_rows(out):
    with open(Path(out) / "results.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_importing_mnistlab_does_not_import_dask():
    if "dask" in sys.modules:  # something earlier in this process imported it: ask a fresh interpreter
        code = "import sys, mnistlab, mnistlab.sweep, mnistlab.sweep_report; print('dask' in sys.modules)"
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert completed.stdout.strip() == "False"
    else:
        import mnistlab.sweep  # noqa: F401

        assert "dask" not in sys.modules and "distributed" not in sys.modules


@pytest.mark.parametrize("arguments, expected", [
    (["-p", "nonsense", "1"], "unknown parameter 'nonsense'"),
    (["-p", "hidden_layers", "1", "two"], "parameter 'hidden_layers' expects int, got 'two'"),
    (["-p", "hidden_layers", "1.5"], "parameter 'hidden_layers' expects int"),
    (["-p", "l2_lambda", "0", "lots"], "parameter 'l2_lambda' expects float"),
    (["--seeds", "0", "x"], "parameter 'seed' expects int"),
    (["-p", "hidden_layers"], "needs at least one value"),
    (["-p", "epochs", "1", "-p", "epochs", "2"], "given twice"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arguments, expected):
    out = tmp_path / "runs"
    assert main([TINY, *arguments, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1
    if "parameter '" in expected:
        assert "valid parameters" in error and "hidden_layers (int, default 1)" in error
    assert not out.exists()


def test_seeds_for_a_notebook_without_seed_is_a_bad_parameter(tmp_path, capsys):
    notebook = nbformat.read(TINY, as_version=4)
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("seed"))
    path = tmp_path / "no_seed.ipynb"
    nbformat.write(notebook, path)
    assert cli_main(["sweep", str(path), "--seeds", "0", "1", "--out", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert "no 'seed' parameter" in error and "epochs (int, default 1)" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, expected", [("missing.ipynb", "no such notebook"),
                                            ("chapter.md", "not a .ipynb notebook"),
                                            ("broken.ipynb", "cannot read")])
def test_bad_notebook_exits_2(tmp_path, capsys, name, expected):
    path = tmp_path / name
    if name != "missing.ipynb":
        path.write_text("# not a notebook\n")
    assert main([str(path), "--out", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_help_works(capsys):
    assert main(["--help"]) == 0
    assert "--scheduler" in capsys.readouterr().out


def test_check_parameters_coerces_text_and_python_values():
    grid = check_parameters(TINY, {"hidden_layers": ["1", 2], "l2_lambda": ["0", 5]}, seeds=["2"])
    assert grid == {"hidden_layers": [1, 2], "l2_lambda": [0.0, 5.0], "seed": [2]}
    assert isinstance(grid["l2_lambda"][0], float)
    assert check_parameters(TINY, {"source": "keras"}, seeds=range(2)) == {"source": ["keras"], "seed": [0, 1]}
    with pytest.raises(ValueError, match="expects int"):
        check_parameters(TINY, {"epochs": [True]})
    assert run_id({"hidden_layers": 1, "l2_lambda": 0.0, "seed": 2}) == "hidden_layers=1-l2_lambda=0.0-seed=2"


def test_glued_values_reads_hidden_and_displayed_glue():
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"application/papermill.record/text/plain": "np.float64(0.25)"},
         "metadata": {"scrapbook": {"name": "a", "mime_prefix": "application/papermill.record/"}}},
        {"output_type": "display_data", "data": {"text/plain": "3"},
         "metadata": {"scrapbook": {"name": "b", "mime_prefix": ""}}},
        {"output_type": "display_data", "data": {"image/png": "..."},
         "metadata": {"scrapbook": {"name": "figure", "mime_prefix": ""}}},
        {"output_type": "stream", "name": "stdout", "text": "0.5"},
    ]}]}
    assert glued_values(notebook) == {"a": 0.25, "b": 3}


def test_tiny_grid_end_to_end_then_nothing_left_to_run(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main([TINY, "-p", "hidden_layers", "1", "2", "-p", "l2_lambda", "0", "5", "-p", "epochs", "1",
                 "--workers", "2", "--out", str(out), "--summary", "--no-progress"]) == 0
    rows = read_rows(out)
    expected = {f"hidden_layers={h}-l2_lambda={lam}-epochs=1" for h in (1, 2) for lam in ("0.0", "5.0")}
    assert {row["run_id"] for row in rows} == expected
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert 0.0 <= float(row["tiny_test_accuracy"]) <= 1.0 and float(row["seconds"]) > 0
        # the glued depth proves the parameter reached the run
        assert row["tiny_hidden_layers"] == row["hidden_layers"]
        executed = nbformat.read(out / f"{row['run_id']}.ipynb", as_version=4)
        assert glued_values(executed)["tiny_test_accuracy"] == pytest.approx(float(row["tiny_test_accuracy"]))
        assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in executed.cells)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    # without seeds each configuration is one run: mean is that run's value, std undefined
    with open(out / "summary.csv", newline="") as stream:
        summary = list(csv.DictReader(stream))
    assert len(summary) == 4 and (out / "summary.png").stat().st_size > 0
    for entry in summary:
        row = next(row for row in rows if (row["hidden_layers"], row["l2_lambda"]) ==
                   (entry["hidden_layers"], entry["l2_lambda"]))
        assert float(entry["tiny_loss_mean"]) == pytest.approx(float(row["tiny_loss"]))
        assert entry["tiny_loss_std"] == "nan" and entry["runs"] == "1"
    capsys.readouterr()
    stamps = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out) if name.endswith(".ipynb")}
    assert main([TINY, "-p", "hidden_layers", "1", "2", "-p", "l2_lambda", "0", "5", "-p", "epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert "0 run(s) executed, 4 already finished" in capsys.readouterr().out
    assert stamps == {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out) if name.endswith(".ipynb")}


def test_killed_sweep_resumes_with_only_the_unfinished_runs(tmp_path):
    out = tmp_path / "killed"
    arguments = [TINY, "-p", "hidden_layers", "1", "--seeds", "0", "1", "2", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "mnistlab", "sweep", *arguments, "--workers", "1",
                                "--no-progress"], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "results.csv").exists() and read_rows(out):
                break
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweep, its papermill child and nothing else
        process.wait()
    # A second run may finish between the last poll and the kill; the third cannot have started long ago.
    finished = [row["run_id"] for row in read_rows(out) if row["status"] == "ok"]
    assert 1 <= len(finished) < 3, f"the kill should land mid-sweep, finished: {finished}"
    stamps = {run_id: os.stat(out / f"{run_id}.ipynb").st_mtime_ns for run_id in finished}
    outcome = sweep(TINY, {"hidden_layers": ["1"]}, seeds=["0", "1", "2"], out=str(out), workers=2, progress=False)
    assert sorted(outcome["skipped"]) == sorted(finished)
    everything = {f"hidden_layers=1-seed={seed}" for seed in range(3)}
    assert sorted(outcome["executed"]) == sorted(everything - set(finished))
    assert {run_id: os.stat(out / f"{run_id}.ipynb").st_mtime_ns for run_id in finished} == stamps
    rows = read_rows(out)
    assert [row["status"] for row in rows] == ["ok"] * 3 and len({row["run_id"] for row in rows}) == 3
    # each run trained what its parameters say: the same fits, in a fresh interpreter like each run's
    # kernel (the fast engine's per-process compiled programs must not colour the reference), agree
    code = ("import json, mnistlab as ml; print(json.dumps([ml.train(ml.Config(hidden_layers=1, l2_lambda=0.0, "
            "epochs=1, per_class=5, seed=seed)).final['test_accuracy'] for seed in (0, 1, 2)]))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reference = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [row["seed"] for row in rows] == ["0", "1", "2"]  # grid order, not the order runs finished in
    assert [float(row["tiny_test_accuracy"]) for row in rows] == pytest.approx(reference)
    # the spread across seeds, against NumPy on the same rows
    table = sweep_report.summarise(rows, ["hidden_layers", "seed"])
    losses = np.array([float(row["tiny_loss"]) for row in rows])
    assert len(table) == 1 and table[0]["runs"] == 3
    assert table[0]["tiny_loss_mean"] == pytest.approx(losses.mean())
    assert table[0]["tiny_loss_std"] == pytest.approx(losses.std(ddof=1))


def test_dask_local_cluster_records_a_failing_run_and_finishes_the_others(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        # hidden_layers=-1 passes the type check (an int) but the chapter's Config rejects it
        outcome = sweep(TINY, {"hidden_layers": [1, -1]}, out=str(out), scheduler=cluster.scheduler_address,
                        progress=False)
    rows = {row["run_id"]: row for row in read_rows(out)}
    assert sorted(outcome["executed"]) == sorted(rows) == ["hidden_layers=1", "hidden_layers=_1"]
    assert rows["hidden_layers=1"]["status"] == "ok"
    assert 0.0 <= float(rows["hidden_layers=1"]["tiny_test_accuracy"]) <= 1.0
    failed = rows["hidden_layers=_1"]
    assert failed["status"] == "failed" and "hidden_layers must be a whole number" in failed["error"]
    assert failed["tiny_test_accuracy"] == ""


def test_train_grid_rows_summary_and_figure(tiny_data):
    base = ml.Config(epochs=1, per_class=5)
    rows = ml.train_grid(base, {"hidden_layers": [1], "l2_lambda": [0.0, 5.0]}, [0, 1], tiny_data)
    assert [(row["hidden_layers"], row["l2_lambda"], row["seed"]) for row in rows] == [
        (1, 0.0, 0), (1, 0.0, 1), (1, 5.0, 0), (1, 5.0, 1)]
    alone = ml.train(ml.Config(epochs=1, per_class=5, l2_lambda=5.0, seed=1), tiny_data)
    assert rows[3]["test_accuracy"] == pytest.approx(alone.final["test_accuracy"])
    table = sweep_report.summarise(rows, ["hidden_layers", "l2_lambda", "seed"])
    assert [(entry["l2_lambda"], entry["runs"]) for entry in table] == [("0.0", 2), ("5.0", 2)]
    values = np.array([rows[2]["train_accuracy"], rows[3]["train_accuracy"]])
    assert table[1]["train_accuracy_mean"] == pytest.approx(values.mean())
    assert table[1]["train_accuracy_std"] == pytest.approx(values.std(ddof=1))
    figure = sweep_report.plot_summary(rows, ["hidden_layers", "l2_lambda", "seed"], ["test_accuracy"],
                                       highlight_seed=0)
    assert len(figure.axes) == 1 and len(figure.axes[0].get_xticklabels()) == 2
    plt.close(figure)
    text = repr(ml.plots.Table.from_records(table, ["l2_lambda", "test_accuracy_mean"]))
    assert text.splitlines()[1].split() == ["0.0", f"{table[0]['test_accuracy_mean']:.3f}"]
