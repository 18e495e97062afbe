"""A sweep's results.csv: its columns, reading it back (checked), writing it atomically."""

from __future__ import annotations

import csv
import io
import os

from .files import write_atomic

RESULTS_FILE = "results.csv"
# Bookkeeping columns, last in every row: the code that ran, the run's seconds, status and error.
FIXED_COLUMNS = ("code_version", "seconds", "status", "error")
STATUSES = ("ok", "failed")


def results_path(out: str) -> str:
    """`out`/results.csv, or `out` itself when it names a .csv file."""
    return os.path.join(out, RESULTS_FILE) if os.path.isdir(out) or not out.endswith(".csv") else out


def _problem(text: str) -> str | None:
    """Why `text` is not a whole results table this module wrote, or None if it is one."""
    if not text:
        return "it is empty"
    if "\x00" in text:  # what a crash leaves in a file whose blocks were allocated but never written
        return "it contains NUL bytes"
    if not text.endswith("\n"):  # every row this module writes ends with a newline
        return "its last line is cut off"
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as error:
        return f"it is not valid CSV ({error})"
    header, body = lines[0], lines[1:]
    missing = [name for name in ("run_id", "seconds", "status", "error") if name not in header]
    if header[:1] != ["run_id"] or missing:
        return "its header is not that of a results table (it should start with run_id and have seconds, " \
               "status and error columns)"
    seen = set()
    for number, fields in enumerate(body, start=2):
        if len(fields) != len(header):
            return f"line {number} has {len(fields)} fields, the header {len(header)}"
        row = dict(zip(header, fields))
        if not row["run_id"] or row["run_id"] in seen:
            return f"line {number} has an empty or repeated run_id {row['run_id']!r}"
        seen.add(row["run_id"])
        if row["status"] not in STATUSES:
            return f"line {number} has status {row['status']!r}, not one of {', '.join(STATUSES)}"
        try:
            float(row["seconds"])
        except ValueError:
            return f"line {number} has seconds {row['seconds']!r}, not a number"
    return None


def read_results(out: str) -> list[dict]:
    """The rows of `out`/results.csv as dicts of text (empty list if there is none yet).

    ValueError naming the file and what to do when it is not a whole results table (garbage,
    cut off, edited by hand into another shape): nothing is run on top of a table that cannot be read.
    """
    path = results_path(out)
    if not os.path.lexists(path):
        return []
    if not os.path.isfile(path):  # a folder, a FIFO (reading it would wait forever), a dangling link
        raise ValueError(f"{path} is not a regular file; move it away or delete it, or give another --out")
    try:
        with open(path, "rb") as stream:
            text = stream.read().decode("utf-8")
    except UnicodeDecodeError:
        problem = "it is not UTF-8 text"
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    else:
        problem = _problem(text)
    if problem is not None:
        raise ValueError(f"{path} is not a results table of a sweep: {problem}; move it away or delete it "
                         f"(its runs will then run again), or give another --out")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def write_results(out: str, rows: list[dict], parameter_names: list[str]) -> None:
    """All rows to `out`/results.csv atomically: run_id, parameters, glued metrics, then FIXED_COLUMNS."""
    write_atomic(results_path(out), results_text(rows, parameter_names))


def results_text(rows: list[dict], parameter_names: list[str]) -> str:
    """The CSV text `write_results` writes."""
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
    return buffer.getvalue()
