"""Mean and spread across seeds of a sweep's results: table and figure."""

from __future__ import annotations

import csv
import io
import math
import os

import numpy as np

from .files import atomic_path, write_atomic
from .sweep_results import FIXED_COLUMNS

SEED = "seed"
SUMMARY_TABLE = "summary.csv"
SUMMARY_FIGURE = "summary.png"


def _number(value):
    """`value` (text from results.csv or a Python number) as a float, None if it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def metric_names(rows: list[dict], parameter_names: list[str]) -> list[str]:
    """Columns of the finished rows, other than parameters and bookkeeping, that hold numbers."""
    finished = [row for row in rows if row.get("status", "ok") == "ok"]
    skip = {"run_id", *parameter_names, *FIXED_COLUMNS}
    names = []
    for row in finished:
        for key in row:
            if key not in skip and key not in names:
                names.append(key)
    return [name for name in names
            if all(_number(row.get(name)) is not None for row in finished if row.get(name) not in (None, ""))
            and any(row.get(name) not in (None, "") for row in finished)]


def configurations(rows: list[dict], parameter_names: list[str]) -> list[tuple]:
    """The distinct configurations (parameter values other than the seed), in first-seen order."""
    keys = [name for name in parameter_names if name != SEED]
    seen = []
    for row in rows:
        configuration = tuple(str(row[name]) for name in keys)
        if configuration not in seen:
            seen.append(configuration)
    return seen


def summarise(rows: list[dict], parameter_names: list[str], metrics: list[str] | None = None) -> list[dict]:
    """One row per configuration: its parameters, runs, failed, and <metric>_mean / <metric>_std
    across seeds (sample standard deviation, ddof=1; NaN with a single finished run)."""
    keys = [name for name in parameter_names if name != SEED]
    metrics = metric_names(rows, parameter_names) if metrics is None else list(metrics)
    table = []
    for configuration in configurations(rows, parameter_names):
        group = [row for row in rows if tuple(str(row[name]) for name in keys) == configuration]
        finished = [row for row in group if row.get("status", "ok") == "ok"]
        entry = dict(zip(keys, configuration))
        entry.update(runs=len(finished), failed=len(group) - len(finished))
        for metric in metrics:
            values = np.array([v for v in (_number(row.get(metric)) for row in finished) if v is not None])
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        table.append(entry)
    return table


def label(entry: dict, parameter_names: list[str]) -> str:
    """A short axis label for one configuration, e.g. 'hidden_layers=2, l2_lambda=5.0'."""
    return ", ".join(f"{name}={entry[name]}" for name in parameter_names if name != SEED and name in entry)


def plot_summary(rows: list[dict], parameter_names: list[str], metrics: list[str] | None = None,
                 width: float = 7.0, highlight_seed=None):
    """A figure with one panel per metric: every seed's value as a dot, the mean across seeds with a
    bar of plus/minus one standard deviation, one column per configuration. The runs with seed
    `highlight_seed`, if given, are marked: the numbers a single-run study would have reported."""
    import matplotlib.pyplot as plt

    metrics = metric_names(rows, parameter_names) if metrics is None else list(metrics)
    keys = [name for name in parameter_names if name != SEED]
    table = summarise(rows, parameter_names, metrics)
    figure, axes = plt.subplots(len(metrics), 1, figsize=(width, 2.6 * max(len(metrics), 1)), squeeze=False)
    positions = np.arange(len(table))
    for axis, metric in zip(axes[:, 0], metrics):
        for position, entry in zip(positions, table):
            values = [_number(row.get(metric)) for row in rows if row.get("status", "ok") == "ok"
                      and all(str(row[name]) == entry[name] for name in keys)]
            values = [value for value in values if value is not None]
            axis.scatter([position] * len(values), values, s=14, color="0.55", zorder=2,
                         label="one seed" if position == 0 else None)
            if highlight_seed is not None:
                single = [_number(row.get(metric)) for row in rows if row.get("status", "ok") == "ok"
                          and str(row.get(SEED)) == str(highlight_seed)
                          and all(str(row[name]) == entry[name] for name in keys)]
                single = [value for value in single if value is not None]
                axis.scatter([position] * len(single), single, s=40, marker="x", color="C1", zorder=4,
                             label=f"seed {highlight_seed} alone" if position == 0 else None)
        means = [entry[f"{metric}_mean"] for entry in table]
        spreads = [0.0 if math.isnan(entry[f"{metric}_std"]) else entry[f"{metric}_std"] for entry in table]
        axis.errorbar(positions + 0.15, means, yerr=spreads, fmt="o", color="C0", capsize=4, zorder=3,
                      label="mean $\\pm$ std across seeds")
        axis.set_ylabel(metric)
        axis.set_xticks(positions)
        axis.set_xticklabels([label(entry, keys).replace(", ", "\n") for entry in table], fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("configuration")
    figure.tight_layout()
    return figure


def write_summary(out: str, rows: list[dict], parameter_names: list[str]) -> list[dict]:
    """`out`/summary.csv (mean and std per configuration) and `out`/summary.png, both atomically."""
    import matplotlib.pyplot as plt

    if not any(row.get("status", "ok") == "ok" for row in rows):
        raise ValueError("no finished run to summarise")
    if not metric_names(rows, parameter_names):
        raise ValueError("the finished runs glued no numbers to summarise")
    table = summarise(rows, parameter_names)
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    write_atomic(os.path.join(out, SUMMARY_TABLE), buffer.getvalue())
    figure = plot_summary(rows, parameter_names)
    try:
        with atomic_path(os.path.join(out, SUMMARY_FIGURE), ".png") as temporary:
            figure.savefig(temporary, dpi=100)
    finally:
        plt.close(figure)
    return table
