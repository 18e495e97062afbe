"""Run a chapter over a grid of parameters and seeds with papermill, in parallel, resumably."""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from importlib import metadata

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so two sweeps into one folder are not detected
    fcntl = None

from . import sweep_report
from .files import umask, write_atomic
from .sweep_results import FIXED_COLUMNS, RESULTS_FILE, read_results, results_text, write_results

LOCK_FILE = ".sweep.lock"
SCRATCH_PREFIX = "mnistlab-sweep-"  # + the pid of the process that made it, so stale ones can be told
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict}


# ---------------------------------------------------------------- parameters

def notebook_parameters(notebook: str) -> dict:
    """Name -> (type name or None, default text) for each variable of the notebook's `parameters` cell.

    The type is the annotation if there is one (`epochs: int = 1`), else the type of the default
    literal; None when the default is not a literal (e.g. `None` or an expression).
    """
    import papermill  # lazy: papermill pulls in nbclient, which `import mnistlab` should not

    if not os.path.exists(notebook):
        raise ValueError(f"no such notebook: {notebook}")
    if not os.path.isfile(notebook):
        raise ValueError(f"{notebook} is not a file")
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
    longest = max(ids, key=len, default="")
    if len((longest + ".ipynb").encode()) > 255:  # the usual limit on a file name
        raise ValueError(f"the run id {longest[:40]}... is too long for a file name ({len(longest)} characters); "
                         f"use shorter parameter values")
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


# papermill's command line in a child that exits as soon as its parent (the sweep) is gone, even
# after kill -9; the notebook's kernel, started by it, exits within a second of it (ipykernel
# watches its parent too). So a killed sweep leaves no process running.
_PAPERMILL_CHILD = """
import os, sys, threading, time
parent = int(os.environ.pop("MNISTLAB_SWEEP_PARENT"))  # not os.getppid(): the parent may be gone already

def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)

threading.Thread(target=watch, daemon=True).start()
from papermill.cli import papermill
papermill(prog_name="papermill")
"""
_CHILDREN: set = set()  # papermill processes running now, stopped by `stop_children`
_CHILDREN_LOCK = threading.Lock()


def stop_children(grace: float = 5.0) -> None:
    """Terminate every papermill child of this process (then kill those still alive after `grace` s)."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        with contextlib.suppress(OSError):
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                child.kill()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def clean_stale_scratch(directory: str | None = None) -> list[str]:
    """Remove scratch folders of sweeps whose process is gone (killed with kill -9, say); returns them."""
    directory = directory or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = re.fullmatch(re.escape(SCRATCH_PREFIX) + r"(\d+)-[^/]+", name)
        path = os.path.join(directory, name)
        try:
            mine = os.lstat(path).st_uid == os.getuid() and os.path.isdir(path) and not os.path.islink(path)
        except OSError:
            continue
        if match and mine and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run_one(notebook_text: str, parameters: dict, cwd: str | None = None, timeout: float | None = None) -> dict:
    """Execute one run with papermill in a child process; never raises.

    Takes and returns notebook text rather than paths so a Dask worker on another machine needs
    no shared file system: {"parameters", "glued", "seconds", "status", "error", "notebook"}.
    """
    start = time.perf_counter()
    outcome = {"parameters": parameters, "glued": {}, "status": "failed", "error": None, "notebook": None}
    try:
        import nbformat

        with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
            source = os.path.join(scratch, "input.ipynb")
            target = os.path.join(scratch, "output.ipynb")
            with open(source, "w", encoding="utf-8") as stream:
                stream.write(notebook_text)
            command = [sys.executable, "-c", _PAPERMILL_CHILD, source, target, "-y", json.dumps(parameters),
                       "--no-progress-bar", "--cwd", cwd if cwd and os.path.isdir(cwd) else scratch]
            if timeout:
                command += ["--execution-timeout", str(int(timeout))]
            # Temporary files of the run (the kernel's connection file, say) go to its scratch folder,
            # so that whatever a stopped run leaves behind goes with that folder.
            environment = dict(os.environ, TMPDIR=scratch, MNISTLAB_SWEEP_PARENT=str(os.getpid()))
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, env=environment)
            with _CHILDREN_LOCK:
                _CHILDREN.add(child)
            try:
                _, stderr = child.communicate()
            finally:
                with _CHILDREN_LOCK:
                    _CHILDREN.discard(child)
            finished = subprocess.CompletedProcess(command, child.returncode, "", stderr)
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


# ---------------------------------------------------------------- what ran

def _package_files() -> list[str]:
    root = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        found += [os.path.join(folder, name) for name in sorted(names) if not name.endswith((".pyc", ".pyo"))]
    return found


@functools.lru_cache(maxsize=1)
def _environment_digest() -> str:
    """mnistlab's files (code and data) and the versions of what the runs import."""
    digest = hashlib.sha256()
    for path in _package_files():
        digest.update(os.path.relpath(path, os.path.dirname(__file__)).encode())
        with open(path, "rb") as stream:
            digest.update(hashlib.sha256(stream.read()).digest())
    for name in ("mnistlab", "keras", "tensorflow", "tensorflow-cpu", "numpy", "papermill"):
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            pass
    digest.update(sys.version.encode())
    return digest.hexdigest()


def code_version(notebook_text: str) -> str:
    """12 hex digits naming what a run runs: the notebook's code cells (with their defaults) and
    mnistlab's code, data and library versions. A finished run of other code is stale."""
    notebook = json.loads(notebook_text)
    cells = [cell.get("source", "") for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"
             and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]
    cells = ["".join(source) if isinstance(source, list) else source for source in cells]
    digest = hashlib.sha256(json.dumps(cells).encode())
    digest.update(_environment_digest().encode())
    return digest.hexdigest()[:12]


def _row(identifier: str, outcome: dict, version: str) -> dict:
    row = {"run_id": identifier}
    row.update({name: _text(value) for name, value in outcome["parameters"].items()})
    for key, value in outcome["glued"].items():
        if key not in row and key not in FIXED_COLUMNS:
            row[key] = value
    row.update(code_version=version, seconds=outcome["seconds"], status=outcome["status"],
               error=(outcome["error"] or "")[:500])
    return row


# ---------------------------------------------------------------- the output folder

def _missing_folders(out: str) -> list[str]:
    """The folders `os.makedirs(out)` would create, outermost first."""
    missing = []
    folder = os.path.abspath(out)
    while not os.path.lexists(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    return missing


def _prepare_folder(out: str) -> None:
    """Create `out` if needed; ValueError if it is a file or cannot be written (checked by writing)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        what = "a broken symlink" if os.path.islink(out) and not os.path.exists(out) else "a file"
        raise ValueError(f"--out {out!r} is {what}, not a folder; give a folder for the results")
    try:
        os.makedirs(out, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".tmp-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"cannot write into the output folder {out!r}: {error.strerror}; "
                         f"give another --out") from None


@contextlib.contextmanager
def folder_lock(out: str):
    """Hold `out`'s lock for the duration; ValueError at once if another sweep holds it.

    An advisory lock (flock) on `out`/.sweep.lock: the system releases it when its holder exits,
    however it exits, so no stale lock is ever left behind.
    """
    if fcntl is None:
        yield
        return
    path = os.path.join(out, LOCK_FILE)
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
    except OSError as error:
        raise ValueError(f"cannot write into the output folder {out!r}: {error.strerror}; "
                         f"give another --out") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(handle, 32, 0).decode("ascii", "replace").strip()
            raise ValueError(f"another sweep{f' (process {holder})' if holder.isdigit() else ''} is running "
                             f"into {out}; wait until it finishes, or give another --out") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(handle)  # releases the lock


# ---------------------------------------------------------------- the sweep

def _local_runs(jobs, workers):
    """(identifier, outcome) as each local run finishes; each run is its own papermill process."""
    # Threads only wait on child processes, so the sweep itself never imports TensorFlow.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_one, *arguments): identifier for identifier, arguments in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        except BaseException:  # interrupted, or the consumer stopped: stop the runs, not just the queue
            for future in futures:
                future.cancel()
            stop_children()
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


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)


def sweep(notebook: str, grid: dict | None = None, seeds=None, out: str | None = None, workers: int = 2,
          scheduler=None, cwd: str | None = None, timeout: float | None = None, progress: bool = True,
          rerun_stale: bool = False) -> dict:
    """Run `notebook` once per combination of `grid` (name -> values) and `seeds`; skip finished runs.

    Each run's executed notebook goes to `out`/<run id>.ipynb, its glued values, code version,
    seconds, status and error to `out`/results.csv (rewritten atomically after every run). Runs go
    to local processes, or to the Dask cluster `scheduler` (an address or a dask.distributed Client).
    `cwd` (default: the notebook's folder) is where each run executes.

    Before anything runs (ValueError otherwise): `out` must be a writable folder that no other sweep
    is writing to, its results.csv readable, and its finished runs of this grid made by the same code
    (`code_version`), unless `rerun_stale`, which runs those again. A write that fails after a run
    (a full disk, say) does not stop the sweep: the row is kept in memory, reported on stderr and
    written with the next row. Returns {"rows": this grid's rows in grid order, "executed": run ids
    executed now, "skipped": run ids already finished, "stale": run ids rerun as stale, "parameters",
    "out", "unwritten": paths that could not be written, "table_written": whether results.csv holds
    every row}.
    """
    checked = check_parameters(notebook, grid, seeds)
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    runs = plan(checked)
    out = out or os.path.join("runs", os.path.splitext(os.path.basename(notebook))[0])
    if cwd is not None and scheduler is None and not os.path.isdir(cwd):  # a cluster's workers may have it
        raise ValueError(f"cwd {cwd!r} is not a folder")
    cwd = os.path.abspath(cwd or os.path.dirname(os.path.abspath(notebook)))
    with open(notebook, encoding="utf-8") as stream:
        notebook_text = stream.read()
    version = code_version(notebook_text)
    created = _missing_folders(out)
    _prepare_folder(out)
    try:
        with folder_lock(out):
            clean_stale_scratch()
            return _sweep_locked(notebook, notebook_text, version, checked, runs, out, workers, scheduler, cwd,
                                 timeout, progress, rerun_stale)
    except ValueError:  # refused before anything ran: leave no folder behind that this call made
        if created:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(out, LOCK_FILE))
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only if empty
        raise


def _sweep_locked(notebook, notebook_text, version, checked, runs, out, workers, scheduler, cwd, timeout,
                  progress, rerun_stale) -> dict:
    rows = {row["run_id"]: row for row in read_results(out)}
    identifiers = [run_id(parameters) for parameters in runs]
    done = [identifier for identifier in identifiers if rows.get(identifier, {}).get("status") == "ok"
            and os.path.isfile(os.path.join(out, identifier + ".ipynb"))]
    stale = [identifier for identifier in done if rows[identifier].get("code_version") != version]
    if stale and not rerun_stale:
        raise ValueError(f"{len(stale)} finished run(s) in {out} ran other code than {notebook} and mnistlab "
                         f"are now (the notebook's code cells or defaults, or mnistlab and its libraries, "
                         f"changed since): add --rerun-stale to run them again, or give another --out")
    finished = [identifier for identifier in done if identifier not in stale]
    jobs = [(identifier, (notebook_text, parameters, cwd, timeout))
            for identifier, parameters in zip(identifiers, runs) if identifier not in finished]
    client, owned = connect(scheduler) if scheduler is not None and jobs else (None, False)
    umask()  # read before any run starts: reading it sets it, which races with the run threads
    parameter_names = list(checked)
    planned = set(identifiers)
    executed, unwritten = [], []
    table_error = None
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="run", desc=f"sweep {os.path.basename(notebook)}")

    def say(message: str) -> None:
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def table() -> list[dict]:
        # grid order, whatever order the runs finish in; rows of other grids in this folder follow
        return [rows[name] for name in identifiers if name in rows] + \
            [row for name, row in rows.items() if name not in planned]

    results = (item for item in ())
    try:
        results = _dask_runs(jobs, client) if client is not None else _local_runs(jobs, workers)
        for identifier, outcome in results:
            row = _row(identifier, outcome, version)
            rows[identifier] = row
            executed.append(identifier)
            if outcome["notebook"] is not None:
                path = os.path.join(out, identifier + ".ipynb")
                try:
                    write_atomic(path, outcome["notebook"])
                except OSError as error:
                    # Without its notebook the run counts as unfinished next time; its numbers are here.
                    unwritten.append(path)
                    say(f"mnistlab sweep: could not write {path} ({_reason(error)}); this run's row: "
                        f"{json.dumps(row)}")
            try:
                write_results(out, table(), parameter_names)
                table_error = None
            except OSError as error:
                if table_error is None:
                    say(f"mnistlab sweep: could not write {os.path.join(out, RESULTS_FILE)} ({_reason(error)}); "
                        f"the rows are kept and written after the next run or at the end")
                table_error = error
            if bar is not None:
                bar.update(1)
                if outcome["status"] != "ok":
                    bar.write(f"{identifier}: {outcome['status']}: {outcome['error']}")
    finally:
        results.close()  # an interrupted loop stops its runs here, not when the generator is collected
        if bar is not None:
            bar.close()
        if owned:
            client.close()
        if table_error is not None:
            try:
                write_results(out, table(), parameter_names)
                table_error = None
            except OSError as error:
                table_error = error
        if table_error is not None:
            path = os.path.join(out, RESULTS_FILE)
            unwritten.append(path)
            say(f"mnistlab sweep: could not write {path} ({_reason(table_error)}); its content follows on "
                f"stdout, save it as {path} before the next sweep")
            print(results_text(table(), parameter_names), end="", flush=True)
    return {"rows": [rows[identifier] for identifier in identifiers], "executed": executed, "skipped": finished,
            "stale": stale if rerun_stale else [], "parameters": parameter_names, "out": out,
            "unwritten": unwritten, "table_written": table_error is None}


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnistlab sweep",
        description="Run a chapter notebook over a grid of parameters and seeds with papermill. Every "
                    "combination runs once into OUT/<run id>.ipynb; glued results go to OUT/results.csv. "
                    "Rerunning the same command skips finished runs of the same code. One sweep at a time "
                    "writes into a folder.",
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
    parser.add_argument("--rerun-stale", action="store_true",
                        help="run again the finished runs that ran other code (the notebook or mnistlab changed "
                             "since); without it such a sweep stops before running anything")
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


class Stopped(BaseException):
    """SIGTERM (or SIGINT) reached the sweep: it stops its runs and keeps the finished ones."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGINT raise Stopped in the main thread, so the sweep's cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m mnistlab sweep ...`: 0 if every run finished and was written, 1 if some failed or
    could not be written, 2 on bad input (nothing run), 128 + signal number when stopped."""
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
        if arguments.cwd is not None and arguments.scheduler is None and not os.path.isdir(arguments.cwd):
            raise ValueError(f"--cwd {arguments.cwd!r} is not a folder")
        check_parameters(arguments.notebook, grid, arguments.seeds)  # before anything is written or run
    except ValueError as error:
        print(f"mnistlab sweep: error: {error}", file=sys.stderr)
        return 2
    try:
        with _stop_on_signals():
            outcome = sweep(arguments.notebook, grid, arguments.seeds, arguments.out, arguments.workers,
                            arguments.scheduler, arguments.cwd, arguments.timeout,
                            progress=not arguments.no_progress, rerun_stale=arguments.rerun_stale)
    except ValueError as error:  # a busy, unwritable or unreadable folder, stale runs, no scheduler: nothing run
        print(f"mnistlab sweep: error: {error}", file=sys.stderr)
        return 2
    except (Stopped, KeyboardInterrupt) as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"mnistlab sweep: stopped by {signal.Signals(signum).name}; the runs in progress were stopped, "
              f"finished ones are kept and the same command resumes", file=sys.stderr)
        return 128 + signum
    rows = outcome["rows"]
    failed = [row for row in rows if row["status"] != "ok"]
    results = os.path.join(outcome["out"], RESULTS_FILE)
    stale = f" ({len(outcome['stale'])} of them stale)" if outcome["stale"] else ""
    unwritten = f", {len(outcome['unwritten'])} file(s) not written (see above)" if outcome["unwritten"] else ""
    print(f"{len(outcome['executed'])} run(s) executed{stale}, {len(outcome['skipped'])} already finished, "
          f"{len(failed)} failed{unwritten}; "
          f"results in {results if outcome['table_written'] else 'the table printed above'}")
    code = 1 if failed or outcome["unwritten"] else 0
    if arguments.summary:
        try:
            sweep_report.write_summary(outcome["out"], rows, outcome["parameters"])
        except (OSError, ValueError) as error:
            print(f"mnistlab sweep: summary not written: {_reason(error)} (the results are in {results})",
                  file=sys.stderr)
            return 1
        print(f"summary in {os.path.join(outcome['out'], sweep_report.SUMMARY_TABLE)} and "
              f"{os.path.join(outcome['out'], sweep_report.SUMMARY_FIGURE)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
