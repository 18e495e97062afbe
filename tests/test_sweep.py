"""Sweeps: parameter checks, a tiny papermill grid, resuming after a kill, the Dask path."""

import csv
import errno
import io
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
import mnistlab.sweep
import mnistlab.sweep_results
from mnistlab import sweep_report, sweep_results
from mnistlab.cli import main as cli_main
from mnistlab.sweep import check_parameters, code_version, glued_values, main, run_id, sweep
from read_only import read_only

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


# ---------------------------------------------------------------- nothing lost, nothing clobbered

def quick_notebook(path, double="2", pause=0.0):
    """A chapter-shaped notebook without TensorFlow (a run is a kernel start): glues seed * `double`,
    sleeps `pause` seconds first, fails when asked."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(f"seed = 0\npause = {float(pause)}\nfail = False")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(
        "import time\nfrom myst_nb import glue\ntime.sleep(pause)\n"
        "if fail:\n    raise RuntimeError('asked to fail')\n"
        f"glue('value', seed * {double}, display=False)")]
    nbformat.write(notebook, path)
    return str(path)


def sweep_process(*arguments, **options):
    return subprocess.Popen([sys.executable, "-m", "mnistlab", "sweep", *arguments, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def test_the_report_module_does_not_import_the_runner():
    import ast

    tree = ast.parse((ROOT / "mnistlab" / "sweep_report.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "sweep" not in imported and "mnistlab.sweep" not in imported


def test_two_sweeps_into_one_folder_the_second_stops_and_no_row_is_lost(tmp_path):
    # Long enough (sleeping, not computing) for the second sweep to start while the first one runs.
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    first = sweep_process(notebook, "-p", "pause", "10", "--seeds", "0", "1", "--workers", "2", "--out", str(out))
    deadline = time.monotonic() + 120
    lock = out / ".sweep.lock"
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = sweep_process(notebook, "-p", "pause", "0", "--seeds", "2", "--out", str(out))
    out_second, err_second = second.communicate(timeout=120)
    assert first.poll() is None, "the first sweep should still be running"
    assert second.returncode == 2 and err_second == (
        f"mnistlab sweep: error: another sweep (process {first.pid}) is running into {out}; "
        f"wait until it finishes, or give another --out\n")
    out_first, err_first = first.communicate(timeout=120)
    assert first.returncode == 0, err_first
    assert [row["run_id"] for row in read_rows(out)] == ["pause=10.0-seed=0", "pause=10.0-seed=1"]
    # the second sweep, run again once the folder is free, adds its row to the first one's
    assert main([notebook, "-p", "pause", "0", "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
    assert {row["seed"]: row["value"] for row in rows} == {"0": "0", "1": "2", "2": "4"}
    assert all(row["status"] == "ok" for row in rows)


def test_editing_the_notebook_makes_its_finished_runs_stale(tmp_path, capsys):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    assert main([notebook, "--seeds", "1", "2", "--out", str(out), "--no-progress"]) == 0
    first = read_rows(out)
    assert [row["value"] for row in first] == ["2", "4"] and len({row["code_version"] for row in first}) == 1
    quick_notebook(tmp_path / "quick.ipynb", double="3")  # the chapter changed
    capsys.readouterr()
    assert main([notebook, "--seeds", "1", "2", "3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 finished run(s) in" in err and "--rerun-stale" in err
    assert read_rows(out) == first and sorted(os.listdir(out)) == [
        ".sweep.lock", "results.csv", "seed=1.ipynb", "seed=2.ipynb"]  # nothing ran
    assert main([notebook, "--seeds", "1", "2", "3", "--out", str(out), "--no-progress", "--rerun-stale"]) == 0
    assert "3 run(s) executed (2 of them stale), 0 already finished" in capsys.readouterr().out
    rows = read_rows(out)
    assert [row["value"] for row in rows] == ["3", "6", "9"]
    assert len({row["code_version"] for row in rows}) == 1 and rows[0]["code_version"] != first[0]["code_version"]
    # a table from before code versions were recorded counts as stale too
    with open(out / "results.csv", newline="") as stream:
        old = [{key: value for key, value in row.items() if key != "code_version"} for row in csv.DictReader(stream)]
    sweep_results.write_results(str(out), old, ["seed"])
    assert main([notebook, "--seeds", "1", "--out", str(out), "--no-progress"]) == 2
    assert "1 finished run(s) in" in capsys.readouterr().err


def test_the_code_version_follows_code_cells_not_outputs_or_parameters(tmp_path):
    path = quick_notebook(tmp_path / "quick.ipynb")
    text = Path(path).read_text()
    notebook = nbformat.reads(text, as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="printed")]
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell("# prose changes nothing"))
    assert code_version(nbformat.writes(notebook)) == code_version(text)
    notebook.cells[0 + 1].source = "seed = 0\npause = 0.5\nfail = False"  # a default changed
    assert code_version(nbformat.writes(notebook)) != code_version(text)


@pytest.mark.parametrize("content, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00 binary", "not UTF-8 text"),
    (b"", "it is empty"),
    (b"run_id,seed,value,code_version,seconds,status,error\nseed=0,0,0,abc,1.0,ok,\nseed=1,1,2,ab", "cut off"),
    (b"name,score\nalice,3\n", "header is not that of a results table"),
    (b"run_id,seed,code_version,seconds,status,error\nseed=0,0,abc,1.0,ok\n", "line 2 has 5 fields"),
    (b"run_id,seed,code_version,seconds,status,error\nseed=0,0,abc,1.0,maybe,\n", "status 'maybe'"),
    (b"run_id,seconds,status,error\n\"unclosed,1,ok,\n", "not valid CSV"),
    (b"run_id,seconds,status,error\nx,1,ok,\n\x00\x00\x00\x00\n", "NUL bytes"),
])
def test_a_damaged_results_table_stops_the_sweep_before_it_runs(tmp_path, capsys, content, problem):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    out.mkdir()
    (out / "results.csv").write_bytes(content)
    assert main([notebook, "--seeds", "0", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err
    assert f"{out / 'results.csv'} is not a results table of a sweep" in err and "move it away or delete it" in err
    assert (out / "results.csv").read_bytes() == content and not list(out.glob("*.ipynb"))


def test_an_out_that_is_a_file_or_read_only_is_refused_before_running(tmp_path, capsys):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert main([notebook, "--seeds", "0", "--out", str(blocker), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and blocker.read_text() == "mine"
    assert main([notebook, "--seeds", "0", "--out", str(blocker / "runs"), "--no-progress"]) == 2
    assert "Not a directory" in capsys.readouterr().err
    folder = tmp_path / "readonly"
    folder.mkdir()
    with read_only(folder):
        assert main([notebook, "--seeds", "0", "--out", str(folder), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot write into the output folder {str(folder)!r}" in err
        assert os.listdir(folder) == []


def test_summary_when_every_run_failed_keeps_the_results(tmp_path, capsys):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    assert main([notebook, "-p", "fail", "True", "--seeds", "0", "1", "--out", str(out), "--summary",
                 "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "2 failed; results in" in captured.out
    assert "summary not written: no finished run to summarise" in captured.err
    rows = read_rows(out)
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all("asked to fail" in row["error"] for row in rows) and not (out / "summary.csv").exists()


def test_a_full_disk_during_a_sweep_keeps_every_row(tmp_path, capsys, monkeypatch):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    real_write = mnistlab.sweep.write_atomic

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mnistlab.sweep, "write_atomic", full)  # notebooks cannot be written
    monkeypatch.setattr(mnistlab.sweep_results, "write_atomic", full)  # nor the table
    assert main([notebook, "--seeds", "0", "1", "--out", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert sum("could not write" in line and ".ipynb (No space left on device)" in line for line in lines) == 2
    assert f"could not write {out / 'results.csv'} (No space left on device); its content follows" in lines[-1]
    # the table is on stdout, readable as CSV, with both rows
    table = list(csv.DictReader(io.StringIO(captured.out[:captured.out.rindex("2 run(s) executed")])))
    assert {row["seed"]: row["value"] for row in table} == {"0": "0", "1": "2"}
    assert "3 file(s) not written (see above); results in the table printed above" in captured.out
    assert sorted(os.listdir(out)) == [".sweep.lock"]
    # the disk has room again: the runs without a notebook run again and nothing is missing
    monkeypatch.setattr(mnistlab.sweep, "write_atomic", real_write)
    monkeypatch.setattr(mnistlab.sweep_results, "write_atomic", real_write)
    assert main([notebook, "--seeds", "0", "1", "--out", str(out), "--no-progress"]) == 0
    assert {row["seed"]: row["value"] for row in read_rows(out)} == {"0": "0", "1": "2"}


def test_a_table_write_that_fails_once_is_retried_with_the_next_row(tmp_path, capsys, monkeypatch):
    notebook = quick_notebook(tmp_path / "quick.ipynb")
    out = tmp_path / "runs"
    real_write = mnistlab.sweep_results.write_atomic
    calls = []

    def flaky(path, text):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, text)

    monkeypatch.setattr(mnistlab.sweep_results, "write_atomic", flaky)
    assert main([notebook, "--seeds", "0", "1", "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    assert "written after the next run or at the end" in capsys.readouterr().err
    assert [row["seed"] for row in read_rows(out)] == ["0", "1"]


def _descendants(pid):
    psutil = pytest.importorskip("psutil")  # installed with ipykernel, which papermill needs
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "Ctrl-C"])
def test_a_stopped_sweep_leaves_no_process_and_no_scratch_behind(tmp_path, how):
    psutil = pytest.importorskip("psutil")
    notebook = quick_notebook(tmp_path / "quick.ipynb", pause=120)
    out = tmp_path / "runs"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = dict(os.environ, TMPDIR=str(scratch))
    # its own session, so that Ctrl-C can be sent to its whole process group as a terminal does
    process = sweep_process(notebook, "--seeds", "0", "1", "--workers", "2", "--out", str(out), env=environment,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while True:  # both runs' kernels are up: two papermill children, each with a kernel
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        children = _descendants(process.pid)
        if len([child for child in children if "ipykernel" in " ".join(child.cmdline())]) == 2:
            break
        time.sleep(0.2)
    assert len(os.listdir(scratch)) == 2
    if how == "Ctrl-C":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(getattr(signal, how))  # the sweep alone, not its children
    _, err = process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], [child.cmdline() for child in alive]
    if how != "SIGKILL":
        name = "SIGINT" if how == "Ctrl-C" else how
        assert process.returncode == 128 + getattr(signal, name)
        assert err == (f"mnistlab sweep: stopped by {name}; the runs in progress were stopped, finished ones "
                       "are kept and the same command resumes\n")
        assert os.listdir(scratch) == []
    else:
        assert len(os.listdir(scratch)) == 2  # kill -9 gives no chance to clean up ...
        removed = mnistlab.sweep.clean_stale_scratch(str(scratch))  # ... so the next sweep does
        assert len(removed) == 2 and os.listdir(scratch) == []
    assert not out.joinpath("results.csv").exists()  # no run finished, none is recorded as finished


def test_scratch_of_a_live_process_is_left_alone(tmp_path):
    live = tmp_path / f"mnistlab-sweep-{os.getpid()}-abc"
    dead_pid = 2**22 + 12345  # above the default pid_max, so no process has it
    dead = tmp_path / f"mnistlab-sweep-{dead_pid}-abc"
    other = tmp_path / "mnistlab-sweep-notapid"
    for folder in (live, dead, other):
        folder.mkdir()
    assert mnistlab.sweep.clean_stale_scratch(str(tmp_path)) == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])
