"""Run a chapter over a grid of parameters and seeds with papermill, in parallel, resumably."""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import csv
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

from .files import umask, write_atomic

RESULTS_FILE = "results.csv"
SUMMARY_TABLE = "summary.csv"
SUMMARY_FIGURE = "summary.png"
FIXED_COLUMNS = ("seconds", "status", "error")
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict}


# ---------------------------------------------------------------- parameters

def notebook_parameters(notebook: str) -> dict:
    """Name -> (type name or None, default text) for each variable of the notebook's `parameters` cell.

    The type is the annotation if there is one (`epochs: int = 1`), else the type of the default
    literal; None when the default is not a literal (e.g. `None` or an expression).
    """
    import papermill  # lazy: papermill pulls in nbclient, which `import mnistlab` should not

    if not os.path.isfile(notebook):
        raise ValueError(f"no such notebook: {notebook}")
    if not notebook.endswith(".ipynb"):
        raise ValueError(f"{notebook} is not a .ipynb notebook (a chapter's .md has a paired .ipynb to sweep)")
    try:
        inspected = papermill.inspect_notebook(notebook)
    except Exception as error:  # not JSON, not a notebook, ...: bad input, said in one line
        raise ValueError(f"cannot read {notebook} as a notebook: {type(error).__name__}: {error}") from None
    if not inspected:
        raise ValueError(f"{notebook} has no cell tagged 'parameters' (or it assigns nothing)")
    parameters = {}
    for name, info in inspected.items():
        type_name = info["inferred_type_name"]
        if type_name not in TYPES:
            try:
                default = ast.literal_eval(info["default"])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                default = None
            type_name = type(default).__name__ if default is not None else None
            type_name = type_name if type_name in TYPES else None
        parameters[name] = (type_name, info["default"])
    return parameters


def _describe(parameters: dict) -> str:
    return ", ".join(f"{name} ({type_name or 'any'}, default {default})"
                     for name, (type_name, default) in parameters.items())


def _coerce(value, type_name: str | None):
    """`value` (command-line text or a Python value) as a `type_name` value; ValueError if it is not one."""
    if isinstance(value, str) and type_name != "str":
        text = value.strip()
        if type_name == "int":
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError
            return int(text)
        if type_name == "float":
            if text.lower() in ("true", "false"):
                raise ValueError
            return float(text)
        if type_name == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            if type_name is None:
                return value  # papermill's habit: what is not a literal is a string
            raise ValueError from None
    if type_name is None:
        return value
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int) and not type(value).__name__.startswith("int"):
            raise ValueError
        return int(value)
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise ValueError
        return float(value)
    if type_name in ("list", "tuple"):
        if not isinstance(value, (list, tuple)):
            raise ValueError
        return TYPES[type_name](value)
    if not isinstance(value, TYPES[type_name]):
        raise ValueError
    return value


def check_parameters(notebook: str, grid: dict | None = None, seeds=None) -> dict:
    """The grid (name -> list of values) checked against `notebook`'s parameters cell and coerced.

    Values may be command-line text ("3", "0.5") or Python values. `seeds` become the `seed` axis,
    last. Raises ValueError with a one-line message naming the valid parameters.
    """
    parameters = notebook_parameters(notebook)
    valid = f"valid parameters of {notebook}: {_describe(parameters)}"
    grid = dict(grid or {})
    if seeds is not None:
        if "seed" not in parameters:
            raise ValueError(f"--seeds given but the notebook has no 'seed' parameter; {valid}")
        if "seed" in grid:
            raise ValueError(f"give seeds either with --seeds or with -p seed, not both; {valid}")
        grid["seed"] = list(seeds)
    checked = {}
    for name, values in grid.items():
        if name not in parameters:
            raise ValueError(f"unknown parameter {name!r}; {valid}")
        values = [values] if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") else list(values)
        if not values:
            raise ValueError(f"parameter {name!r} has no values; {valid}")
        type_name = parameters[name][0]
        coerced = []
        for value in values:
            try:
                coerced.append(_coerce(value, type_name))
            except (ValueError, TypeError):
                raise ValueError(f"parameter {name!r} expects {type_name}, got {value!r}; {valid}") from None
        if len({_text(value) for value in coerced}) != len(coerced):
            raise ValueError(f"parameter {name!r} has repeated values {values!r}; {valid}")
        checked[name] = coerced
    return checked


# ---------------------------------------------------------------- plan

def _text(value) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def run_id(parameters: dict) -> str:
    """A file-name-safe id made from the run's parameters, e.g. hidden_layers=1-l2_lambda=0.0-seed=2."""
    parts = [f"{name}={re.sub(r'[^A-Za-z0-9._+]', '_', _text(value))}" for name, value in parameters.items()]
    return "-".join(parts) or "default"


def plan(grid: dict) -> list[dict]:
    """Every combination of the grid's values, in the order the axes and values were given."""
    names = list(grid)
    runs = [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]
    ids = [run_id(parameters) for parameters in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("two runs of the grid map to the same run id; use plainer parameter values")
    return runs


# ---------------------------------------------------------------- one run

def _parse_glued(text: str):
    """A glued value back from its text/plain form: numbers and literals as such, else the text."""
    text = text.strip()
    # NumPy 2 scalars print as np.float64(0.5).
    match = re.fullmatch(r"(?:np|numpy)\.\w+\((.*)\)", text)
    if match:
        text = match.group(1)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, (int, float, str, bool)) else text


def glued_values(notebook) -> dict:
    """Key -> value of every scalar myst_nb `glue` in an executed notebook (a NotebookNode or dict)."""
    values = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if not scrapbook or "name" not in scrapbook:
                continue
            prefix = scrapbook.get("mime_prefix", "")
            text = output.get("data", {}).get(prefix + "text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            value = _parse_glued(text)
            if isinstance(value, str) and ("\n" in value or len(value) > 200):
                continue  # a figure's or table's repr is not a metric
            values[scrapbook["name"]] = value
    return values


def _error_of(notebook) -> str | None:
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    return None


def run_one(notebook_text: str, parameters: dict, cwd: str | None = None, timeout: float | None = None) -> dict:
    """Execute one run with papermill in a child process; never raises.

    Takes and returns notebook text rather than paths so a Dask worker on another machine needs
    no shared file system: {"parameters", "glued", "seconds", "status", "error", "notebook"}.
    """
    start = time.perf_counter()
    outcome = {"parameters": parameters, "glued": {}, "status": "failed", "error": None, "notebook": None}
    try:
        import nbformat

        with tempfile.TemporaryDirectory(prefix="mnistlab-sweep-") as scratch:
            source = os.path.join(scratch, "input.ipynb")
            target = os.path.join(scratch, "output.ipynb")
            with open(source, "w", encoding="utf-8") as stream:
                stream.write(notebook_text)
            command = [sys.executable, "-m", "papermill", source, target, "-y", json.dumps(parameters),
                       "--no-progress-bar", "--cwd", cwd if cwd and os.path.isdir(cwd) else scratch]
            if timeout:
                command += ["--execution-timeout", str(int(timeout))]
            finished = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            executed = nbformat.read(target, as_version=4) if os.path.exists(target) else None
            if executed is not None:
                outcome["notebook"] = nbformat.writes(executed)
                outcome["glued"] = glued_values(executed)
            if finished.returncode == 0:
                outcome["status"] = "ok"
            else:
                lines = [line for line in finished.stderr.splitlines() if line.strip()]
                outcome["error"] = (executed is not None and _error_of(executed)) or (
                    lines[-1] if lines else f"papermill exited with code {finished.returncode}")
    except Exception as error:  # a broken run must not stop the sweep
        outcome["error"] = f"{type(error).__name__}: {error}"
    outcome["seconds"] = round(time.perf_counter() - start, 3)
    return outcome


# ---------------------------------------------------------------- results on disk

def read_results(out: str) -> list[dict]:
    """The rows of `out`/results.csv as dicts of text (empty list if there is none yet)."""
    path = os.path.join(out, RESULTS_FILE) if os.path.isdir(out) or not out.endswith(".csv") else out
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def write_results(out: str, rows: list[dict], parameter_names: list[str]) -> None:
    """All rows to `out`/results.csv atomically: run_id, parameters, glued metrics, seconds, status, error."""
    columns = ["run_id"] + list(parameter_names)
    extra = []
    for row in rows:
        for key in row:
            if key not in columns and key not in FIXED_COLUMNS and key not in extra:
                extra.append(key)
    columns += sorted(extra) + list(FIXED_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(os.path.join(out, RESULTS_FILE), buffer.getvalue())


def _row(identifier: str, outcome: dict) -> dict:
    row = {"run_id": identifier}
    row.update({name: _text(value) for name, value in outcome["parameters"].items()})
    for key, value in outcome["glued"].items():
        if key not in row and key not in FIXED_COLUMNS:
            row[key] = value
    row.update(seconds=outcome["seconds"], status=outcome["status"], error=(outcome["error"] or "")[:500])
    return row


# ---------------------------------------------------------------- the sweep

def _local_runs(jobs, workers):
    """(identifier, outcome) as each local run finishes; each run is its own papermill process."""
    # Threads only wait on child processes, so the sweep itself never imports TensorFlow.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_one, *arguments): identifier for identifier, arguments in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def connect(scheduler):
    """(client, whether we opened it) for a Dask scheduler address or an existing Client."""
    try:
        from dask.distributed import Client  # lazy: `import mnistlab` must not import dask
    except ImportError as error:
        raise ValueError(f"--scheduler needs dask.distributed (pip install distributed): {error}") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout=15), True
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise ValueError(f"cannot reach the Dask scheduler {scheduler!r}: {error}") from None


def _dask_runs(jobs, client):
    """(identifier, outcome) as each run finishes on the Dask cluster behind `client`."""
    from dask.distributed import as_completed

    parameters_of = {identifier: arguments[1] for identifier, arguments in jobs}
    token = uuid.uuid4().hex[:8]
    futures = {client.submit(run_one, *arguments, key=f"mnistlab-sweep-{identifier}-{token}", pure=False):
               identifier for identifier, arguments in jobs}
    try:
        for future in as_completed(futures):
            identifier = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # a lost worker fails its run, not the sweep
                outcome = {"parameters": parameters_of[identifier], "glued": {}, "seconds": 0.0,
                           "status": "failed", "error": f"{type(error).__name__}: {error}", "notebook": None}
            yield identifier, outcome
    finally:
        client.cancel(list(futures))  # no-op for finished runs; an interrupted sweep frees the cluster


def sweep(notebook: str, grid: dict | None = None, seeds=None, out: str | None = None, workers: int = 2,
          scheduler=None, cwd: str | None = None, timeout: float | None = None, progress: bool = True) -> dict:
    """Run `notebook` once per combination of `grid` (name -> values) and `seeds`; skip finished runs.

    Each run's executed notebook goes to `out`/<run id>.ipynb, its glued values, seconds, status and
    error to `out`/results.csv (rewritten atomically after every run). Runs go to local processes,
    or to the Dask cluster `scheduler` (an address or a dask.distributed Client). `cwd` (default: the
    notebook's folder) is where each run executes. Returns {"rows": this grid's rows in grid order,
    "executed": run ids executed now, "skipped": run ids already finished}.
    """
    checked = check_parameters(notebook, grid, seeds)
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    runs = plan(checked)
    out = out or os.path.join("runs", os.path.splitext(os.path.basename(notebook))[0])
    cwd = os.path.abspath(cwd or os.path.dirname(os.path.abspath(notebook)))
    with open(notebook, encoding="utf-8") as stream:
        notebook_text = stream.read()

    rows = {row["run_id"]: row for row in read_results(out)}
    identifiers = [run_id(parameters) for parameters in runs]
    finished = [identifier for identifier in identifiers if rows.get(identifier, {}).get("status") == "ok"
                and os.path.exists(os.path.join(out, identifier + ".ipynb"))]
    jobs = [(identifier, (notebook_text, parameters, cwd, timeout))
            for identifier, parameters in zip(identifiers, runs) if identifier not in finished]
    client, owned = connect(scheduler) if scheduler is not None and jobs else (None, False)
    os.makedirs(out, exist_ok=True)
    umask()  # read before any run starts: reading it sets it, which races with the run threads
    parameter_names = list(checked)
    planned = set(identifiers)
    executed = []
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="run", desc=f"sweep {os.path.basename(notebook)}")
    try:
        results = _dask_runs(jobs, client) if client is not None else _local_runs(jobs, workers)
        for identifier, outcome in results:
            if outcome["notebook"] is not None:
                write_atomic(os.path.join(out, identifier + ".ipynb"), outcome["notebook"])
            rows[identifier] = _row(identifier, outcome)
            # grid order, whatever order the runs finish in; rows of other grids in this folder follow
            ordered = [rows[name] for name in identifiers if name in rows]
            write_results(out, ordered + [row for name, row in rows.items() if name not in planned],
                          parameter_names)
            executed.append(identifier)
            if bar is not None:
                bar.update(1)
                if outcome["status"] != "ok":
                    bar.write(f"{identifier}: {outcome['status']}: {outcome['error']}")
    finally:
        if bar is not None:
            bar.close()
        if owned:
            client.close()
    return {"rows": [rows[identifier] for identifier in identifiers], "executed": executed, "skipped": finished,
            "parameters": parameter_names, "out": out}


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnistlab sweep",
        description="Run a chapter notebook over a grid of parameters and seeds with papermill. Every "
                    "combination runs once into OUT/<run id>.ipynb; glued results go to OUT/results.csv. "
                    "Rerunning the same command skips finished runs.",
        epilog="example: python -m mnistlab sweep book/depth_l2.ipynb -p hidden_layers 1 2 3 "
               "-p l2_lambda 0 5 --seeds 0 1 2 --workers 2 --out runs/depth --summary")
    parser.add_argument("notebook", help="the chapter notebook (.ipynb) with a cell tagged 'parameters'")
    parser.add_argument("-p", "--parameter", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter and its value(s); several values make a grid axis (repeatable)")
    parser.add_argument("--seeds", nargs="+", metavar="SEED", help="values of the notebook's 'seed' parameter")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel on this machine (default 2)")
    parser.add_argument("--out", help="output folder (default runs/<notebook name>)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="send the runs to this Dask distributed scheduler (e.g. tcp://host:8786)")
    parser.add_argument("--cwd", help="folder the runs execute in (default: the notebook's folder)")
    parser.add_argument("--timeout", type=float, help="seconds a cell may run before its run fails")
    parser.add_argument("--summary", action="store_true",
                        help="also write OUT/summary.csv and OUT/summary.png: mean and std across seeds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _grid_from_arguments(pairs: list[list[str]]) -> dict:
    grid = {}
    for pair in pairs:
        if len(pair) < 2:
            raise ValueError(f"-p {pair[0]} needs at least one value: -p NAME VALUE [VALUE ...]")
        name, values = pair[0], pair[1:]
        if name in grid:
            raise ValueError(f"parameter {name!r} given twice; list all its values after one -p")
        grid[name] = values
    return grid


def main(argv: list[str] | None = None) -> int:
    """`python -m mnistlab sweep ...`: 0 if every run finished, 1 if some failed, 2 on bad input."""
    parser = _parser()

    def refuse(message: str):
        print(f"mnistlab sweep: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = refuse
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        grid = _grid_from_arguments(arguments.parameter)
        if arguments.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {arguments.workers}")
        if arguments.timeout is not None and not (math.isfinite(arguments.timeout) and arguments.timeout > 0):
            raise ValueError(f"--timeout must be a positive number of seconds, got {arguments.timeout}")
        check_parameters(arguments.notebook, grid, arguments.seeds)  # before anything is written or run
    except ValueError as error:
        print(f"mnistlab sweep: error: {error}", file=sys.stderr)
        return 2
    try:
        outcome = sweep(arguments.notebook, grid, arguments.seeds, arguments.out, arguments.workers,
                        arguments.scheduler, arguments.cwd, arguments.timeout, progress=not arguments.no_progress)
    except ValueError as error:  # an unreachable scheduler or clashing run ids: still nothing run
        print(f"mnistlab sweep: error: {error}", file=sys.stderr)
        return 2
    rows = outcome["rows"]
    failed = [row for row in rows if row["status"] != "ok"]
    print(f"{len(outcome['executed'])} run(s) executed, {len(outcome['skipped'])} already finished, "
          f"{len(failed)} failed; results in {os.path.join(outcome['out'], RESULTS_FILE)}")
    if arguments.summary:
        from . import sweep_report

        sweep_report.write_summary(outcome["out"], rows, outcome["parameters"])
        print(f"summary in {os.path.join(outcome['out'], SUMMARY_TABLE)} and "
              f"{os.path.join(outcome['out'], SUMMARY_FIGURE)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
